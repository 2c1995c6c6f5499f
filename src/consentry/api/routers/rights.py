"""A person's rights over HTTP: ``GET /v1/subjects/{s}/export`` (one ZIP), their ids
(``/v1/subjects/{s}/aliases``), a Global Privacy Control signal
(``POST /v1/subjects/{s}/signals/gpc``, ``/.well-known/gpc.json``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from starlette.responses import Response

from ...export import archive_name, no_such_subject
from ..auth import Role, is_self, require_role
from ..common import event_out, json_response
from ..deps import Caller, IdemKey, StrictRoute, Svc, scoped_key
from ..models import AliasesOut, AliasIn, EventOut, problems

router = APIRouter(prefix="/v1/subjects", tags=["subjects"], route_class=StrictRoute)
#: Routes outside /v1: the service's public statement that it honours GPC.
public = APIRouter(tags=["signals"])

SubjectId = Annotated[str, Path(min_length=1, max_length=512, examples=["u_123"])]


@router.get(
    "/{subject}/export",
    responses={
        200: {
            "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
            "description": "The archive (README.txt, events.json, events.csv, state.json, "
            "receipts/, memberships.json, datasets.json, checkpoint.txt, public-keys.json)",
        },
        **problems(401, 404, 422, 503),
    },
    summary="Download everything held about a person (one ZIP)",
)
def export(
    subject: SubjectId,
    svc: Svc,
    caller: Caller,
    lang: Annotated[
        str | None, Query(min_length=2, max_length=35, description="The README's language.")
    ] = None,
) -> Response:
    """The person's right of access: every ledger event about them (JSON and CSV), each
    consent receipt with its inclusion proof against the latest checkpoint, their
    memberships, the datasets and models their data went into, and a README in their
    language. For the person themself or the ``platform_admin`` role. Anyone else (another
    person, an account administrator, a key of another role) gets the 404 a subject the
    ledger does not know gets: the answer says nothing of whether the person exists."""
    if not (is_self(caller, subject) or caller.role is Role.PLATFORM_ADMIN):
        raise no_such_subject(subject)
    data = svc.store.export_subject(subject, language=lang)
    return Response(
        data,
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="{archive_name(subject)}"',
            "Cache-Control": "no-store",
        },
    )


#: Who may say that two ids are one person: the platform (its backend's ``service`` key or
#: token, or a ``platform_admin``), never a person or an account administrator: a person
#: who could link an id to themself would take over its choices, and one who could link
#: themself to another would merge the other's choices into theirs.
LINKERS = (Role.SERVICE, Role.PLATFORM_ADMIN)


@router.post(
    "/{subject}/aliases",
    response_model=EventOut,
    status_code=201,
    responses=problems(401, 403, 404, 409, 422, 503),
    summary="Link another id to the person (an alias)",
)
def link_alias(
    subject: SubjectId, body: AliasIn, svc: Svc, caller: Caller, key: IdemKey
) -> Response:
    """Record that ``alias`` is another id of the person ``subject`` (their primary id):
    decisions, the gate and impact then decide the alias by the person's choices; where both
    ids made choices before the link, the more protective stands. For the ``service`` and
    ``platform_admin`` roles. An id that is already someone's alias, or has aliases of its
    own, is refused (409): unlink it first."""
    require_role(caller, *LINKERS, action="linking an alias")
    event = svc.store.link_subject(
        subject, body.alias, actor=caller.actor, idempotency_key=scoped_key(caller, key)
    )
    return json_response(event_out(event), 201)


@router.delete(
    "/{subject}/aliases/{alias}",
    response_model=EventOut,
    responses=problems(401, 403, 404, 409, 422, 503),
    summary="Unlink an alias from the person",
)
def unlink_alias(
    subject: SubjectId, alias: SubjectId, svc: Svc, caller: Caller, key: IdemKey
) -> Response:
    """Record that ``alias`` no longer names the person: it is decided by the choices made
    under it alone again. For the ``service`` and ``platform_admin`` roles."""
    require_role(caller, *LINKERS, action="unlinking an alias")
    event = svc.store.unlink_subject(
        subject, alias, actor=caller.actor, idempotency_key=scoped_key(caller, key)
    )
    return json_response(event_out(event), 200)


@router.get(
    "/{subject}/aliases",
    response_model=AliasesOut,
    responses=problems(401, 403, 422, 503),
    summary="The person an id names, and their aliases",
)
def list_aliases(subject: SubjectId, svc: Svc, caller: Caller) -> Response:
    """The person's primary id and each alias with when it was linked (``subject`` may be any
    of their ids). For the person themself (under any of their ids), ``service`` and
    ``platform_admin``."""
    data = svc.store.aliases(subject)
    ids = [data["subject"], *(a["alias"] for a in data["aliases"])]
    if not any(is_self(caller, i) for i in ids):
        require_role(caller, *LINKERS, action="reading a person's aliases")
    return json_response(data, 200)


@router.post(
    "/{subject}/signals/gpc",
    status_code=201,
    responses={
        200: {"description": "Already recorded for this policy version (`already_recorded`)"},
        **problems(401, 403, 404, 422, 503),
    },
    summary="Record a Global Privacy Control signal from the person",
)
def gpc_signal(subject: SubjectId, svc: Svc, caller: Caller) -> Response:
    """The platform saw ``Sec-GPC: 1`` on a request from the person: record it once (per
    policy version) as the refusals and objections the policy's ``gpc: {objects_to: [...]}``
    says it means, with method ``gpc``. Where the policy gives GPC no meaning the signal is
    recorded and changes nothing. For the ``service`` and ``platform_admin`` roles (a person
    signed in to ``/me`` sends it with their browser). 201 when recorded, 200 when it was
    already (``already_recorded``)."""
    require_role(caller, *LINKERS, action="recording a GPC signal")
    result = svc.store.record_gpc(subject, actor=caller.actor)
    return json_response(result.to_dict(), 200 if result.already else 201)


@public.get(
    "/.well-known/gpc.json",
    summary="The service honours Global Privacy Control",
    responses={200: {"description": '{"gpc": true, "lastUpdate": "YYYY-MM-DD"}'}},
)
def gpc_well_known(svc: Svc) -> Response:
    """The GPC support resource (GPC specification, section 3.3): ``gpc`` true, and the day
    the policy version in effect took effect as ``lastUpdate``."""
    from ...errors import ConsentryError
    from ...gpc import well_known

    try:
        policy = svc.store.policy()
    except ConsentryError:
        policy = None  # no policy published yet: the support statement alone
    return json_response(well_known(policy), 200, {"Cache-Control": "max-age=3600"})
