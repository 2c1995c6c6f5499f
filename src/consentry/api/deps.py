"""FastAPI dependencies: the worker's :class:`Service` and the authenticated caller."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine, Mapping
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Header, Request, Security
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ValidationError
from starlette.responses import Response

from ..errors import InvalidInput, Unauthorized
from ..textcheck import NUL, NUL_REASON, find_bad_text
from .auth import Principal
from .context import Service

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="A JWT the platform signed for the caller (claims sub, role, account, exp, "
    "aud), or an API key (`csk_…`) from `consentry keys create`.",
)


# The dependencies are ``async``: they do no I/O worth a thread (a key's database look-up runs
# once per key every few seconds), and a sync dependency costs a thread-pool hop per request.


async def get_service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


async def get_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
) -> Principal:
    if credentials is None:
        raise _no_credentials()
    service: Service = request.app.state.service
    return service.auth.bearer(credentials.credentials)


def _no_credentials() -> Unauthorized:
    return Unauthorized(
        "this endpoint needs credentials", hint="send 'Authorization: Bearer <JWT or API key>'"
    )


def authenticate(request: Request) -> tuple[Service, Principal]:
    """The service and the caller, without the dependency machinery: for the hot decision
    endpoints, where resolving FastAPI dependencies costs more than the decision itself.
    Same rules as :func:`get_principal`; those routes declare ``BEARER`` in their OpenAPI."""
    service: Service = request.app.state.service
    return service, caller_of(service, request.headers.get("authorization"))


def caller_of(service: Service, authorization: str | None) -> Principal:
    """The caller an ``Authorization`` header names (``Bearer <JWT or API key>``)."""
    scheme, _, credential = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        raise _no_credentials()
    return service.auth.bearer(credential.strip())


#: What a route that calls :func:`authenticate` adds to its OpenAPI operation.
BEARER: dict[str, Any] = {"security": [{"bearer": []}]}


async def idempotency_key(
    key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=200,
            pattern=r"\S",
            description="Retrying a write with the same key returns the first result instead "
            "of recording it twice (1 to 200 characters, not only spaces).",
        ),
    ] = None,
) -> str | None:
    if key is None:
        return None
    if not key.strip() or len(key) > 200:
        raise InvalidInput("Idempotency-Key: expected 1 to 200 characters", field="Idempotency-Key")
    return key


Svc = Annotated[Service, Depends(get_service)]
Caller = Annotated[Principal, Depends(get_principal)]
IdemKey = Annotated[str | None, Depends(idempotency_key)]


def scoped_key(caller: Principal, key: str | None) -> str | None:
    """An idempotency key scoped to its caller, so that two callers never collide."""
    return None if key is None else f"http:{caller.id}:{key}"


class StrictRoute(APIRoute):
    """A route that refuses query parameters it does not take (a misspelt ``as_of`` would
    otherwise be ignored silently, and the answer would be about now)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        allowed = frozenset(_query_names(self.dependant))

        async def strict(request: Request) -> Response:
            refuse_bad_params(request.path_params, "path")
            if request.method in ("POST", "PUT", "PATCH"):
                refuse_bad_body(await request.body())  # (Starlette keeps it for the handler)
            if request.scope.get("query_string"):
                refuse_bad_params(request.query_params, "query")
                for name in request.query_params:
                    if name not in allowed:
                        takes = ", ".join(sorted(allowed)) or "none"
                        raise InvalidInput(
                            f"unknown query parameter {name!r}",
                            hint=f"this endpoint's query parameters: {takes}",
                            field=name,
                        )
            return await handler(request)

        return strict


def _text_error(loc: tuple[Any, ...], reason: str) -> RequestValidationError:
    return RequestValidationError([{"loc": loc, "msg": reason, "type": "string_unstorable"}])


def refuse_bad_params(params: Mapping[str, str], where: str) -> None:
    """A 422 naming the path or query parameter that holds a NUL (see textcheck)."""
    for name, value in params.items():
        if NUL in name or NUL in value:
            raise _text_error((where, name), NUL_REASON)


def refuse_bad_body(raw: bytes) -> None:
    """A 422 naming the field of a JSON body holding a string the store cannot keep (a NUL,
    a lone surrogate: see textcheck). JSON carries either only as a ``\\u`` escape, so a
    body without one costs one byte search."""
    if b"\\u" not in raw:
        return
    try:
        data = json.loads(raw)
    except ValueError:
        return  # not JSON: the handler says so
    found = find_bad_text(data)
    if found is not None:
        try:
            loc = ("body", *_path_parts(found[0]))
        except ValueError:  # a key with "[" in its name: name the path as it is
            loc = ("body", found[0])
        raise _text_error(loc, found[1])


def _path_parts(path: str) -> list[str | int]:
    """``a.b[2].c`` as ``["a", "b", 2, "c"]`` (the loc shape of pydantic errors)."""
    parts: list[str | int] = []
    for piece in path.split("."):
        name, _, rest = piece.partition("[")
        if name:
            parts.append(name)
        for index in rest.split("[") if rest else []:
            parts.append(int(index.rstrip("]")))
    return parts


def _query_names(dependant: Dependant) -> set[str]:
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


# -- JSON bodies read without the dependency machinery --------------------------------------

M = TypeVar("M", bound=BaseModel)

#: Models read with :func:`read_json`, by name: the app adds their schemas to its OpenAPI.
RAW_BODIES: dict[str, type[BaseModel]] = {}


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI ``requestBody`` of a route that reads ``model`` with :func:`read_json`."""
    RAW_BODIES[model.__name__] = model
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}


async def read_json(request: Request, model: type[M]) -> M:
    """Parse and validate a JSON body in one pass (pydantic-core reads the bytes directly);
    errors are the same 422 problems, naming the field, as for any other body."""
    return parse_json(request.headers.get("content-type"), await request.body(), model)


def parse_json(content_type: str | None, raw: bytes, model: type[M]) -> M:
    """:func:`read_json` on a body already read (to validate a large one in a thread)."""
    if content_type is not None and "json" not in content_type.lower():
        raise InvalidInput(
            f"the body must be JSON, not {content_type.split(';')[0]!r}",
            hint="send 'Content-Type: application/json'",
            field="body",
        )
    refuse_bad_body(raw)
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        raise RequestValidationError(errors) from None
