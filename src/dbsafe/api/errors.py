"""Every failure the API returns is ``{"error": {"code", "message", "details"}}`` with the
code of the error registry (docs/errors.md) and its HTTP status: scripts match on the code,
people read the message. Nothing answers with a traceback or an HTML error page."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.routing import Match

from dbsafe.core.errors import DbsafeError, os_error
from dbsafe.web.http import retry_after

log = logging.getLogger("dbsafe.api")


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: dict


class ErrorBody(BaseModel):
    error: ErrorDetail


# The statuses any endpoint may answer with besides its own (documented in the OpenAPI).
COMMON_RESPONSES: dict[int | str, dict] = {
    status: {"model": ErrorBody, "description": what} for status, what in (
        (400, "The request names something that is not valid here, or the Host header "
              "is not a name this server answers to"),
        (401, "No token or session, or one that is not valid"),
        (403, "The caller's role does not allow this"),
        (404, "Nothing of that name"),
        (409, "The state of the vault or server does not allow it now"),
        (413, "The request body is too large"),
        (422, "The request is not valid"),
        (502, "A server or store dbsafe depends on did not answer"),
    )}


# Paths outside /api/ that programs read, answered in JSON (their errors too): the OpenAPI
# document and Prometheus' /metrics (api/metrics.py).
SPEC = "/openapi.json"
METRICS = "/metrics"
MACHINE_PATHS = (SPEC, METRICS)


def for_programs(path: str) -> bool:
    """Whether a path is the API's or another one programs read (errors in JSON)."""
    return path.startswith("/api/") or path in MACHINE_PATHS


def error_json(error: DbsafeError) -> JSONResponse:
    """The error as the API answers it; an error that says when to come back (429, 503)
    carries it in ``Retry-After`` too."""
    response = JSONResponse({"error": error.as_dict()}, status_code=error.spec.http_status)
    retry_after(response, error)
    return response


def error_response(request: Request, error: DbsafeError) -> Response:
    """JSON for the API; the portal's pages answer with an error page instead (the app's
    ``state.error_page``, set by the app that serves the portal: cli/web_app.py)."""
    request.state.error_code = error.code
    path = request.url.path
    page = getattr(request.app.state, "error_page", None)
    if page is not None and not for_programs(path):
        return page(request, error)
    return error_json(error)


def _validation_reason(exc: RequestValidationError) -> str:
    parts = []
    for e in exc.errors()[:5]:
        where = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
        parts.append(f"{where or 'body'}: {e.get('msg')}")
    return "; ".join(parts) or "malformed request"


def _allowed(request: Request) -> list[str]:
    """Every method some route takes at this path (Starlette's own Allow names only the
    first route matched, and FastAPI has one route per method)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches({**request.scope, "method": "GET"})
        if match != Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return sorted(methods)


def install(app: FastAPI) -> None:
    @app.exception_handler(DbsafeError)
    async def _dbsafe(request: Request, exc: DbsafeError) -> Response:
        return error_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        return error_response(request, DbsafeError("request.invalid",
                                                   reason=_validation_reason(exc)))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 405:
            error = DbsafeError("request.method_not_allowed", method=request.method,
                                path=request.url.path)
        elif exc.status_code == 404:
            error = DbsafeError("request.not_found", method=request.method,
                                path=request.url.path)
        else:
            error = DbsafeError("request.invalid", reason=str(exc.detail))
        response = error_response(request, error)
        response.status_code = exc.status_code if exc.status_code >= 400 else 400
        if exc.status_code == 405:
            response.headers["Allow"] = ", ".join(_allowed(request))
        return response

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> Response:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return error_response(request, os_error(exc) or
                              DbsafeError("internal", reason=type(exc).__name__))
