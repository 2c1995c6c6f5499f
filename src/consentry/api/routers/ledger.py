"""The ledger: verify the hash chain."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from ..auth import Role, require_role
from ..common import json_response
from ..deps import Caller, StrictRoute, Svc
from ..models import VerifyOut, problems

router = APIRouter(prefix="/v1/ledger", tags=["ledger"], route_class=StrictRoute)


@router.post(
    "/verify",
    response_model=VerifyOut,
    responses=problems(401, 403, 503),
    summary="Recompute the hash chain and the current state (platform_admin)",
)
def verify(svc: Svc, caller: Caller) -> Response:
    """``ok: false`` names the first event that was changed, deleted, inserted or reordered,
    and lists in ``divergences`` every current-state row that differs from what the chain
    implies (table, key, the stored and the implied values)."""
    require_role(caller, Role.PLATFORM_ADMIN, action="verifying the ledger")
    return json_response(svc.store.verify().to_dict())
