"""Where a vault's bytes live, as one string a user can type and a log can show.

Three forms (docs/storage.md):

- a plain path or ``file:///path``: a local (or mounted) folder;
- ``s3://BUCKET[/PREFIX]?endpoint=URL&region=NAME``: an S3-compatible object store;
- ``azure://CONTAINER[/PREFIX]?account=NAME&endpoint=URL``: Azure Blob Storage.

A location never carries a credential: those come from the environment, so the location can
be stored in the catalog, printed and logged as it is. One that does carry one is refused
(and the message shows it with the secret cut out).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

from dbsafe.core.errors import DbsafeError

_ALLOWED = {"s3": {"endpoint", "region"}, "azure": {"account", "endpoint"}}
# query keys that hold (or look like) credentials: AWS presigning, Azure SAS, generic names
_SECRET_KEY = re.compile(
    r"(key|secret|sig|signature|password|passwd|pwd|token|credential|sas|x-amz-|^se$|^sp$|^sv$)",
    re.IGNORECASE)
# S3 bucket names (the DNS-safe rules) and Azure container names
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_CONTAINER = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")


@dataclass(frozen=True)
class Location:
    """A parsed location. ``container`` is the S3 bucket or the Azure container; ``prefix``
    has no leading or trailing '/' ('' for the whole container)."""

    backend: str                      # "local" | "s3" | "azure"
    path: str = ""                    # local only
    container: str = ""
    prefix: str = ""
    options: dict[str, str] = field(default_factory=dict)

    def display(self) -> str:
        """The location as a user would type it again (it never holds a secret)."""
        if self.backend == "local":
            return self.path
        url = f"{self.backend}://{self.container}"
        if self.prefix:
            url += f"/{self.prefix}"
        if self.options:
            url += "?" + "&".join(f"{k}={v}" for k, v in sorted(self.options.items()))
        return url


def _redacted(text: str) -> str:
    """``text`` with user:password@ and every query value removed, for error messages."""
    text = re.sub(r"//[^/@]*@", "//***@", text)
    return re.sub(r"=([^&]*)", "=***", text)


def _refuse_secret(text: str, what: str) -> None:
    raise DbsafeError("storage.secret_in_location", location=_redacted(text), what=what)


def parse_location(text: str) -> Location:
    """Parse and check a location; raise ``storage.bad_location`` or
    ``storage.secret_in_location`` with what to change."""
    text = str(text).strip()
    if not text:
        raise DbsafeError("storage.bad_location", location=text, reason="it is empty")
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme == "":
        return Location("local", path=text)
    parts = urlsplit(text)
    if scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path:
            raise DbsafeError("storage.bad_location", location=_redacted(text),
                              reason="a file location is file:///absolute/path")
        return Location("local", path=parts.path)
    if scheme not in _ALLOWED:
        raise DbsafeError("storage.bad_location", location=_redacted(text),
                          reason=f"unknown scheme {scheme!r}; use a path, file://, s3:// "
                                 "or azure://")
    if "@" in parts.netloc:
        _refuse_secret(text, "a user name or password before '@'")
    query = parse_qsl(parts.query, keep_blank_values=True)
    for key, value in query:
        if _SECRET_KEY.search(key):
            _refuse_secret(text, f"the query parameter {key!r}")
        if "@" in value.split("?", 1)[0]:
            _refuse_secret(text, f"a user name or password in {key!r}")
        if "?" in value:  # an endpoint with its own query (a SAS token, say)
            _refuse_secret(text, f"a query inside {key!r}")
    options = dict(query)
    unknown = sorted(set(options) - _ALLOWED[scheme])
    if unknown:
        raise DbsafeError("storage.bad_location", location=_redacted(text),
                          reason=f"unknown parameter(s) {', '.join(unknown)}; {scheme} takes "
                                 f"{', '.join(sorted(_ALLOWED[scheme]))}")
    container = parts.netloc
    pattern = _BUCKET if scheme == "s3" else _CONTAINER
    if not pattern.match(container):
        kind = "bucket" if scheme == "s3" else "container"
        raise DbsafeError("storage.bad_location", location=_redacted(text),
                          reason=f"{container!r} is not a valid {kind} name (3-63 characters: "
                                 "lower-case letters, digits and '-')")
    if "endpoint" in options and not re.match(r"^https?://[^/]", options["endpoint"]):
        raise DbsafeError("storage.bad_location", location=_redacted(text),
                          reason="endpoint must be an http:// or https:// URL")
    prefix = parts.path.strip("/")
    if "//" in prefix:
        raise DbsafeError("storage.bad_location", location=_redacted(text),
                          reason="the prefix has an empty folder ('//')")
    return Location(scheme, container=container, prefix=prefix, options=options)
