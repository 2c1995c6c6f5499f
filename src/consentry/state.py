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
        records = self.consents.get(subject)
        if records is None:
            records = self.consents[subject] = {}
        records[self.pair_id(purpose, category)] = pack(at_us, seq, CONSENT_CODES[status])
        self.touch(subject)

    def set_objection(
        self, subject: str, purpose: str, category: str, status: str, at_us: int, seq: int
    ) -> None:
        records = self.objections.get(subject)
        if records is None:
            records = self.objections[subject] = {}
        records[self.pair_id(purpose, category)] = pack(at_us, seq, OBJECTION_CODES[status])
        self.touch(subject)

    def set_membership(self, subject: str, account: str, member: bool) -> None:
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

    # -- questions ------------------------------------------------------------------------

    def known_subject(self, subject: str) -> bool:
        return subject in self.consents or subject in self.objections or subject in self.memberships

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
