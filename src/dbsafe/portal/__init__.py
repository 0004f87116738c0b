"""The web portal: server-rendered HTML pages (Jinja2) with a light touch of JavaScript, no
build step. Pages call the service layer directly, as the API's endpoints do."""
