"""FastAPI dependencies: the worker's :class:`Service` and the authenticated caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..errors import InvalidInput, Unauthorized
from .auth import Principal
from .context import Service

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="A JWT the platform signed for the caller (claims sub, role, account, exp, "
    "aud), or an API key (`csk_…`) from `consentry keys create`.",
)


def get_service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def get_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
) -> Principal:
    if credentials is None:
        raise Unauthorized(
            "this endpoint needs credentials",
            hint="send 'Authorization: Bearer <JWT or API key>'",
        )
    service: Service = request.app.state.service
    return service.auth.bearer(credentials.credentials)


def idempotency_key(
    key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="Retrying a write with the same key returns the first result instead "
            "of recording it twice.",
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
