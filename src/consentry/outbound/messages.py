"""A ledger event as a CloudEvents 1.0 message (JSON structured mode).

``id`` is the ledger event's id, ``source`` the store's configured URI, ``type``
``org.consentry.<kind>``, ``subject`` the event's subject (or its account), and the extension
attributes ``consentryseq`` (the ledger seq) and ``consentrypolicy`` (the policy version) let
a consumer order and attribute a message without reading its data. ``data`` is the event as
``consentry ledger`` shows it; a change that narrows what is allowed also carries
``data.impact``: the datasets and models it touches, as ``consentry impact`` computes them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import TYPE_CHECKING, Any

from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from sqlalchemy import select

from ..canonical import canonical_json
from ..ledger import schema
from ..ledger.events import Event, Kind

if TYPE_CHECKING:
    from ..store import Store

TYPE_PREFIX = "org.consentry."
CONTENT_TYPE = "application/cloudevents+json"
#: At most this many members' impacts are added up for an account-wide change; a larger
#: account's message says ``truncated`` and names how many members there are.
ACCOUNT_IMPACT_MEMBERS = 10_000

_FORMAT = JSONFormat()


def event_type(kind: str) -> str:
    """``org.consentry.<kind>``, e.g. ``org.consentry.consent.withdrawn``."""
    return TYPE_PREFIX + str(kind)


def narrows(event: Event) -> bool:
    """Whether the change can only take away what was allowed (so its message carries the
    impact): a withdrawal, refusal or objection, a member removed, an account switched
    ``off`` or a feature disabled, a policy version with rules that ask for consent again."""
    kind = event.kind
    if kind in (
        Kind.CONSENT_WITHDRAWN,
        Kind.CONSENT_REFUSED,
        Kind.OBJECTION_RAISED,
        Kind.MEMBER_REMOVED,
    ):
        return True
    if kind is Kind.ACCOUNT_SETTING:
        return event.status == "off"
    if kind is Kind.ACCOUNT_FEATURE:
        return event.status == "disabled"
    if kind is Kind.POLICY_PUBLISHED:
        return bool(reconsent_purposes(event))
    return False


def reconsent_purposes(event: Event) -> list[str]:
    """The purposes of a published policy's rules that ask for consent again."""
    document = event.payload.get("document") or {}
    purposes: set[str] = set()
    for rule in document.get("rules") or ():
        if isinstance(rule, dict) and rule.get("reconsent"):
            raw = rule.get("purposes") or rule.get("purpose") or ()
            purposes.update([raw] if isinstance(raw, str) else raw)
    return sorted(purposes)


def order_key(key: bytes, subject: str | None, account: str | None) -> str:
    """The stream a message is ordered in: its subject, else its account, else one stream for
    the store's own events, as a keyed hash (the delivery table holds no identifiers)."""
    if subject:
        name = "s:" + subject
    elif account:
        name = "a:" + account
    else:
        name = "_"
    return hmac.new(key, name.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


def compute_impact(store: Store, event: Event) -> dict[str, Any] | None:
    """The datasets and models a narrowing change touches (None for any other change).

    A subject's change: :func:`consentry.lineage.impact` for the subject (what
    ``consentry impact`` prints, without the subject, which the message names already).
    An account's change: the same for each member, added up to the datasets and models that
    now need action. A policy version asking for consent again: the datasets built for its
    purposes, and their models.
    """
    if not narrows(event):
        return None
    from .. import lineage

    if event.subject:
        data = lineage.impact(store, event.subject).to_dict()
        data.pop("subject", None)
        return data
    if event.kind is Kind.POLICY_PUBLISHED:
        from ..taxonomy import covers

        purposes = reconsent_purposes(event)
        datasets = [
            d for d in lineage.list_datasets(store) if any(covers(p, d.purpose) for p in purposes)
        ]
        return _summary({"purposes": purposes}, [d.to_dict() for d in datasets], datasets)
    if event.account:
        names = _members(store, event.account)
        found: dict[str, dict[str, Any]] = {}
        models: dict[str, dict[str, Any]] = {}
        for subject in names[:ACCOUNT_IMPACT_MEMBERS]:
            for d in lineage.impact(store, subject).affected_datasets:
                entry = found.setdefault(
                    d.dataset.id,
                    {**d.dataset.to_dict(), "members_needing_action": 0},
                )
                entry["members_needing_action"] += 1
                for m in d.dataset.models:
                    models.setdefault(m.id, m.to_dict())
        head = {
            "account": event.account,
            "members": len(names),
            "truncated": len(names) > ACCOUNT_IMPACT_MEMBERS,
        }
        return _summary(head, list(found.values()), None, list(models.values()))
    return None


def _members(store: Store, account: str) -> list[str]:
    m = schema.memberships.c
    with store.ledger.engine.connect() as conn:
        rows = conn.execute(select(m.subject).where(m.account == account).order_by(m.subject))
        return [r[0] for r in rows]


def _summary(
    head: dict[str, Any],
    datasets: list[dict[str, Any]],
    infos: Any = None,
    models: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    if models is None:
        seen: dict[str, dict[str, Any]] = {}
        for info in infos or ():
            for m in info.models:
                seen.setdefault(m.id, m.to_dict())
        models = list(seen.values())
    return {
        **head,
        "datasets": datasets,
        "models": models,
        "summary": {"datasets_needing_action": len(datasets), "models_needing_action": len(models)},
    }


def render(event: Event, source: str, impact: str | None = None) -> bytes:
    """The CloudEvent (JSON structured mode) for ``event``; ``impact`` is the canonical JSON
    the outbox holds for a narrowing event. The same event renders to the same bytes."""
    data = event.to_dict()
    if impact is not None:
        data["impact"] = json.loads(impact)
    attributes: dict[str, Any] = {
        "specversion": "1.0",
        "id": event.id,
        "source": source,
        "type": event_type(event.kind),
        "time": event.at,
        "datacontenttype": "application/json",
        "consentryseq": event.seq,
    }
    about = event.subject or event.account
    if about:
        attributes["subject"] = about
    if event.policy_version:
        attributes["consentrypolicy"] = event.policy_version
    return _FORMAT.write(CloudEvent(attributes, data))


def impact_text(data: dict[str, Any] | None) -> str | None:
    """The canonical JSON the outbox stores for an impact."""
    return None if data is None else canonical_json(data).decode("utf-8")


def parse(body: bytes) -> CloudEvent:
    """A message read back (what a consumer does with the SDK)."""
    event = _FORMAT.read(None, body)
    assert isinstance(event, CloudEvent)
    return event
