"""Policy versions, their notices in each language, and the diff of two versions."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from starlette.responses import Response

from ...errors import NotFound
from ...policy.loader import parse_policies, parse_policy
from ...policy.model import Policy
from ..auth import Role, require_role
from ..common import json_response
from ..deps import Caller, StrictRoute, Svc
from ..models import (
    DiffOut,
    NoticeOut,
    PolicyList,
    PolicyOut,
    PublishIn,
    PublishOut,
    problems,
)

router = APIRouter(prefix="/v1/policies", tags=["policies"], route_class=StrictRoute)

Version = Annotated[str, Path(min_length=1, max_length=200, examples=["2023-08"])]
Lang = Annotated[str, Path(min_length=2, max_length=35, examples=["fr"])]


def summary(policy: Policy, current: str | None) -> dict[str, Any]:
    return {
        "id": policy.id,
        "version": policy.version,
        "effective": policy.document["effective"],
        "digest": policy.digest,
        "language": policy.language,
        "languages": sorted(policy.notices),
        "in_effect": policy.version == current,
    }


def _current(svc: Svc) -> str | None:
    try:
        return svc.store.policy().version
    except NotFound:
        return None


@router.get(
    "",
    response_model=PolicyList,
    responses=problems(401, 503),
    summary="Published policy versions",
)
def list_policies(svc: Svc, caller: Caller) -> Response:
    current = _current(svc)
    versions = [summary(p, current) for p in svc.store.policies()]
    return json_response({"current": current, "versions": versions})


@router.post(
    "",
    response_model=list[PublishOut],
    status_code=201,
    responses=problems(401, 403, 409, 422, 503),
    summary="Publish policy versions (platform_admin)",
)
def publish(body: PublishIn, svc: Svc, caller: Caller) -> Response:
    """Publish every version in ``yaml`` (or the one ``document``). Re-publishing identical
    content is a no-op (``published: false``); changing a published version is a 409."""
    require_role(caller, Role.PLATFORM_ADMIN, action="publishing a policy")
    policies = (
        parse_policies(body.yaml)
        if body.yaml is not None
        else [parse_policy(body.document, where="document")]
    )
    out = []
    for policy in policies:
        for r in svc.store.publish(policy, actor=caller.actor):
            out.append(
                {
                    "version": r.version,
                    "digest": r.digest,
                    "published": r.published,
                    "event_id": r.event.id if r.event else None,
                    "seq": r.event.seq if r.event else None,
                }
            )
    return json_response(out, 201)


@router.get(
    "/diff",
    response_model=DiffOut,
    responses=problems(401, 404, 422, 503),
    summary="What changed between two versions",
)
def diff(
    svc: Svc,
    caller: Caller,
    from_: Annotated[str, Query(alias="from", min_length=1, max_length=200)],
    to: Annotated[str, Query(min_length=1, max_length=200)],
    lang: Annotated[str | None, Query(min_length=2, max_length=35)] = None,
) -> Response:
    """Per (purpose, category): what ``to`` allows that ``from`` did not and the reverse; per
    rule, what changed, in plain language; and how many recorded consents became stale."""
    return json_response(svc.store.diff(from_, to, language=lang).to_dict())


@router.get(
    "/{version}",
    response_model=PolicyOut,
    responses=problems(401, 404, 503),
    summary="One policy version",
)
def get_policy(version: Version, svc: Svc, caller: Caller) -> Response:
    policy = svc.store.policy(version)
    data = summary(policy, _current(svc))
    data.update(
        controller=dict(policy.controller),
        rules=[
            {
                "id": r.id,
                "purposes": list(r.purposes),
                "categories": list(r.categories),
                "basis": str(r.basis),
                "objection": r.objection,
                "account_enable": r.account_enable,
                "account_consent": r.account_consent,
                "parties": str(r.parties),
                "reconsent": r.reconsent,
                "expires_after_s": r.expires_after.total_seconds() if r.expires_after else None,
            }
            for r in policy.rules
        ],
        protected=[
            {"labels": sorted(p.labels), "purposes": list(p.purposes)} for p in policy.protected
        ],
        document=dict(policy.document),
    )
    return json_response(data)


def notice_data(policy: Policy, language: str | None) -> dict[str, Any]:
    notice = policy.notice(language)
    authoritative = None
    if notice.machine_translated or notice.language != policy.language:
        authoritative = f"/v1/policies/{policy.version}/notices/{policy.language}"
    return {
        "version": policy.version,
        "language": notice.language,
        "authoritative_language": policy.language,
        "machine_translated": notice.machine_translated,
        "authoritative_url": authoritative,
        "title": notice.title,
        "summary": notice.summary,
        "rules": dict(notice.rules),
    }


@router.get(
    "/{version}/notices/{lang}",
    response_model=NoticeOut,
    responses=problems(401, 404, 422, 503),
    summary="A version's notice in a language",
)
def notice(version: Version, lang: Lang, svc: Svc, caller: Caller) -> Response:
    """The plain-language notice. A machine translation says so and links to the
    authoritative text, which prevails."""
    return json_response(notice_data(svc.store.policy(version), lang))
