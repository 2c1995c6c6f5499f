"""The per-subject decision table the gate joins to a manifest.

The decision semantics live in :mod:`consentry.decide` only. For each distinct category of a
manifest the gate compiles the same :class:`~consentry.decide.Plan` a check would, and asks
``Plan.decide`` once per known subject; the answers go into an Arrow table
``(g, subject, code, seq)`` that an engine (DuckDB, Spark) joins to the items. Categories whose
plans are the same in every respect but their name share one group ``g``, so a manifest of
ten content categories under one consent rule costs one pass over the subjects, not ten.

Reason codes are the positions of :class:`~consentry.decide.Reason` (``contract`` is 0), plus
``source_opt_out`` (an item whose ``source_url`` opted out of AI training), which only the gate
knows.
"""

from __future__ import annotations

import dataclasses
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..decide import ALLOW_REASONS, Plan, Reason, compile_plan
from ..errors import InvalidInput
from ..ledger.events import GENESIS_HASH
from ..policy.model import Policy
from ..state import State
from ..times import format_time, from_us, to_us

if TYPE_CHECKING:
    from ..store import Store

SOURCE_OPT_OUT = "source_opt_out"
#: Every reason the gate can give, in code order.
REASONS: tuple[str, ...] = (*(str(r) for r in Reason), SOURCE_OPT_OUT)
CODES: dict[str, int] = {name: i for i, name in enumerate(REASONS)}
ALLOW_CODES: tuple[int, ...] = tuple(sorted(CODES[str(r)] for r in ALLOW_REASONS))
UNKNOWN_CODE = CODES[str(Reason.UNKNOWN_SUBJECT)]
PROTECTED_CODE = CODES[str(Reason.PROTECTED_LABEL)]
OPT_OUT_CODE = CODES[SOURCE_OPT_OUT]


@dataclass
class LedgerSnapshot:
    """The state a gate run decides over: the ledger up to one position, at one time."""

    state: State
    purpose: str
    at: datetime
    now_us: int
    ledger_seq: int
    ledger_hash: str
    policy: Policy | None
    #: True when ``state`` is the store's live snapshot (``as_of`` not given).
    live: bool

    @property
    def as_of(self) -> str:
        return format_time(self.at)

    @property
    def policy_version(self) -> str | None:
        return self.policy.version if self.policy else None

    def check_category(self, category: str) -> None:
        """Raise :class:`UnknownName` unless the policy in effect knows ``category``."""
        taxonomy = self.policy.taxonomy if self.policy else None
        if taxonomy is not None:
            taxonomy.category(category, where="manifest")

    def known_labels(self) -> frozenset[str] | None:
        """Labels a manifest may use (``None``: no policy in effect, labels are not checked)."""
        return self.policy.taxonomy.labels if self.policy else None


def replay_state(store: Store, at: datetime) -> State:
    """The whole state as of ``at``: every event with ``at_us <= at`` applied to a fresh
    :class:`State` in ledger order (``at_us`` never decreases along the chain, so this is a
    prefix of the ledger)."""
    state = State()
    state.apply_all(store.ledger.events(until_us=to_us(at)))
    return state


def take_snapshot(store: Store, purpose: str, as_of: datetime | str | None) -> LedgerSnapshot:
    """Check the purpose and pin the state and time to decide at.

    ``as_of`` given: the ledger is fenced at that time first (``Ledger.fence``: no event
    appended later, by any process, can fall at or before it), then replayed up to it.
    ``as_of`` None (live): the time here is provisional (it chooses the policy the manifest
    is checked against); ``build_table`` pins the final time and ledger position together,
    under the store's lock (see ``pin_live``).
    """
    if not isinstance(purpose, str) or not purpose:
        raise InvalidInput("the gate needs a purpose, e.g. ai.training", field="purpose")
    if as_of is None:
        live = True
        at = store.clock()
        state = store.state()
    else:
        live = False
        at = store.resolve_as_of(as_of)  # refuses the future and times before any policy
        store.ledger.fence(store.clock, at)
        state = replay_state(store, at)
    now_us = to_us(at)
    entry, _ = state.policy_at(now_us)
    policy = entry.policy if entry else None
    taxonomy = policy.taxonomy if policy else store.taxonomy()
    purpose = taxonomy.purpose(purpose, where="gate")
    seq = state.seq
    ledger_hash = store.ledger.event(seq).hash if seq else GENESIS_HASH
    return LedgerSnapshot(state, purpose, from_us(now_us), now_us, seq, ledger_hash, policy, live)


@dataclass(frozen=True)
class CategoryPlan:
    """How one category of the manifest is decided."""

    category: str
    #: The decision group whose rows of the decision table answer for this category.
    group: int
    #: A subject-independent answer (no_basis, prohibited), or None.
    fixed: int | None
    parties_all: bool
    protected: tuple[str, ...]
    rule: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "parties": "all" if self.parties_all else "owner",
            "fixed": REASONS[self.fixed] if self.fixed is not None else None,
        }


@dataclass
class DecisionTable:
    """Per (group, subject): the reason code and the ledger event that decided it."""

    categories: dict[str, CategoryPlan]
    groups: int
    subjects: list[str] = field(default_factory=list)
    table: Any = None  # pyarrow.Table: g uint16, subject string, code uint8, seq int64 (null: none)

    def category_table(self) -> Any:
        """pyarrow.Table (category, g, fixed, parties_all, protected) for the engines."""
        import pyarrow as pa

        plans = sorted(self.categories.values(), key=lambda p: p.category)
        return pa.table(
            {
                "category": pa.array([p.category for p in plans], pa.string()),
                "g": pa.array([p.group for p in plans], pa.uint16()),
                "fixed": pa.array([p.fixed for p in plans], pa.uint8()),
                "parties_all": pa.array([p.parties_all for p in plans], pa.bool_()),
                "protected": pa.array([list(p.protected) for p in plans], pa.list_(pa.string())),
            }
        )


_NOT_COMPARED = frozenset({"purpose", "category", "generation", "valid_until_us"})


def _same_plan(a: Plan, b: Plan) -> bool:
    """True when ``Plan.decide`` must answer the same for ``a`` and ``b`` (every field it can
    read is equal)."""
    for f in dataclasses.fields(Plan):
        if f.name in _NOT_COMPARED:
            continue
        x, y = getattr(a, f.name), getattr(b, f.name)
        if x is not y and x != y:
            return False
    return True


def known_subjects(state: State) -> list[str]:
    """Every subject the store has seen (``State.known_subject``), in no particular order."""
    # (``own``: the ids of people known under several, even with no record of their own)
    return list(
        state.consents.keys()
        | state.objections.keys()
        | state.memberships.keys()
        | state.own.keys()
    )


def plan_categories(
    snapshot: LedgerSnapshot, categories: Iterable[str]
) -> tuple[dict[str, CategoryPlan], list[Plan]]:
    """Compile one plan per category and group identical ones."""
    plans: dict[str, CategoryPlan] = {}
    groups: list[Plan] = []
    for category in sorted(set(categories)):
        plan = compile_plan(snapshot.state, snapshot.purpose, category, snapshot.now_us)
        group = 0
        if plan.fixed < 0:
            for i, other in enumerate(groups):
                if _same_plan(plan, other):
                    group = i
                    break
            else:
                group = len(groups)
                groups.append(plan)
        plans[category] = CategoryPlan(
            category=category,
            group=group,
            fixed=plan.fixed if plan.fixed >= 0 else None,
            parties_all=plan.parties_all,
            protected=tuple(sorted(plan.protected)),
            rule=plan.rule.id if plan.rule else None,
        )
    return plans, groups


def pin_live(snapshot: LedgerSnapshot, store: Store, categories: Iterable[str]) -> None:
    """Pin a live snapshot's time and ledger position together (hold ``store.lock``).

    The ledger is fenced (``Ledger.fence``): under the chain head's lock, the clock is read
    (``as_of``) and the head's time raised past it, so the events up to the head's ``seq``
    are exactly the events at or before ``as_of``, whatever other processes append later.
    The in-memory state is caught up to exactly that ``seq``; holding the lock keeps this
    process's writers from moving it on. So ``as_of`` and ``ledger.seq`` describe one prefix:
    a gate run ``as_of`` the recorded time replays exactly the state decided over here.

    Should a policy version have taken effect since ``take_snapshot`` chose one, the
    snapshot takes the version in effect at ``as_of`` and the purpose and categories are
    checked against it again.
    """
    for _attempt in range(3):
        seq, head_hash, as_of_us = store.ledger.fence(store.clock)
        # Past the fenced seq only if the state was first loaded here, after the fence: the
        # next fence is at or past it (the lock keeps it where it is).
        state = store.state_at(seq)
        if state is not None:
            break
    else:  # pragma: no cover - the state cannot move while the lock is held
        raise RuntimeError("the ledger's state kept moving past the gate's fence")
    snapshot.state = state
    snapshot.at, snapshot.now_us = from_us(as_of_us), as_of_us
    snapshot.ledger_seq, snapshot.ledger_hash = seq, head_hash
    entry, _ = state.policy_at(as_of_us)
    policy = entry.policy if entry else None
    if policy is not snapshot.policy:
        snapshot.policy = policy
        taxonomy = policy.taxonomy if policy else store.taxonomy()
        snapshot.purpose = taxonomy.purpose(snapshot.purpose, where="gate")
        for category in categories:
            snapshot.check_category(category)


def build_table(
    snapshot: LedgerSnapshot,
    categories: Iterable[str],
    subjects: Sequence[str] | None = None,
    *,
    lock: Any = None,
    store: Store | None = None,
    allowed_seqs: bool = True,
) -> DecisionTable:
    """Decide every (category group, known subject) once.

    ``subjects`` limits the table to those subjects (the ones a small manifest names); the
    default is every subject the store knows. A subject absent from the table is one the
    store has never seen: the engines answer ``unknown_subject`` for it.

    ``allowed_seqs=False`` leaves ``seq`` empty where the answer allows: finding the event
    behind an answer asks ``Plan.decide`` once per subject, and a gate writes it for the
    exclusions only (``event_seq`` of ``excluded``), so it skips the consenting subjects.
    """
    import pyarrow as pa

    categories = list(categories)
    if snapshot.live and store is not None and lock is None:
        lock = store.lock  # (pin_live needs it)
    if lock is not None:
        lock.acquire()
    try:
        # Writers in this process wait while the table is built, so that the watermark is
        # exactly the state decided over.
        if snapshot.live and store is not None:
            pin_live(snapshot, store, categories)
        state = snapshot.state
        seen = snapshot.ledger_seq
        snapshot.ledger_seq = state.seq
        plans, groups = plan_categories(snapshot, categories)
        if subjects is None:
            universe = known_subjects(state)
        else:
            universe = sorted({s for s in subjects if s is not None and state.known_subject(s)})
        gs = array("H")
        codes = bytearray()
        seqs = array("q")
        now = snapshot.now_us
        for g, plan in enumerate(groups):
            gs.extend(array("H", [g]) * len(universe))
            codes.extend(_codes_and_seqs(plan, state, universe, now, seqs, allowed_seqs))
    finally:
        if lock is not None:
            lock.release()
    if snapshot.ledger_seq != seen and store is not None:
        seq = snapshot.ledger_seq
        snapshot.ledger_hash = store.ledger.event(seq).hash if seq else GENESIS_HASH
    n = len(codes)
    subject_col = pa.array(universe, pa.string())
    if len(groups) > 1:
        subject_col = pa.concat_arrays([subject_col] * len(groups))
    seq_np = _np_from(seqs, "int64")
    table = pa.table(
        {
            "g": pa.array(_np_from(gs, "uint16"), pa.uint16()),
            "subject": subject_col if n else pa.array([], pa.string()),
            "code": pa.array(_np_from(codes, "uint8"), pa.uint8()),
            "seq": pa.array(seq_np, pa.int64(), mask=seq_np == 0),
        }
    )
    return DecisionTable(plans, len(groups), universe, table)


#: Answers that name the event behind them (a consent record, an account setting, ...).
_WITH_EVENT = frozenset(
    CODES[str(r)]
    for r in (
        Reason.CONSENT, Reason.ACCOUNT_CONSENT, Reason.REFUSED, Reason.WITHDRAWN,
        Reason.STALE_CONSENT, Reason.EXPIRED, Reason.OBJECTION, Reason.ACCOUNT_OFF,
        Reason.NOT_ENABLED,
    )
)  # fmt: skip


def _codes_and_seqs(
    plan: Plan,
    state: State,
    subjects: Sequence[str],
    now: int,
    seqs: array[int],
    allowed_seqs: bool = True,
) -> bytearray:
    """Every subject's reason code with ``plan.codes`` (the batch kernel), and the deciding
    event's seq with ``plan.decide`` for the subjects whose answer names one (of those
    whose answer denies only, without ``allowed_seqs``)."""
    import numpy as np

    out = bytearray(plan.codes(state, subjects, now))
    found = np.zeros(len(subjects), dtype=np.int64)
    if len(out):
        arr = np.frombuffer(bytes(out), dtype=np.uint8)
        wanted = _WITH_EVENT if allowed_seqs else _WITH_EVENT - set(ALLOW_CODES)
        mask = np.isin(arr, np.array(sorted(wanted), dtype=np.uint8))
        decide = plan.decide
        for i in np.flatnonzero(mask).tolist():
            code, seq = decide(state, subjects[i], now)
            out[i] = code
            found[i] = seq
    seqs.frombytes(found.tobytes())
    return out


def _np_from(buffer: Any, dtype: str) -> Any:
    import numpy as np

    return np.frombuffer(bytes(buffer), dtype=dtype) if len(buffer) else np.array([], dtype=dtype)
