"""The single-decision endpoint without the web framework around it.

``POST /v1/decisions`` is the endpoint a platform calls on every use of someone's data, so
its cost is the framework's more than the decision's: routing, dependency resolution and the
exception middlewares take about four times as long as deciding. This ASGI layer answers
that one route itself and hands every other request to FastAPI.

It is a transport, not a second implementation: the answer comes from
:func:`consentry.api.routers.decisions.decide_one`, which the FastAPI route (the one in the
OpenAPI description) calls too, and errors become the same problem details through
:mod:`consentry.api.problems`. A request with a query string, or any other method, goes to
FastAPI, which refuses it as it should.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi.exceptions import RequestValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import ConsentryError, Unauthorized
from .common import dumps as _dump
from .context import Service
from .problems import PROBLEM_JSON, from_error, from_status, validation_problem
from .routers.decisions import decide_one

log = logging.getLogger("consentry.api")

PATH = "/v1/decisions"
JSON = b"application/json"


class DecisionFastPath:
    def __init__(self, app: ASGIApp, service: Service, route: Any) -> None:
        self.app = app
        self.service = service
        #: The FastAPI route of the same path, so that metrics label the request by it.
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != PATH
            or scope["method"] != "POST"
            or scope.get("query_string")
        ):
            await self.app(scope, receive, send)
            return
        scope["route"] = self.route
        authorization = content_type = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"content-type":
                content_type = value.decode("latin-1")
        extra: list[tuple[bytes, bytes]] = []
        try:
            raw = await _body(receive)
            body = await decide_one(self.service, authorization, content_type, raw)
            status, media = 200, JSON
        except ConsentryError as exc:
            status, media = exc.status, PROBLEM_JSON.encode()
            body = _dump(from_error(exc, PATH))
            if isinstance(exc, Unauthorized):
                extra.append((b"www-authenticate", b'Bearer realm="consentry"'))
        except RequestValidationError as exc:
            status, media = 422, PROBLEM_JSON.encode()
            body = _dump(validation_problem(exc.errors(), PATH))
        except _Disconnected:
            return
        except Exception:
            log.exception("unexpected error on POST %s", PATH)
            status, media = 500, PROBLEM_JSON.encode()
            detail = "the service failed to handle this request; it has been logged"
            body = _dump(from_status(500, detail, PATH))
        headers = [(b"content-type", media), (b"content-length", str(len(body)).encode())]
        headers.extend(extra)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class _Disconnected(Exception):
    pass


async def _body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)
