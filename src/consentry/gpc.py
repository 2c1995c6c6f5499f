"""Global Privacy Control (issue 16 §5): a browser's "do not sell or share" signal.

A policy may say what the signal means for it::

    gpc: {objects_to: [ai.training.third_party, improvement]}

A signed-in request to ``/me`` carrying ``Sec-GPC: 1``, or ``POST
/v1/subjects/{s}/signals/gpc`` from the platform, records the signal once per person and
policy version (:func:`record`), in one transaction:

* a ``signal.gpc`` event (method ``gpc``) naming the purposes the policy gives it, which
  changes no state by itself: where the policy says nothing about GPC it is all that is
  recorded, and the signal changes nothing (the page says so);
* for each purpose it objects to: a refusal (``consent.refused``, method ``gpc``) of the
  categories that consent rules cover for it, and an objection (``objection.raised``) where a
  legitimate-interest rule lets people object. Contract and prohibited uses are unchanged
  (a contract is not a choice; a prohibition needs no signal).

The person may change their mind afterwards like after any choice: a signal already recorded
under the policy version is not recorded again, so a later consent stands.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .ledger.events import Draft, Event, Kind
from .policy.model import Basis, Policy
from .taxonomy import covers

if TYPE_CHECKING:
    from .store import Store

METHOD = "gpc"
#: ``/.well-known/gpc.json`` (GPC specification, section 3.3): the service honours the signal.
WELL_KNOWN_PATH = "/.well-known/gpc.json"


@dataclass(frozen=True)
class GpcResult:
    """What recording a signal did: the ``signal.gpc`` event, the choices recorded with it,
    and whether it was already recorded under this policy version (nothing new written)."""

    signal: Event
    choices: tuple[Event, ...]
    already: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "signal": self.signal.to_dict(),
            "choices": [e.to_dict() for e in self.choices],
            "already_recorded": self.already,
            "objects_to": list(self.signal.payload.get("objects_to", [])),
        }


def meaning(
    policy: Policy, held: Iterable[tuple[str, str]] = ()
) -> list[tuple[str, str, tuple[str, ...]]]:
    """The choices a GPC signal stands for under ``policy``: ``(kind, purpose, categories)``
    with kind ``refused`` (a consent refusal of those categories) or ``objected`` (an
    objection to every category). ``held``: the (purpose, category) pairs the person holds a
    consent record for; one under a purpose the signal objects to is refused too, at its own
    key (a record more specific than the rule's would otherwise still stand)."""
    from .policy.objections import objection_matters

    out: list[tuple[str, str, tuple[str, ...]]] = []
    wanted = policy.gpc_objects_to or ()
    for purpose, category in sorted(held):
        if any(covers(p, purpose) for p in wanted) and purpose not in wanted:
            out.append(("refused", purpose, (category,)))
    for purpose in wanted:
        related = [
            r
            for r in policy.rules
            if any(covers(purpose, p) or covers(p, purpose) for p in r.purposes)
        ]
        categories = sorted(
            {c for r in related if r.basis is Basis.CONSENT for c in r.categories}
            | {c for p, c in held if p == purpose}
        )
        if categories:
            out.append(("refused", purpose, tuple(categories)))
        if objection_matters(policy, purpose, None):
            out.append(("objected", purpose, ()))
    return out


def record(store: Store, subject: str, *, actor: str | None = None) -> GpcResult:
    """Record a Global Privacy Control signal from ``subject`` (see the module's docstring);
    once per person and policy version."""
    from .textcheck import checked_id as _id

    subject = _id(subject, "subject")
    policy = store._notice_policy()
    key = f"gpc:{policy.version}:{subject}"
    found = _recorded(store, subject, policy.version)
    if found is not None:
        return GpcResult(found, (), True)
    who = actor or subject
    drafts = [
        Draft(
            kind=Kind.SIGNAL_GPC,
            actor=who,
            subject=subject,
            policy_version=policy.version,
            method=METHOD,
            payload={"objects_to": list(policy.gpc_objects_to or ())},
            idempotency_key=key,
        )
    ]
    with store.lock:
        state = store.state()
        names = {pid: pair for pair, pid in state.pairs.items()}
        held = [names[pid] for pid in state.own_consents(subject) or {}]
    for i, (kind, purpose, categories) in enumerate(meaning(policy, held), start=1):
        drafts.append(
            Draft(
                kind=Kind.CONSENT_REFUSED if kind == "refused" else Kind.OBJECTION_RAISED,
                actor=who,
                subject=subject,
                purpose=purpose,
                categories=categories,
                policy_version=policy.version,
                notice_version=policy.version if kind == "refused" else None,
                language=policy.language if kind == "refused" else None,
                method=METHOD,
                # (each keyed: a concurrent request gets these events back, not new ones)
                idempotency_key=f"{key}:{i}",
            )
        )
    head = store.ledger.head()[0]
    events = store.append(drafts)
    return GpcResult(events[0], tuple(events[1:]), events[0].seq <= head)


def _recorded(store: Store, subject: str, version: str) -> Event | None:
    for event in store.ledger.events(subjects=[subject]):
        if event.kind is Kind.SIGNAL_GPC and event.policy_version == version:
            return event
    return None


def last_signal(store: Store, subject: str) -> Event | None:
    """The person's latest recorded GPC signal, if any (for ``/me``)."""
    latest = None
    for event in store.ledger.events(subjects=[subject]):
        if event.kind is Kind.SIGNAL_GPC:
            latest = event
    return latest


def well_known(policy: Policy | None) -> dict[str, Any]:
    """``/.well-known/gpc.json``: the service honours GPC; ``lastUpdate`` is the day the
    policy version in effect took effect."""
    data: dict[str, Any] = {"gpc": True}
    if policy is not None:
        data["lastUpdate"] = policy.effective.date().isoformat()
    return data
