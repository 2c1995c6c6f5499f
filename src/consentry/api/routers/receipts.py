"""Signed consent receipts: fetch one, check one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from starlette.responses import Response

from ...errors import NotFound
from ..auth import PEOPLE, is_self, require_self
from ..common import event_out, json_response
from ..deps import Caller, StrictRoute, Svc
from ..models import ReceiptCheckOut, ReceiptOut, problems

router = APIRouter(prefix="/v1/receipts", tags=["receipts"], route_class=StrictRoute)


@router.get(
    "/{event_id}",
    response_model=ReceiptOut,
    responses=problems(401, 403, 404, 422, 503),
    summary="The signed receipt of a consent event",
)
def get_receipt(
    event_id: Annotated[str, Path(min_length=1, max_length=64)], svc: Svc, caller: Caller
) -> Response:
    """A receipt for the person whose choice it records: ISO/IEC TS 27560 fields, signed with
    the store's Ed25519 key. Keep it: ``POST /v1/receipts/verify`` checks it later."""
    if caller.role not in PEOPLE:  # before the look-up: the answer says nothing of the id
        require_self(caller, "", action="fetching a receipt")
    try:
        event = svc.store.event(event_id)
        if not is_self(caller, event.subject or ""):
            raise NotFound("")
    except NotFound:
        # Someone else's receipt answers exactly as one that does not exist: a 403 would
        # tell the caller that the id is real (and whose it is not).
        raise NotFound(
            f"no event {event_id!r} in the ledger", hint="list events with --json"
        ) from None
    receipt = svc.store.receipt(event.id)
    headers = {"Content-Disposition": f'inline; filename="receipt-{event.id}.json"'}
    return json_response(receipt, headers=headers)


@router.post(
    "/verify",
    response_model=ReceiptCheckOut,
    responses=problems(401, 404, 422, 503),
    summary="Check a receipt's signature and its event in the ledger",
)
def verify_receipt(body: ReceiptOut, svc: Svc, caller: Caller) -> Response:
    """Valid when the store's key signed it and its event is in the ledger unchanged; a 422
    problem says what does not match."""
    event = svc.store.verify_receipt(body.model_dump())
    return json_response(
        {"valid": True, "event": event_out(event), "key_id": svc.store.signer().key_id}
    )
