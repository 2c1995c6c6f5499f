"""RFC 9457 problem details for every error the service returns; never a stack trace."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match

from ..errors import ConsentryError, InvalidInput, Unauthorized
from .common import dumps

log = logging.getLogger("consentry.api")

PROBLEM_JSON = "application/problem+json"
BASE = "https://consentry.dev/problems/"

_HTTP_CODES = {
    400: ("bad-request", "Bad request"),
    401: ("unauthorized", "Unauthorized"),
    403: ("forbidden", "Forbidden"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    406: ("not-acceptable", "Not acceptable"),
    409: ("conflict", "Conflict"),
    413: ("too-large", "Request too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    422: ("invalid-input", "Invalid input"),
    429: ("too-many-requests", "Too many requests"),
    500: ("internal-error", "Internal error"),
    503: ("unavailable", "Service unavailable"),
}


def problem_response(problem: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(
        dumps(problem), status_code=int(problem["status"]), media_type=PROBLEM_JSON, headers=headers
    )


def from_error(
    error: ConsentryError, instance: str | None = None, roots: Sequence[str] = ()
) -> dict[str, Any]:
    problem = error.to_problem()
    for name, value in problem.items():
        if name not in ("type", "instance") and isinstance(value, str):
            problem[name] = redact_paths(value, roots)
    if instance:
        problem["instance"] = instance
    return problem


# An absolute file path in a message: a slash not inside a word, a URL or a relative path.
_ABS_PATH = re.compile(r"(?<![\w.:/~-])/(?:[^\s'\"/,;()<>]+/)*[^\s'\"/,;()<>]+")
_OUR_PATHS = ("/v1", "/me", "/admin", "/docs", "/openapi", "/metrics", "/healthz", "/readyz")


def redact_paths(text: str, roots: Sequence[str] = ()) -> str:
    """``text`` without the server's absolute file paths: relative to a root the caller knows
    (the data directory: the caller named the path relative to it) where under one, else the
    file's name alone. The service's own URL paths (``/v1/...``) stay."""
    if "/" not in text:
        return text
    for root in sorted(roots, key=len, reverse=True):
        text = text.replace(root.rstrip("/") + "/", "")

    def short(match: re.Match[str]) -> str:
        path = match.group(0)
        if path.startswith(_OUR_PATHS):
            return path
        return path.rstrip("/").rsplit("/", 1)[-1] or path

    return _ABS_PATH.sub(short, text)


def _roots(request: Request) -> list[str]:
    """The directories whose paths a problem shows relative to them (the data directory)."""
    service = getattr(request.app.state, "service", None)
    data_dir = getattr(getattr(service, "settings", None), "data_dir", None)
    if not data_dir:
        return []
    return [str(data_dir), str(os.path.realpath(data_dir))]


def from_status(status: int, detail: str, instance: str | None = None) -> dict[str, Any]:
    code, title = _HTTP_CODES.get(status, ("error", "Request failed"))
    problem: dict[str, Any] = {
        "type": BASE + code,
        "title": title,
        "status": status,
        "detail": detail,
    }
    if instance:
        problem["instance"] = instance
    return problem


def field_name(loc: Sequence[Any]) -> tuple[str, str]:
    """(where, field) of a pydantic error location: ``("body", "items[3].purpose")``."""
    parts = list(loc)
    where = (
        str(parts.pop(0))
        if parts and parts[0] in ("body", "query", "path", "header", "cookie")
        else "body"
    )
    name = ""
    for part in parts:
        if isinstance(part, int):
            name += f"[{part}]"
        else:
            name += ("." if name else "") + str(part)
    return where, name


def validation_problem(errors: Sequence[Any], instance: str | None = None) -> dict[str, Any]:
    """A 422 problem naming each field that is wrong."""
    items = []
    for error in errors:
        where, name = field_name(error.get("loc", ()))
        message = str(error.get("msg", "invalid"))
        if error.get("type") == "json_invalid":
            name = ""
            message = f"the body is not valid JSON: {error.get('ctx', {}).get('error', message)}"
        items.append(
            {"field": name or where, "in": where, "message": message, "type": error.get("type")}
        )
    detail = "; ".join(f"{i['field']}: {i['message']}" for i in items) or "invalid request"
    problem = from_status(422, detail, instance)
    if items:
        problem["field"] = items[0]["field"]
    problem["errors"] = items
    return problem


#: The methods a 405 may name (HEAD and OPTIONS are the framework's, not the API's).
METHODS = ("DELETE", "GET", "PATCH", "POST", "PUT")


def allowed_methods(request: Request) -> list[str]:
    """The methods this request's path takes, as the OpenAPI description lists them; where
    path shapes of different specificity match (``/v1/receipts/verify`` is also
    ``/v1/receipts/{event_id}``), the one with the fewest parameters wins. A path outside the
    description (the web pages) takes what its routes take."""
    path = request.url.path
    shapes: list[tuple[int, set[str]]] = []
    for template, operations in request.app.openapi().get("paths", {}).items():
        pattern = re.sub(r"\\\{[^/]*?\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, path):
            shapes.append((template.count("{"), {m.upper() for m in operations}))
    if shapes:
        fewest = min(n for n, _ in shapes)
        return sorted({m for n, ms in shapes if n == fewest for m in ms} & set(METHODS))
    allowed = []
    for method in METHODS:
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] is Match.FULL for route in request.app.router.routes):
            allowed.append(method)
    return allowed


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into problem details."""

    @app.exception_handler(ConsentryError)
    async def _consentry_error(request: Request, exc: ConsentryError) -> Response:
        headers = None
        if isinstance(exc, Unauthorized):
            headers = {"WWW-Authenticate": 'Bearer realm="consentry"'}
        html = getattr(request.app.state, "html_error", None)
        if html is not None and wants_html(request):
            problem = from_error(exc, roots=_roots(request))
            return html(request, exc.status, problem)  # type: ignore[no-any-return]
        return problem_response(from_error(exc, request.url.path, _roots(request)), headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        problem = validation_problem(exc.errors(), request.url.path)
        html = getattr(request.app.state, "html_error", None)
        if html is not None and wants_html(request):
            return html(request, 422, problem)  # type: ignore[no-any-return]
        return problem_response(problem)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        hint: str | None
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"there is nothing at {request.url.path}"
            hint = "see /docs for the API's endpoints"
        elif exc.status_code == 405:
            allowed = allowed_methods(request)
            detail = f"{request.method} is not allowed on {request.url.path}"
            hint = f"this path takes {', '.join(allowed)}" if allowed else None
            # Starlette names the methods of the first route whose path matched
            # (/v1/receipts/{event_id} for /v1/receipts/verify): say those of every route.
            exc.headers = {**dict(exc.headers or {}), "Allow": ", ".join(allowed)}
        else:
            hint = None
        problem = from_status(exc.status_code, detail, request.url.path)
        if hint:
            problem["hint"] = hint
        html = getattr(request.app.state, "html_error", None)
        if html is not None and wants_html(request):
            return html(request, exc.status_code, problem)  # type: ignore[no-any-return]
        return problem_response(problem, dict(exc.headers or {}) or None)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        problem = from_status(
            500,
            "the service failed to handle this request; it has been logged",
            request.url.path,
        )
        return problem_response(problem)


def wants_html(request: Request) -> bool:
    """Whether to answer a browser with an HTML page (not the API's paths: they answer
    problem JSON whatever the client accepts)."""
    path = request.url.path
    if path.startswith(("/v1", "/metrics", "/healthz", "/readyz", "/openapi")):
        return False
    return "text/html" in request.headers.get("accept", "")


__all__ = ["InvalidInput", "install", "problem_response", "validation_problem"]
