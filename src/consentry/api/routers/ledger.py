"""The ledger: verify it, and the transparency log anyone may check it with.

The checkpoint, the consistency proofs and the public keys carry no personal data and are
served without credentials, as a Certificate Transparency log serves its tree heads: whoever
keeps a copy (a witness, an auditor, a regulator) can later prove the ledger was not rewritten.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import PlainTextResponse, Response

from ...errors import InvalidInput
from ..auth import Role, require_role
from ..common import json_response
from ..deps import Caller, StrictRoute, Svc
from ..models import CheckpointOut, ConsistencyOut, PublicKeysOut, VerifyIn, VerifyOut, problems

router = APIRouter(prefix="/v1/ledger", tags=["ledger"], route_class=StrictRoute)


@router.post(
    "/verify",
    response_model=VerifyOut,
    responses=problems(401, 403, 422, 503),
    summary="Recompute the hash chain, the MACs and the state (platform_admin)",
)
def verify(svc: Svc, caller: Caller, body: VerifyIn | None = None) -> Response:
    """``ok: false`` names the first event that was changed, deleted, inserted, reordered or
    forged, and lists in ``divergences`` every current-state row that differs from what the
    chain implies (table, key, the stored and the implied values). With ``since`` (a checkpoint
    note), also proves the ledger extends it."""
    require_role(caller, Role.PLATFORM_ADMIN, action="verifying the ledger")
    since = body.since if body is not None else None
    return json_response(svc.store.verify(since=since).to_dict())


@router.get(
    "/checkpoint",
    response_model=CheckpointOut,
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
        **problems(503),
    },
    summary="The latest signed checkpoint (C2SP tlog-checkpoint; no credentials needed)",
)
def checkpoint(request: Request, svc: Svc) -> Response:
    """The signed note as text (what witnesses store), or JSON with ``Accept:
    application/json``. Made now if the service has not made one yet."""
    latest = svc.store.latest_checkpoint() or svc.store.checkpoint()
    if "application/json" in request.headers.get("accept", ""):
        return json_response(latest.to_dict())
    return PlainTextResponse(latest.note, media_type="text/plain; charset=utf-8")


@router.get(
    "/consistency",
    response_model=ConsistencyOut,
    responses=problems(422, 503),
    summary="RFC 9162 consistency proof between two tree sizes (no credentials needed)",
)
def consistency(
    svc: Svc,
    first: Annotated[int, Query(ge=1, description="The older tree size.")],
    second: Annotated[int | None, Query(ge=1, description="The newer (default: latest).")] = None,
) -> Response:
    """Proves the tree of ``second`` leaves extends the one of ``first`` (hex hashes)."""
    latest = svc.store.latest_checkpoint()
    newest = second or (latest.size if latest else svc.store.checkpoint().size)
    if first > newest:
        raise InvalidInput(f"first ({first}) is larger than second ({newest})", field="first")
    proof = svc.store.consistency_proof(first, newest)
    return json_response({"first": first, "second": newest, "proof": proof})


@router.get(
    "/public-keys",
    response_model=PublicKeysOut,
    responses=problems(503),
    summary="The keys a verifier pins (no credentials needed)",
)
def public_keys(svc: Svc) -> Response:
    """The receipt key and the log's verifier key, as the ledger registered them."""
    return json_response(svc.store.public_keys())
