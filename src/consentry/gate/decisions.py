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
from ..reason_cache import UNSET
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
    """Per (group, subject): the reason code and the ledger event that decided it.

    With account contexts (a manifest's ``account`` column), a group is a category group
    decided in one context: group ``g * contexts + a`` answers for the categories of group
    ``g`` in items of ``accounts[a - 1]`` (``a`` 0: no account given). :meth:`group_of`."""

    categories: dict[str, CategoryPlan]
    groups: int
    subjects: list[str] = field(default_factory=list)
    table: Any = None  # pyarrow.Table: g uint16, subject string, code uint8, seq int64 (null: none)
    #: The accounts the manifest's items belong to, in order (position ``a - 1``).
    accounts: list[str] = field(default_factory=list)

    @property
    def contexts(self) -> int:
        """How many account contexts each category group is decided in (1: none given)."""
        return len(self.accounts) + 1

    def group_of(self, category_group: int, account_position: int) -> int:
        """The decision group of a category group in an account context (0: none)."""
        return category_group * self.contexts + account_position

    def account_table(self) -> Any:
        """pyarrow.Table (account, a) for the engines' joins (``a`` from 1)."""
        import pyarrow as pa

        return pa.table(
            {
                "account": pa.array(self.accounts, pa.string()),
                "a": pa.array(range(1, len(self.accounts) + 1), pa.uint16()),
            }
        )

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


@dataclass(frozen=True)
class ManifestSubjects:
    """The subjects a manifest names, with the categories it names each under: the decision
    table then decides only these (each under the groups of those categories), so that its
    cost follows the manifest's distinct subjects, not the store's population.

    ``pairs`` is a pyarrow.Table ``(category string, subject string)``: for every item, its
    category with each of its subjects (every subject of a multi-subject item, whatever the
    rule's parties, so that each lookup an engine makes is covered), nulls left out,
    duplicates allowed."""

    pairs: Any


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
    subjects: Sequence[str] | ManifestSubjects | None = None,
    *,
    lock: Any = None,
    store: Store | None = None,
    allowed_seqs: bool = True,
    accounts: Sequence[str] = (),
) -> DecisionTable:
    """Decide every (category group, known subject) once, with no account context and in
    each of ``accounts`` (the accounts a manifest's items belong to; see
    :meth:`DecisionTable.group_of`).

    ``subjects`` limits the table to those subjects (the ones a small manifest names); the
    default is every subject the store knows. A subject absent from the table is one the
    store has never seen: the engines answer ``unknown_subject`` for it. With
    :class:`ManifestSubjects`, the table lists the manifest's known subjects and each group
    decides only those the manifest names under one of its categories: the other cells
    (which no item of the manifest looks up) hold ``unknown_subject``.

    A live snapshot decides through the store's own compiled plans and their reason caches
    (:class:`~consentry.reason_cache.ReasonCache`, as ``Decider.codes`` does): subjects
    decided before, by checks or an earlier gate, and unchanged since, are a gather.

    ``allowed_seqs=False`` leaves ``seq`` empty where the answer allows: finding the event
    behind an answer asks ``Plan.decide`` once per subject, and a gate writes it for the
    exclusions only (``event_seq`` of ``excluded``), so it skips the consenting subjects.
    """

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
        needed: list[Any] | None = None
        if isinstance(subjects, ManifestSubjects):
            universe, needed = _manifest_universe(subjects.pairs, plans, len(groups), state)
        elif subjects is None:
            universe = known_subjects(state)
        else:
            universe = sorted({s for s in subjects if s is not None and state.known_subject(s)})
        now = snapshot.now_us
        contexts = [None, *accounts]
        decided = [
            plan if account is None else compile_plan(
                state, plan.purpose, plan.category, now, account
            )
            for plan in groups
            for account in contexts
        ]  # fmt: skip
        # Decision group g is category group g // len(contexts) in context g % len(contexts):
        # the store's cached plans serve the no-account context, and every context of a
        # category group decides the subjects the manifest names under its categories.
        live = _live_plans(snapshot, store, plans, len(groups))
        k = len(contexts)
        cached = [live[g // k] if g % k == 0 else None for g in range(len(decided))]
        wanted = None if needed is None else [needed[g // k] for g in range(len(decided))]
        codes, seqs = _decide_groups(decided, cached, state, universe, wanted, now, allowed_seqs)
    finally:
        if lock is not None:
            lock.release()
    if snapshot.ledger_seq != seen and store is not None:
        seq = snapshot.ledger_seq
        snapshot.ledger_hash = store.ledger.event(seq).hash if seq else GENESIS_HASH
    table = _arrow_table(universe, codes, seqs)
    return DecisionTable(plans, len(decided), universe, table, list(accounts))


def _manifest_universe(
    pairs: Any, plans: dict[str, CategoryPlan], groups: int, state: State
) -> tuple[list[str], list[Any]]:
    """The manifest's known subjects, and for each group the positions (among them) of the
    subjects named under one of its categories (vectorised: no Python per pair)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    category = pairs.column("category").cast(pa.string())
    subject = pairs.column("subject").cast(pa.string())
    names = pc.unique(pc.drop_null(subject))
    known = state.known_subject
    universe = [s for s in names.to_pylist() if known(s)]
    position = pc.index_in(subject, value_set=pa.array(universe, pa.string()))
    cats = sorted(plans)
    # A category's group, or -1 when its plan answers the same for everyone (no lookup).
    cat_group = np.array(
        [plans[c].group if plans[c].fixed is None else -1 for c in cats] + [-1], dtype=np.int64
    )
    ci = pc.fill_null(pc.index_in(category, value_set=pa.array(cats, pa.string())), len(cats))
    g = cat_group[ci.to_numpy(zero_copy_only=False)]
    pos = pc.fill_null(position, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    keep = pos >= 0
    needed = [np.unique(pos[keep & (g == group)]) for group in range(groups)]
    return universe, needed


def _live_plans(
    snapshot: LedgerSnapshot, store: Store | None, plans: dict[str, CategoryPlan], groups: int
) -> list[Plan | None]:
    """For a live snapshot, each group's plan as the store's decider keeps it (with its
    reason cache); None where there is none to share (``as_of``: a replayed state)."""
    found: list[Plan | None] = [None] * groups
    if not snapshot.live or store is None:
        return found
    decider = store.decider(refresh=False)
    if decider.state is not snapshot.state:
        return found
    for category, p in sorted(plans.items()):
        if p.fixed is None and found[p.group] is None:
            found[p.group] = decider.plan(snapshot.purpose, category, snapshot.now_us)
    return found


def _decide_groups(
    groups: list[Plan],
    cached: list[Plan | None],
    state: State,
    universe: Sequence[str],
    needed: list[Any] | None,
    now: int,
    allowed_seqs: bool,
) -> tuple[Any, Any]:
    """(codes, seqs) per (group, subject position): each group's needed subjects decided in
    one batch, the rest ``unknown_subject``."""
    import numpy as np

    n = len(universe)
    codes = np.full((len(groups), n), UNKNOWN_CODE, dtype=np.uint8)
    seqs = np.zeros((len(groups), n), dtype=np.int64)
    for g, plan in enumerate(groups):
        if needed is None:
            names: Sequence[str] = universe
            rows: Any = slice(None)
        else:
            rows = needed[g]
            names = [universe[i] for i in rows.tolist()]
        found = array("q")
        out = _codes_and_seqs(plan, state, names, now, found, allowed_seqs, cached[g])
        codes[g, rows] = _np_from(out, "uint8")
        seqs[g, rows] = _np_from(found, "int64")
    return codes, seqs


def _arrow_table(universe: list[str], codes: Any, seqs: Any) -> Any:
    """The decision table ``(g, subject, code, seq)``, group after group."""
    import numpy as np
    import pyarrow as pa

    groups = codes.shape[0]
    names = pa.array(universe, pa.string())
    subject_col = pa.concat_arrays([names] * groups) if groups > 1 else names
    if not groups:
        subject_col = pa.array([], pa.string())
    seq_np = seqs.ravel()
    return pa.table(
        {
            "g": pa.array(np.repeat(np.arange(groups, dtype=np.uint16), len(universe))),
            "subject": subject_col,
            "code": pa.array(codes.ravel(), pa.uint8()),
            "seq": pa.array(seq_np, pa.int64(), mask=seq_np == 0),
        }
    )


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
    cached: Plan | None = None,
) -> bytearray:
    """Every subject's reason code with ``plan.codes`` (the batch kernel), and the deciding
    event's seq with ``plan.decide`` for the subjects whose answer names one (of those
    whose answer denies only, without ``allowed_seqs``). ``cached``: the same plan as the
    store's decider keeps it; its reason cache answers the subjects it remembers."""
    import numpy as np

    cache = cached.cache if cached is not None else None
    if cache is not None:
        if cache.pos != state.changes:
            cache.sync()
        if not _warm(cache, state, subjects):
            cache = None  # mostly first asks: the kernel alone is cheaper than filling it
    if cache is not None:
        out = bytearray(cache.codes_for(subjects, now))
    else:
        out = bytearray(plan.codes(state, subjects, now))
    found = np.zeros(len(subjects), dtype=np.int64)
    if len(out):
        arr = np.frombuffer(bytes(out), dtype=np.uint8)
        wanted = _WITH_EVENT if allowed_seqs else _WITH_EVENT - set(ALLOW_CODES)
        mask = np.isin(arr, np.array(sorted(wanted), dtype=np.uint8))
        decide = plan.decide
        index = state.subject_index
        for i in np.flatnonzero(mask).tolist():
            if cache is not None:
                code, seq = cache.answer(index.get(subjects[i], -1), subjects[i], now)
            else:
                code, seq = decide(state, subjects[i], now)
            out[i] = code
            found[i] = seq
    seqs.frombytes(found.tobytes())
    return out


#: How many of a batch's subjects :func:`_warm` looks at.
_WARM_SAMPLE = 256


def _warm(cache: Any, state: State, subjects: Sequence[str]) -> bool:
    """Whether the reason cache remembers at least half of a sample of ``subjects`` (then
    gathering from it beats deciding; on a cold cache, filling it costs more than the batch
    kernel alone)."""
    codes = cache.codes
    limit = len(codes) - 1
    index = state.subject_index
    sample = subjects[:_WARM_SAMPLE]
    kept = 0
    for subject in sample:
        i = index.get(subject, -1)
        if 0 <= i < limit and codes[i] != UNSET:
            kept += 1
    return kept * 2 >= len(sample) > 0


def _np_from(buffer: Any, dtype: str) -> Any:
    import numpy as np

    return np.frombuffer(bytes(buffer), dtype=dtype) if len(buffer) else np.array([], dtype=dtype)
