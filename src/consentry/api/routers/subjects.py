"""A subject's choices: consents, objections, current state, state as of a time, history."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from starlette.responses import Response

from ...errors import Forbidden
from ...ledger.events import CONSENT_KINDS, NOTICE_SHA256, Event, Kind
from ..auth import Principal, Role, is_self, require_self
from ..common import event_out, json_response
from ..context import Service
from ..deps import Caller, IdemKey, StrictRoute, Svc, scoped_key
from ..models import (
    ConsentIn,
    EventList,
    EventOut,
    InvitationList,
    NoticeServedIn,
    NoticeServedOut,
    ObjectionIn,
    SubjectStateOut,
    problems,
)

router = APIRouter(prefix="/v1/subjects", tags=["subjects"], route_class=StrictRoute)

SubjectId = Annotated[str, Path(min_length=1, max_length=512, examples=["u_123"])]
AccountId = Annotated[str, Path(min_length=1, max_length=512, examples=["acme"])]


def require_reader(svc: Service, caller: Principal, subject: str, *, action: str) -> str | None:
    """The person themself, or an administrator of an account the person belongs to (not a
    mere invitee). Returns the administrator's account, whose view is limited to what
    concerns that account (``None``: the person themself, who sees everything)."""
    if is_self(caller, subject):
        return None
    if caller.role is Role.ACCOUNT_ADMIN:
        accounts = svc.snapshot.decider().state.accounts_of(subject)
        if caller.account in accounts:
            return caller.account
        raise Forbidden(
            f"{action}: {subject!r} is not a member of account {caller.account!r}",
            hint="an account admin reads the state of its own account's members",
        )
    require_self(caller, subject, action=action)
    return None


#: What an administrator sees of a member's history: their choices, and (for their own
#: account only) membership and invitation events.
CHOICE_KINDS = frozenset({*CONSENT_KINDS, Kind.OBJECTION_RAISED, Kind.OBJECTION_LIFTED})
MEMBERSHIP_KINDS = frozenset(
    {
        Kind.MEMBER_ADDED,
        Kind.MEMBER_REMOVED,
        Kind.MEMBER_INVITED,
        Kind.MEMBER_ACCEPTED,
        Kind.MEMBER_DECLINED,
    }
)


def concerns(event: Event, account: str) -> bool:
    """Whether an administrator of ``account`` may see this event of one of its members."""
    if event.kind in CHOICE_KINDS:
        return True
    return event.kind in MEMBERSHIP_KINDS and event.account == account


@router.post(
    "/{subject}/consents",
    response_model=EventOut,
    status_code=201,
    responses=problems(401, 403, 409, 422, 503),
    summary="Give, refuse or withdraw consent",
)
def record_consent(
    subject: SubjectId, body: ConsentIn, svc: Svc, caller: Caller, key: IdemKey
) -> Response:
    """Record the person's choice. Withdrawing is as easy as giving: the same call with
    ``"action": "withdraw"``. Retrying with the same ``Idempotency-Key`` records it once."""
    require_self(caller, subject, action=f"{body.action} consent")
    event = svc.store.record_consent(
        body.action,
        subject,
        body.purpose,
        body.categories,
        notice_version=body.notice_version,
        language=body.language,
        method=body.method,
        actor=caller.actor,
        idempotency_key=scoped_key(caller, key),
    )
    return json_response(event_out(event), 201)


@router.post(
    "/{subject}/notices",
    response_model=NoticeServedOut,
    status_code=201,
    responses={200: {"model": NoticeServedOut}, **problems(401, 403, 404, 422, 503)},
    summary="Record that the person was shown a notice",
)
def record_notice(subject: SubjectId, body: NoticeServedIn, svc: Svc, caller: Caller) -> Response:
    """The platform showed the person the notice of ``notice_version`` in ``language`` (in its
    own pages): a ``notice.served`` event with the SHA-256 of the exact text. A consent
    recorded afterwards for the same version and language names it, and its receipt binds
    both. Rate-limited per person, version and language: within a day of the last one, that
    event is returned with 200 and ``recorded: false``. The person themself, or the
    platform's service."""
    if caller.role is not Role.SERVICE:
        require_self(caller, subject, action="recording a notice shown")
    event, recorded = svc.store.serve_notice(
        subject,
        notice_version=body.notice_version,
        language=body.language,
        method=body.method,
        actor=caller.actor,
    )
    data = {
        "recorded": recorded,
        "notice_sha256": event.payload.get(NOTICE_SHA256),
        "event": event_out(event),
    }
    return json_response(data, 201 if recorded else 200)


@router.post(
    "/{subject}/objections",
    response_model=EventOut,
    status_code=201,
    responses=problems(401, 403, 409, 422, 503),
    summary="Object to a use (or lift it)",
)
def record_objection(
    subject: SubjectId, body: ObjectionIn, svc: Svc, caller: Caller, key: IdemKey
) -> Response:
    """Object to a purpose based on legitimate interest (no categories: every category);
    ``"lift": true`` takes the objection back."""
    require_self(caller, subject, action="objecting")
    event = svc.store.object(
        subject,
        body.purpose,
        body.categories,
        lift=body.lift,
        actor=caller.actor,
        idempotency_key=scoped_key(caller, key),
    )
    return json_response(event_out(event), 201)


@router.get(
    "/{subject}",
    response_model=SubjectStateOut,
    responses=problems(401, 403, 422, 503),
    summary="A subject's current state, or its state as of a time",
)
def subject_state(
    subject: SubjectId,
    svc: Svc,
    caller: Caller,
    as_of: Annotated[
        str | None,
        Query(
            max_length=64,  # event:<event id> is 42
            description="A past moment: RFC 3339 (2023-08-07T00:00:00Z), -5m/-2h/-1d before "
            "now, or event:N; the future or before the first policy is refused (422).",
        ),
    ] = None,
) -> Response:
    admin_of = require_reader(svc, caller, subject, action="reading a subject's state")
    data = svc.store.subject_state(subject, as_of=as_of)
    data["as_of"] = as_of
    if admin_of is not None:  # never the member's other accounts
        data["accounts"] = [a for a in data["accounts"] if a == admin_of]
    return json_response(data)


@router.get(
    "/{subject}/events",
    response_model=EventList,
    responses=problems(401, 403, 503),
    summary="The history of a subject's choices",
)
def subject_events(subject: SubjectId, svc: Svc, caller: Caller) -> Response:
    """Every ledger event about the subject, oldest first; consent events link their
    receipts. An account administrator sees only the member's choices and the membership
    events of their own account (no receipt links: receipts are the person's)."""
    admin_of = require_reader(svc, caller, subject, action="reading a subject's history")
    found = svc.store.events(subject=subject)
    if admin_of is None:
        return json_response({"events": [event_out(e) for e in found]})
    events = []
    for e in found:
        if concerns(e, admin_of):
            events.append(event_out(e) | {"receipt_url": None})
    return json_response({"events": events})


@router.get(
    "/{subject}/invitations",
    response_model=InvitationList,
    responses=problems(401, 403, 503),
    summary="A person's pending invitations",
)
def subject_invitations(subject: SubjectId, svc: Svc, caller: Caller) -> Response:
    """Invitations to accounts that the person has not answered yet (the person themself,
    or the platform's service)."""
    if caller.role is not Role.SERVICE:
        require_self(caller, subject, action="reading a person's invitations")
    return json_response({"invitations": svc.store.invitations(subject=subject)})


@router.post(
    "/{subject}/invitations/{account}/accept",
    response_model=EventOut,
    status_code=201,
    responses=problems(401, 403, 404, 409, 422, 503),
    summary="Accept an invitation: join the account",
)
def accept_invitation(
    subject: SubjectId, account: AccountId, svc: Svc, caller: Caller, key: IdemKey
) -> Response:
    """Records ``member.accepted``: the person is a member and the account's settings apply
    to them. Only the person themself; 404 without a pending invitation."""
    require_self(caller, subject, action="accepting an invitation")
    event = svc.store.accept_invitation(
        subject, account, actor=caller.actor, idempotency_key=scoped_key(caller, key)
    )
    return json_response(event_out(event), 201)


@router.post(
    "/{subject}/invitations/{account}/decline",
    response_model=EventOut,
    status_code=201,
    responses=problems(401, 403, 404, 409, 422, 503),
    summary="Decline an invitation",
)
def decline_invitation(
    subject: SubjectId, account: AccountId, svc: Svc, caller: Caller, key: IdemKey
) -> Response:
    """Records ``member.declined``: the invitation is gone and nothing of the account ever
    applied to the person. Only the person themself; 404 without a pending invitation."""
    require_self(caller, subject, action="declining an invitation")
    event = svc.store.decline_invitation(
        subject, account, actor=caller.actor, idempotency_key=scoped_key(caller, key)
    )
    return json_response(event_out(event), 201)
