"""What the REST API (``dbsafe.api``) and the portal (``dbsafe.portal``) share: the bounded
request fields (fields.py), the session cookie and ``Retry-After`` (http.py), and the restore
a request stands for (restores.py: the API's endpoint and the portal's wizard build the same
request). The two interfaces never import each other (import-linter, pyproject.toml); the app
that serves both is put together by ``dbsafe serve`` (cli/web_app.py)."""
