"""Signed consent receipts: fetch one (with its inclusion proof), check one."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request
from starlette.responses import Response

from ...errors import NotFound
from ..auth import PEOPLE, is_self, require_self
from ..common import event_out, json_response
from ..deps import Caller, StrictRoute, Svc
from ..models import JwksOut, ReceiptCheckOut, ReceiptOut, problems

router = APIRouter(prefix="/v1/receipts", tags=["receipts"], route_class=StrictRoute)
#: ``/.well-known/jwks.json`` (RFC 8615): where JOSE libraries look for a signer's keys.
well_known = APIRouter(tags=["receipts"], route_class=StrictRoute)


@well_known.get(
    "/.well-known/jwks.json",
    response_model=JwksOut,
    responses=problems(503),
    summary="The receipt keys as a JWKS, retired keys included (no credentials needed)",
)
def jwks(svc: Svc) -> Response:
    """Every Ed25519 key the store signed receipts with (RFC 7517 / RFC 8037), oldest first;
    all but the last are ``"status": "retired"``. Any JOSE library verifies a receipt's
    ``jws`` with this document alone; it carries no personal data."""
    return json_response(svc.store.jwks(), headers={"Cache-Control": "public, max-age=300"})


@router.get(
    "/{event_id}",
    response_model=ReceiptOut,
    responses={
        200: {
            "content": {
                "application/ld+json": {
                    "schema": {"type": "object", "description": "format=dpv: JSON-LD"}
                }
            }
        },
        **problems(401, 403, 404, 422, 503),
    },
    summary="The signed receipt of a consent event, with its inclusion proof",
)
def get_receipt(
    request: Request,
    event_id: Annotated[str, Path(min_length=1, max_length=64)],
    svc: Svc,
    caller: Caller,
    checkpoint_size: Annotated[
        int | None,
        Query(ge=1, description="Prove the event against the checkpoint of this tree size."),
    ] = None,
    format: Annotated[
        Literal["receipt", "dpv"],
        Query(
            description="receipt: the signed receipt with its evidence; dpv: the record as "
            "DPV-27560 JSON-LD (W3C DPV's guide to ISO/IEC TS 27560)."
        ),
    ] = "receipt",
) -> Response:
    """A receipt for the person whose choice it records: ISO/IEC TS 27560 fields, signed with
    the store's Ed25519 key, and its evidence (the event, a signed checkpoint and the event's
    inclusion proof), so that it can be checked offline with the store's public keys
    (``GET /v1/ledger/public-keys``). Keep it: ``POST /v1/receipts/verify`` checks it later."""
    if caller.role not in PEOPLE or caller.via == "key":
        # Not a person (a key never is): refused before the look-up, so the answer says
        # nothing of the id.
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
    if format == "dpv":
        public = svc.settings.public_url or str(request.base_url).rstrip("/")
        record = svc.store.receipt_dpv(event.id, rights_url=f"{public}/me")
        return json_response(record, media_type="application/ld+json")
    note = None
    if checkpoint_size is not None:
        found = svc.store.stored_checkpoint(checkpoint_size)
        if found is None:
            raise NotFound(
                f"the log has no checkpoint of {checkpoint_size} events",
                hint="GET /v1/ledger/checkpoint gives the latest",
                field="checkpoint_size",
            )
        note = found.note
    receipt = svc.store.receipt(event.id, checkpoint=note)
    headers = {"Content-Disposition": f'inline; filename="receipt-{event.id}.json"'}
    return json_response(receipt, headers=headers)


@router.post(
    "/verify",
    response_model=ReceiptCheckOut,
    responses=problems(401, 404, 422, 503),
    summary="Check a receipt: signature, event, inclusion proof, checkpoint",
)
def verify_receipt(body: ReceiptOut, svc: Svc, caller: Caller) -> Response:
    """Valid when the store's pinned keys signed the receipt and its checkpoint, the event is in
    the signed log, and the ledger still holds that event unchanged; a 422 problem says what
    does not match (naming the fields that differ)."""
    # Only the members sent: a receipt has either a jws or (before JWS) a signature.
    document = {k: v for k, v in body.model_dump().items() if v is not None}
    check = svc.store.verify_receipt(document)
    assert check.event is not None
    return json_response(check.to_dict() | {"event": event_out(check.event)})
