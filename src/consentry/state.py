"""Current state in memory: what the ledger's events add up to, in a compact form.

Both the decision snapshot (current time) and ``as_of`` replays (any past time) build a
:class:`State`; both feed it through :func:`consentry.ledger.events.state_changes`, the one
definition of what an event means, so the two can never disagree.
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .ledger.events import Change, Event, state_changes
from .policy.loader import parse_policy
from .policy.model import Policy

# A record is packed into one int: at_us << 34 | seq << 2 | status. One small int per record
# keeps a million subjects' state well under a gigabyte.
SEQ_BITS = 32
SEQ_MASK = (1 << SEQ_BITS) - 1
AT_SHIFT = SEQ_BITS + 2

#: A consent record's status, and an objection record's (the low two bits of a record).
CONSENT_CODES = {"given": 1, "refused": 2, "withdrawn": 3}
CONSENT_NAMES = {v: k for k, v in CONSENT_CODES.items()}
OBJECTION_CODES = {"lifted": 0, "raised": 1}

#: How a packed record is read: each field as a Python expression over ``value``. The one
#: definition of the decode: :func:`unpack` is made from it, and so are the decision kernels
#: (:mod:`consentry.kernels`), which read records inline.
RECORD_FIELDS: tuple[tuple[str, str], ...] = (
    ("at", f"value >> {AT_SHIFT}"),
    ("seq", f"(value >> 2) & {SEQ_MASK:#x}"),
    ("status", "value & 3"),
)


def pack(at_us: int, seq: int, status: int) -> int:
    """One record as an int (see :data:`RECORD_FIELDS` for the way back)."""
    return (at_us << AT_SHIFT) | (seq << 2) | status


def _make_unpack() -> Callable[[int], tuple[int, int, int]]:
    fields = ", ".join(expression for _, expression in RECORD_FIELDS)
    namespace: dict[str, Any] = {}
    exec(f"def unpack(value):\n    return {fields}\n", namespace)
    made: Callable[[int], tuple[int, int, int]] = namespace["unpack"]
    made.__doc__ = "(at_us, seq, status) of a packed record."
    return made


#: (at_us, seq, status) of a packed record.
unpack = _make_unpack()


_PARSED: dict[str, Policy] = {}
#: How many subject changes ``State.touched`` keeps (8 MiB) before it forgets the oldest.
_TOUCHED_KEPT = 1 << 20


class _Own:
    """The records made under one id of a linked person, as recorded."""

    __slots__ = ("accounts", "consents", "objections")

    def __init__(
        self, consents: dict[int, int], objections: dict[int, int], accounts: tuple[str, ...]
    ) -> None:
        self.consents = consents
        self.objections = objections
        self.accounts = accounts


#: The status codes of a packed record that protect the person: a consent refused or
#: withdrawn, an objection raised.
CONSENT_PROTECTIVE = frozenset({CONSENT_CODES["refused"], CONSENT_CODES["withdrawn"]})
OBJECTION_PROTECTIVE = frozenset({OBJECTION_CODES["raised"]})


def merge_records(
    records: list[dict[int, int]], joined_us: int, protective: frozenset[int]
) -> dict[int, int]:
    """One person's records per (purpose, category) from those of each of their ids.

    The rule (docs/concepts.md, "Identities and aliases"): a choice made since the ids were
    last joined (``joined_us``) is the person's newest word and stands, as for anyone; among
    choices made before (they conflict at the join), the more protective wins (``protective``:
    the status codes that protect): a refusal or withdrawal over a consent, a raised objection
    over a lifted one; between two that protect, the later; between two that do not, the
    older (a consent that expires, or needs re-consent, does so first).
    """
    merged: dict[int, int] = {}
    for own in records:
        for pid, value in own.items():
            current = merged.get(pid)
            if current is None or _wins(value, current, joined_us, protective):
                merged[pid] = value
    return merged


def _wins(value: int, current: int, joined_us: int, protective: frozenset[int]) -> bool:
    at, other_at = value >> AT_SHIFT, current >> AT_SHIFT
    if at >= joined_us or other_at >= joined_us:
        # a choice since the join: the newest stands (by time, then by ledger order:
        # ``value >> 2`` is (at, seq))
        return value >> 2 > current >> 2
    guards, other_guards = (value & 3) in protective, (current & 3) in protective
    if guards != other_guards:
        return guards
    return at > other_at if guards else at < other_at


@dataclass(frozen=True)
class PublishedPolicy:
    policy: Policy
    seq: int
    published_us: int


class State:
    """Consents, objections, memberships, account settings and policies at one ledger position."""

    def __init__(self) -> None:
        self.seq = 0
        self.at_us = 0
        #: (purpose, category) -> small int id; records are keyed by it.
        self.pairs: dict[tuple[str, str], int] = {}
        self.consents: dict[str, dict[int, int]] = {}
        self.objections: dict[str, dict[int, int]] = {}
        #: subject -> their accounts, sorted by name: the order they joined in never matters
        #: (issue 12), and a kernel's first match is the same for every join order.
        self.memberships: dict[str, tuple[str, ...]] = {}
        #: Every account an event has named (a member, a setting, a feature): an account
        #: context (the account an item belongs to) must be one of them.
        self.accounts: set[str] = set()
        #: account -> purpose -> (status, seq, at_us)
        self.settings: dict[str, dict[str, tuple[str, int, int]]] = {}
        self.features: dict[str, dict[str, tuple[str, int, int]]] = {}
        self.policies: list[PublishedPolicy] = []
        #: Bumped whenever something a compiled plan depends on changes beyond one subject.
        self.generation = 0
        #: Every subject seen, numbered in order of appearance (reason caches are arrays
        #: indexed by this number).
        self.subject_index: dict[str, int] = {}
        self.subject_names: list[str] = []
        #: (base, numbers): the numbers of the subjects whose records changed, in order, once
        #: someone watches (``watch_subjects``), the first being change number ``base``; a
        #: reason cache forgets their answers. Replaced whole (never cut) when it is full, so
        #: a reader holding one pair always sees a consistent run of changes.
        self.touched: tuple[int, array[int]] = (0, array("q"))
        #: How many subject changes there have been since someone started watching.
        self.changes = 0
        self.watching = False
        #: Identities (``subject.linked``): alias -> the person's primary id, and primary ->
        #: {alias: when linked}. The records of every id of a linked person are kept as
        #: recorded in ``own`` and merged (``merge_records``) into ``consents``,
        #: ``objections`` and ``memberships`` under each of their ids, so that deciding any
        #: of them reads the person's choices (no lookup added on the decision path).
        self.person_of: dict[str, str] = {}
        self.aliases: dict[str, dict[str, int]] = {}
        self.own: dict[str, _Own] = {}

    # -- updates --------------------------------------------------------------------------

    def apply(self, event: Event) -> None:
        """Apply one event (events must come in ``seq`` order)."""
        for change in state_changes(event):
            self.apply_change(change)
        self.seq = event.seq
        self.at_us = event.at_us

    def apply_all(self, events: Iterable[Event]) -> None:
        for event in events:
            self.apply(event)

    def apply_change(self, change: Change) -> None:
        v = change.values
        if change.table == "consents":
            assert v is not None
            subject, purpose, category = change.key
            self.set_consent(subject, purpose, category, v["status"], v["at_us"], v["seq"])
        elif change.table == "objections":
            assert v is not None
            subject, purpose, category = change.key
            self.set_objection(subject, purpose, category, v["status"], v["at_us"], v["seq"])
        elif change.table == "memberships":
            subject, account = change.key
            self.set_membership(subject, account, v is not None)
        elif change.table == "invitations":
            pass  # decisions ignore invitations: an invitee counts for nothing until accepted
        elif change.table == "account_settings":
            assert v is not None
            self.set_account(
                self.settings, change.key[0], change.key[1], v["status"], v["seq"], v["at_us"]
            )
        elif change.table == "account_features":
            assert v is not None
            self.set_account(
                self.features, change.key[0], change.key[1], v["status"], v["seq"], v["at_us"]
            )
        elif change.table == "policies":
            assert v is not None
            self.add_policy(json.loads(v["document"]), v["seq"], v["at_us"], v["digest"])
        elif change.table == "subject_aliases":
            (alias,) = change.key
            if v is None:
                self.unlink(alias)
            else:
                self.link(v["subject"], alias, v["at_us"])
        else:  # pragma: no cover - state_changes only makes the tables above
            raise ValueError(change.table)

    def touch(self, subject: str) -> None:
        """Note that ``subject``'s records changed (numbering it if it is new)."""
        index = self.subject_index.get(subject)
        if index is None:
            index = self.subject_index[subject] = len(self.subject_names)
            self.subject_names.append(subject)
        if self.watching:
            base, touched = self.touched
            if len(touched) >= _TOUCHED_KEPT:
                # Forget the oldest changes (a cache that has not looked since starts over):
                # a new array, so that a reader still slicing the old one is not cut short.
                base, touched = base + len(touched), array("q")
                self.touched = (base, touched)
            touched.append(index)
            # After the append: whoever sees the new count finds the change in ``touched``.
            self.changes += 1

    def watch_subjects(self) -> None:
        """Start keeping ``touched`` (from now on: earlier changes concern no cache)."""
        self.watching = True

    def pair_id(self, purpose: str, category: str) -> int:
        key = (purpose, category)
        pid = self.pairs.get(key)
        if pid is None:
            pid = self.pairs[key] = len(self.pairs)
            self.generation += 1  # compiled plans list the pair ids they look up
        return pid

    def set_consent(
        self, subject: str, purpose: str, category: str, status: str, at_us: int, seq: int
    ) -> None:
        own = self.own.get(subject)
        if own is not None:  # an id of a linked person: its own record, then the merge
            own.consents[self.pair_id(purpose, category)] = pack(at_us, seq, CONSENT_CODES[status])
            self._merge(self.person_of.get(subject, subject))
            return
        records = self.consents.get(subject)
        if records is None:
            records = self.consents[subject] = {}
        records[self.pair_id(purpose, category)] = pack(at_us, seq, CONSENT_CODES[status])
        self.touch(subject)

    def set_objection(
        self, subject: str, purpose: str, category: str, status: str, at_us: int, seq: int
    ) -> None:
        own = self.own.get(subject)
        if own is not None:
            own.objections[self.pair_id(purpose, category)] = pack(
                at_us, seq, OBJECTION_CODES[status]
            )
            self._merge(self.person_of.get(subject, subject))
            return
        records = self.objections.get(subject)
        if records is None:
            records = self.objections[subject] = {}
        records[self.pair_id(purpose, category)] = pack(at_us, seq, OBJECTION_CODES[status])
        self.touch(subject)

    def set_membership(self, subject: str, account: str, member: bool) -> None:
        own = self.own.get(subject)
        if own is not None:
            if member and account not in own.accounts:
                own.accounts = (*own.accounts, account)
            elif not member:
                own.accounts = tuple(a for a in own.accounts if a != account)
            self._merge(self.person_of.get(subject, subject))
            return
        current = self.memberships.get(subject, ())
        self.accounts.add(account)
        if member and account not in current:
            self.memberships[subject] = tuple(sorted((*current, account)))
        elif not member and account in current:
            rest = tuple(a for a in current if a != account)
            if rest:
                self.memberships[subject] = rest
            else:
                del self.memberships[subject]
        else:
            return
        self.touch(subject)

    def set_account(
        self,
        table: dict[str, dict[str, tuple[str, int, int]]],
        account: str,
        purpose: str,
        status: str,
        seq: int,
        at_us: int,
    ) -> None:
        table.setdefault(account, {})[purpose] = (status, seq, at_us)
        self.accounts.add(account)
        self.generation += 1

    def add_policy(
        self, document: dict[str, Any], seq: int, published_us: int, digest: str | None = None
    ) -> None:
        policy = _PARSED.get(digest) if digest else None
        if policy is None:
            policy = parse_policy(document, where=f"ledger policy #{seq}")
            # Replays (as_of checks) meet the same few documents again and again.
            _PARSED[policy.digest] = policy
        self.policies.append(PublishedPolicy(policy, seq, published_us))
        self.generation += 1

    # -- identities -----------------------------------------------------------------------

    def link(self, primary: str, alias: str, at_us: int) -> None:
        """``alias`` is now one of ``primary``'s ids (moved from another person if it was
        linked to one). The store refuses chains (an alias of an alias, a person linked as
        someone's alias); a ledger holding one anyway is replayed as recorded: each link
        joins ``alias`` to ``primary`` alone."""
        if self.person_of.get(alias) is not None:
            self.unlink(alias)
        for subject in (primary, alias):
            if subject not in self.own:
                self.own[subject] = _Own(
                    self.consents.pop(subject, {}),
                    self.objections.pop(subject, {}),
                    self.memberships.pop(subject, ()),
                )
        self.person_of[alias] = primary
        self.aliases.setdefault(primary, {})[alias] = at_us
        self._merge(primary)

    def unlink(self, alias: str) -> None:
        """``alias`` is its own person again, with the records made under it."""
        primary = self.person_of.pop(alias, None)
        if primary is None:
            return
        links = self.aliases[primary]
        del links[alias]
        self._release(alias)
        if links:
            self._merge(primary)
        else:
            del self.aliases[primary]
            self._release(primary)

    def _release(self, subject: str) -> None:
        if subject in self.aliases or subject in self.person_of:
            return  # (still linked the other way: a chain replayed as recorded)
        own = self.own.pop(subject)
        self._put(subject, own.consents, own.objections, own.accounts)

    def own_consents(self, subject: str) -> dict[int, int] | None:
        """The consent records made under ``subject`` itself (not merged with the rest of
        its person's): what an event about it changes."""
        own = self.own.get(subject)
        return own.consents if own is not None else self.consents.get(subject)

    def ids_of(self, subject: str) -> tuple[str, ...]:
        """Every id of the person ``subject`` names: their primary id first, then aliases."""
        primary = self.person_of.get(subject, subject)
        return (primary, *sorted(self.aliases.get(primary, ())))

    def _merge(self, primary: str) -> None:
        """Put the person's merged records under each of their ids (see ``merge_records``)."""
        links = self.aliases.get(primary)
        if not links:
            return
        ids = (primary, *links)
        joined = max(links.values())
        owns = [self.own[i] for i in ids if i in self.own]
        consents = merge_records([o.consents for o in owns], joined, CONSENT_PROTECTIVE)
        objections = merge_records([o.objections for o in owns], joined, OBJECTION_PROTECTIVE)
        accounts = tuple(dict.fromkeys(a for o in owns for a in o.accounts))
        for subject in ids:
            self._put(subject, consents, objections, accounts)

    def _put(
        self,
        subject: str,
        consents: dict[int, int],
        objections: dict[int, int],
        accounts: tuple[str, ...],
    ) -> None:
        tables: tuple[tuple[dict[str, Any], Any], ...] = (
            (self.consents, consents),
            (self.objections, objections),
            (self.memberships, accounts),
        )
        for table, value in tables:
            if value:
                table[subject] = value
            else:
                table.pop(subject, None)
        self.touch(subject)

    # -- questions ------------------------------------------------------------------------

    def known_subject(self, subject: str) -> bool:
        return (
            subject in self.consents
            or subject in self.objections
            or subject in self.memberships
            or subject in self.own
        )

    def accounts_of(self, subject: str) -> tuple[str, ...]:
        return self.memberships.get(subject, ())

    def policy_at(self, at_us: int) -> tuple[PublishedPolicy | None, int | None]:
        """The version in effect at ``at_us`` among those published by then, and when the next
        known version takes over (``None`` if none is scheduled)."""
        current: PublishedPolicy | None = None
        next_us: int | None = None
        from .times import to_us

        for entry in self.policies:
            effective = to_us(entry.policy.effective)
            if entry.published_us > at_us:
                continue
            if effective <= at_us:
                if current is None or effective >= to_us(current.policy.effective):
                    current = entry
            elif next_us is None or effective < next_us:
                next_us = effective
        return current, next_us
