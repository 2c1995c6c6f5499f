"""Webhook subscriptions: ``/v1/webhooks`` (platform administrators; an account administrator
for their own account's events only)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from ...errors import Forbidden, NotFound
from ...outbound import subscriptions
from ..auth import Principal, Role, require_role
from ..common import json_response
from ..deps import Caller, StrictRoute, Svc
from ..models import problems

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], route_class=StrictRoute)

WebhookId = Annotated[str, Path(min_length=1, max_length=40, examples=["wh_3f9a1c0d2e4b5a69"])]


class WebhookIn(BaseModel):
    """A new subscription: where to send, and which events."""

    model_config = ConfigDict(extra="forbid")
    url: str = Field(
        min_length=1, max_length=2000, examples=["https://hooks.example.com/consentry"]
    )
    types: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default_factory=list,
        max_length=100,
        examples=[["org.consentry.consent.*", "member.removed"]],
        description="CloudEvent type patterns (shell patterns; the org.consentry. prefix may "
        "be left out). Empty: every type.",
    )
    account: str | None = Field(
        None,
        max_length=512,
        description="Only this account's events. An account administrator's subscription is "
        "always for their own account.",
    )
    timeout_s: int = Field(subscriptions.DEFAULT_TIMEOUT_S, ge=1, le=subscriptions.MAX_TIMEOUT_S)


class WebhookOut(BaseModel):
    id: str
    url: str
    types: list[str]
    account: str | None
    timeout_s: int
    cursor_seq: int
    created_at: str
    created_by: str | None
    secret: str | None = Field(None, description="Only in the answer that made it: keep it.")


class ReplayIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    from_seq: int = Field(
        ge=1, le=2**62, description="Send every matching message from this seq again."
    )


class DeliveryOut(BaseModel):
    seq: int
    event_id: str
    type: str
    status: str
    attempts: int
    next_attempt: str | None
    delivered_at: str | None
    last_status: int | None
    last_error: str | None


def _allowed(caller: Principal, action: str) -> str | None:
    """None for a platform administrator (every account), else the admin's own account."""
    require_role(caller, Role.PLATFORM_ADMIN, Role.ACCOUNT_ADMIN, action=action)
    return caller.account if caller.role is Role.ACCOUNT_ADMIN else None


def _own(svc: Svc, caller: Principal, sub_id: str, action: str) -> subscriptions.Subscription:
    scope = _allowed(caller, action)
    sub = subscriptions.get(svc.store, sub_id)
    if scope is not None and sub.account != scope:
        # Another account's subscription is not there, as far as this caller can tell.
        raise NotFound(f"no webhook subscription {sub_id!r}", hint="list yours: GET /v1/webhooks")
    return sub


@router.post(
    "",
    response_model=WebhookOut,
    status_code=201,
    responses=problems(401, 403, 422, 503),
    summary="Subscribe an endpoint to the ledger's events",
)
def add_webhook(body: WebhookIn, svc: Svc, caller: Caller) -> Response:
    """The answer carries the signing secret (``whsec_…``), this once. Messages are
    CloudEvents signed per Standard Webhooks (docs/integrating.md)."""
    scope = _allowed(caller, "subscribing to events")
    account = body.account
    if scope is not None:
        if account not in (None, scope):
            raise Forbidden(
                f"subscribing to events: this credential administers account {scope!r}, "
                f"not {account!r}"
            )
        account = scope
    sub = subscriptions.create(
        svc.store,
        body.url,
        types=body.types,
        account=account,
        timeout_s=body.timeout_s,
        created_by=caller.actor,
    )
    return json_response(sub.to_dict(secret=True), 201)


@router.get(
    "",
    response_model=list[WebhookOut],
    responses=problems(401, 403, 503),
    summary="List subscriptions (an account administrator sees their account's)",
)
def list_webhooks(svc: Svc, caller: Caller) -> Response:
    scope = _allowed(caller, "listing webhooks")
    return json_response([s.to_dict() for s in subscriptions.list_all(svc.store, account=scope)])


@router.get(
    "/{sub_id}",
    response_model=WebhookOut,
    responses=problems(401, 403, 404, 503),
    summary="One subscription",
)
def get_webhook(sub_id: WebhookId, svc: Svc, caller: Caller) -> Response:
    return json_response(_own(svc, caller, sub_id, "reading a webhook").to_dict())


@router.delete(
    "/{sub_id}",
    status_code=204,
    responses=problems(401, 403, 404, 503),
    summary="Remove a subscription",
)
def remove_webhook(sub_id: WebhookId, svc: Svc, caller: Caller) -> Response:
    _own(svc, caller, sub_id, "removing a webhook")
    subscriptions.remove(svc.store, sub_id)
    return Response(status_code=204)


@router.get(
    "/{sub_id}/deliveries",
    response_model=list[DeliveryOut],
    responses=problems(401, 403, 404, 422, 503),
    summary="A subscription's latest deliveries, newest first",
)
def webhook_deliveries(
    sub_id: WebhookId,
    svc: Svc,
    caller: Caller,
    failed: Annotated[bool, Query(description="Only those that failed for good.")] = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    _own(svc, caller, sub_id, "reading deliveries")
    rows: list[dict[str, Any]] = subscriptions.deliveries(
        svc.store, sub_id, failed=failed, limit=limit
    )
    return json_response(rows)


@router.post(
    "/{sub_id}/replay",
    responses=problems(401, 403, 404, 422, 503),
    summary="Send every matching message from a seq on again",
)
def replay_webhook(sub_id: WebhookId, body: ReplayIn, svc: Svc, caller: Caller) -> Response:
    _own(svc, caller, sub_id, "replaying a webhook")
    return json_response(subscriptions.replay(svc.store, sub_id, body.from_seq), 202)
