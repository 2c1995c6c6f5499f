"""Identities and aliases: one person known under several ids (issue 16 §3).

A platform knows a person as an account id, as an email when they join a meeting as a guest,
as a phone number. ``consentry subject link PRIMARY ALIAS`` (``POST
/v1/subjects/{s}/aliases``, for the platform's ``service`` or a ``platform_admin``) records a
``subject.linked`` event: from then on, deciding the alias decides the person. Decisions, the
gate and ``impact`` resolve any id to the person's choices; unlinking is an event too.

The rules the store keeps (the ledger replays whatever it holds, see ``State.link``):

* A person has one primary id; an alias names one person at a time. Linking an id that is
  already someone's alias, or that has aliases of its own, or linking to an id that is itself
  an alias, is refused: unlink first (a chain would make "who is this" depend on order).
* Merging two people who each made choices: among the choices made before the link, the more
  protective wins per purpose and category (a refusal over a consent, a raised objection
  over a lifted one); a choice made after the link is the person's newest word and stands
  (:func:`consentry.state.merge_records`). A person is a member of every account any of
  their ids is.
* The alias is kept in the event's payload (``ALIAS``), an id of the event's subject: an
  erasure of the person must erase it with them, and erase each alias's own events
  (:func:`subject_ids` lists every id the person has; ``PERSONAL_PAYLOAD_FIELDS`` names the
  field).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import Conflict, InvalidInput, NotFound
from .ledger.events import ALIAS, Draft, Event, Kind
from .textcheck import checked_id
from .times import format_time, from_us

if TYPE_CHECKING:
    from .store import Store


def link(
    store: Store,
    primary: str,
    alias: str,
    *,
    actor: str | None = None,
    idempotency_key: str | None = None,
) -> Event:
    """Record that ``alias`` is another id of the person ``primary``."""
    primary, alias, draft = _link_draft(Kind.SUBJECT_LINKED, primary, alias, actor, idempotency_key)
    if idempotency_key is not None and (done := store._retried(draft)) is not None:
        return done
    if alias == primary:
        raise InvalidInput(
            f"cannot link {primary!r} to itself", hint="name another id as the alias", field="alias"
        )
    with store.lock:
        state = store.state()
        owner = state.person_of.get(primary)
        if owner is not None:
            raise Conflict(
                f"{primary!r} is itself an alias of {owner!r}",
                hint=f"link {alias!r} to {owner!r}, the person's primary id",
                field="subject",
            )
        current = state.person_of.get(alias)
        if current == primary:
            raise Conflict(
                f"{alias!r} is already an alias of {primary!r}",
                hint="nothing to do; `consentry subject aliases` lists a person's ids",
                field="alias",
            )
        if current is not None:
            raise Conflict(
                f"{alias!r} is an alias of another person",
                hint=f"unlink it from them first (consentry subject unlink PRIMARY {alias})",
                field="alias",
            )
        if state.aliases.get(alias):
            raise Conflict(
                f"{alias!r} has aliases of its own",
                hint=f"unlink them, or link them to {primary!r} instead",
                field="alias",
            )
        return store._append1(draft)


def unlink(
    store: Store,
    primary: str,
    alias: str,
    *,
    actor: str | None = None,
    idempotency_key: str | None = None,
) -> Event:
    """Record that ``alias`` no longer names the person ``primary``: it decides by the choices
    made under it alone again."""
    primary, alias, draft = _link_draft(
        Kind.SUBJECT_UNLINKED, primary, alias, actor, idempotency_key
    )
    if idempotency_key is not None and (done := store._retried(draft)) is not None:
        return done
    with store.lock:
        if store.state().person_of.get(alias) != primary:
            raise NotFound(
                f"{alias!r} is not an alias of {primary!r}",
                hint="`consentry subject aliases SUBJECT` lists a person's ids",
                field="alias",
            )
        return store._append1(draft)


def aliases(store: Store, subject: str) -> dict[str, Any]:
    """The person ``subject`` names: their primary id and each alias with when it was linked
    (JSON data; ``subject`` may be any of their ids)."""
    subject = checked_id(subject, "subject")
    with store.lock:
        state = store.state()
        primary = state.person_of.get(subject, subject)
        links = dict(state.aliases.get(primary, {}))
    return {
        "subject": primary,
        "aliases": [
            {"alias": a, "linked_at": format_time(from_us(at))} for a, at in sorted(links.items())
        ],
    }


def subject_ids(store: Store, subject: str) -> list[str]:
    """Every id of the person ``subject`` names, their primary id first: what an erasure of
    the person must erase (issue 16 §2), and what ``impact`` looks up."""
    with store.lock:
        return list(store.state().ids_of(subject))


def _link_draft(
    kind: Kind, primary: str, alias: str, actor: str | None, idempotency_key: str | None
) -> tuple[str, str, Draft]:
    """The checked ids and the event a link or an unlink records (ids refused as the Store
    refuses them)."""
    primary, alias = checked_id(primary, "subject"), checked_id(alias, "alias")
    return (
        primary,
        alias,
        Draft(
            kind=kind,
            actor=actor or "platform",
            subject=primary,
            payload={ALIAS: alias},
            idempotency_key=idempotency_key,
        ),
    )
