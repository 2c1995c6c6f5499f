"""An account's settings per purpose, its AI features, its members and its audit trail."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from starlette.responses import Response

from ...errors import Forbidden
from ..auth import Principal, Role, require_account_admin
from ..common import event_out, json_response
from ..deps import Caller, IdemKey, StrictRoute, Svc, scoped_key
from ..models import (
    AccountOut,
    AccountSettingIn,
    EventList,
    EventOut,
    FeatureIn,
    InvitationList,
    MemberSummaryOut,
    problems,
)
from ..views import member_summary

router = APIRouter(prefix="/v1/accounts", tags=["accounts"], route_class=StrictRoute)

AccountId = Annotated[str, Path(min_length=1, max_length=512, examples=["acme"])]
PurposeName = Annotated[str, Path(min_length=1, max_length=200, examples=["ai.training"])]
SubjectId = Annotated[str, Path(min_length=1, max_length=512, examples=["u_123"])]


@router.get(
    "/{account}",
    response_model=AccountOut,
    responses=problems(401, 403, 503),
    summary="An account's settings, features and members",
)
def get_account(account: AccountId, svc: Svc, caller: Caller) -> Response:
    require_account_admin(caller, account, action="reading an account")
    return json_response(svc.store.account_state(account))


@router.put(
    "/{account}/settings/{purpose}",
    response_model=EventOut,
    responses=problems(401, 403, 409, 422, 503),
    summary="Set an account's setting for a purpose",
)
def set_setting(
    account: AccountId,
    purpose: PurposeName,
    body: AccountSettingIn,
    svc: Svc,
    caller: Caller,
    key: IdemKey,
) -> Response:
    """``off`` caps every member (their consent no longer counts), ``members_choose`` leaves it
    to each member, ``on`` consents for the members where the policy allows it."""
    require_account_admin(caller, account, action="changing an account's settings")
    # Store.set_account refuses a setting the policy gives no meaning (as the CLI does).
    event = svc.store.set_account(
        account,
        purpose,
        body.setting,
        actor=caller.actor,
        idempotency_key=scoped_key(caller, key),
    )
    return json_response(event_out(event))


@router.put(
    "/{account}/features/{purpose}",
    response_model=EventOut,
    responses=problems(401, 403, 409, 422, 503),
    summary="Switch an AI feature on or off",
)
def set_feature(
    account: AccountId,
    purpose: PurposeName,
    body: FeatureIn,
    svc: Svc,
    caller: Caller,
    key: IdemKey,
) -> Response:
    """Switching a feature on lets it run on the account's content; it is not consent to
    train on that content."""
    require_account_admin(caller, account, action="switching an account's AI features")
    event = svc.store.set_feature(
        account,
        purpose,
        body.enabled,
        actor=caller.actor,
        idempotency_key=scoped_key(caller, key),
    )
    return json_response(event_out(event))


def _require_membership_writer(caller: Principal, account: str) -> None:
    """Removing a member: the platform, or the account's administrator."""
    if caller.role in (Role.SERVICE, Role.PLATFORM_ADMIN):
        return
    if caller.role is Role.ACCOUNT_ADMIN:
        require_account_admin(caller, account, action="changing an account's members")
        return
    raise Forbidden(
        "changing an account's members needs the service, platform_admin or the account's "
        f"account_admin role; this credential has {caller.role.value}",
        role=caller.role.value,
    )


@router.put(
    "/{account}/members/{subject}",
    response_model=EventOut,
    status_code=201,
    responses=problems(401, 403, 409, 422, 503),
    summary="Add a member (the platform only)",
)
def add_member(
    account: AccountId, subject: SubjectId, svc: Svc, caller: Caller, key: IdemKey
) -> Response:
    """The platform asserts that the subject belongs to the account (``member.added``); the
    account's settings now cap the subject. An account administrator cannot: they invite
    (``POST /v1/accounts/{account}/invitations/{subject}``) and the person accepts."""
    if caller.role is Role.ACCOUNT_ADMIN:
        require_account_admin(caller, account, action="changing an account's members")
        raise Forbidden(
            "an account administrator cannot add a person to an account: they invite them, "
            "and the person joins by accepting",
            hint=f"POST /v1/accounts/{account}/invitations/{subject}",
        )
    if caller.role not in (Role.SERVICE, Role.PLATFORM_ADMIN):
        raise Forbidden(
            "adding a member needs the service or platform_admin role; this credential has "
            f"{caller.role.value}",
            hint="an account administrator invites: POST /v1/accounts/{account}/invitations/"
            "{subject}",
            role=caller.role.value,
        )
    event = svc.store.add_member(
        subject, account, actor=caller.actor, idempotency_key=scoped_key(caller, key)
    )
    return json_response(event_out(event), 201)


@router.post(
    "/{account}/invitations/{subject}",
    response_model=EventOut,
    status_code=201,
    responses=problems(401, 403, 409, 422, 503),
    summary="Invite a person to the account",
)
def invite_member(
    account: AccountId, subject: SubjectId, svc: Svc, caller: Caller, key: IdemKey
) -> Response:
    """Records ``member.invited``. The invitee counts for nothing in the account (no setting
    applies to them, the administrator sees nothing of theirs) until they accept
    (``POST /v1/subjects/{subject}/invitations/{account}/accept``). Inviting a member is 409;
    inviting again a pending invitee renews the invitation."""
    _require_membership_writer(caller, account)
    event = svc.store.invite_member(
        subject, account, actor=caller.actor, idempotency_key=scoped_key(caller, key)
    )
    return json_response(event_out(event), 201)


@router.delete(
    "/{account}/invitations/{subject}",
    response_model=EventOut,
    responses=problems(401, 403, 404, 409, 422, 503),
    summary="Withdraw a pending invitation",
)
def withdraw_invitation(
    account: AccountId, subject: SubjectId, svc: Svc, caller: Caller, key: IdemKey
) -> Response:
    """The account withdraws its invitation before the person answered: recorded as
    ``member.declined`` by the caller, with the payload ``{"withdrawn": true}`` (the person
    never joined; nothing of the account applied to them). ``404`` without a pending
    invitation. The account's administrator, or the platform."""
    _require_membership_writer(caller, account)
    event = svc.store.withdraw_invitation(
        subject, account, actor=caller.actor, idempotency_key=scoped_key(caller, key)
    )
    return json_response(event_out(event))


@router.get(
    "/{account}/invitations",
    response_model=InvitationList,
    responses=problems(401, 403, 503),
    summary="The account's pending invitations",
)
def account_invitations(account: AccountId, svc: Svc, caller: Caller) -> Response:
    _require_membership_writer(caller, account)
    return json_response({"invitations": svc.store.invitations(account=account)})


@router.delete(
    "/{account}/members/{subject}",
    response_model=EventOut,
    responses=problems(401, 403, 404, 409, 422, 503),
    summary="Remove a member",
)
def remove_member(
    account: AccountId, subject: SubjectId, svc: Svc, caller: Caller, key: IdemKey
) -> Response:
    _require_membership_writer(caller, account)
    event = svc.store.remove_member(
        subject, account, actor=caller.actor, idempotency_key=scoped_key(caller, key)
    )
    return json_response(event_out(event))


@router.get(
    "/{account}/summary",
    response_model=MemberSummaryOut,
    responses=problems(401, 403, 404, 503),
    summary="Members' choices in aggregate",
)
def summary(account: AccountId, svc: Svc, caller: Caller) -> Response:
    """Per purpose and category a member has a say in: how many members are allowed, and
    the count of each reason."""
    require_account_admin(caller, account, action="reading an account's members")
    return json_response(member_summary(svc, account, svc.store.policy()))


@router.get(
    "/{account}/events",
    response_model=EventList,
    responses=problems(401, 403, 503),
    summary="The account's audit trail",
)
def account_events(account: AccountId, svc: Svc, caller: Caller) -> Response:
    """Every change to the account's settings, features and membership, oldest first."""
    require_account_admin(caller, account, action="reading an account's audit trail")
    events = [event_out(e) for e in svc.store.events(account=account)]
    return json_response({"events": events})
