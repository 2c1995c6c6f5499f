"""The DuckDB engine's single pass: decide every row once, write both outputs, measure them.

DuckDB scans the manifest in parallel and, per row, finds its category and its owner's
position in the decision table (hash joins against the category list and the table's
subjects), hashes the subjects of multi-subject items and computes ``v(item_id)`` for the
multiset digest. The rows come back as Arrow record batches (fetched on a thread of their
own, :class:`Prefetch`); for each batch this module

1. checks it for bad rows with whole-column tests (:func:`has_bad_rows`; the engine then
   names the first one);
2. turns those columns into reason codes with a few numpy operations (:class:`BatchDecider`),
   asking the other subjects of a multi-subject item only where the rule needs every party and
   the owner allows (the only case where they can change the answer);
3. hands the allowed rows and the exclusions to two writers, each on a thread of its own
   (:class:`Sink`), so that encoding and compressing overlaps the scan of the next batch;
4. adds the batch to the counts, the digest sums and the subject index (:class:`Tally`).

So the manifest is read once, and the outputs are not read back: the digests and the subject
index are computed from exactly the batches handed to the writers (``gate verify`` recomputes
them from the files, with :mod:`consentry.gate.measure`).
"""

from __future__ import annotations

import contextlib
import io
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..item_order import ITEM_ORDER, ItemStep
from .checks import Predicate, RowCheck
from .decisions import (
    ALLOW_CODES,
    OPT_OUT_CODE,
    PROTECTED_CODE,
    REASONS,
    UNKNOWN_CODE,
    DecisionTable,
)
from .manifest import Shape
from .result import MASK64, multiset_digest

#: Rows per record batch from DuckDB: large enough that the per-batch Python work is noise,
#: small enough that a few batches in flight stay well under the memory budget.
BATCH_ROWS = 1 << 20
#: Batches queued per writer before the scan waits for it.
QUEUE_DEPTH = 3
#: Rows sampled from the first batch to decide which Parquet columns get a dictionary.
DICTIONARY_SAMPLE = 1 << 16

#: The columns the stream query adds to each manifest row (see ``duck.StreamQuery``).
#: The category's position in ``BatchDecider.categories`` (null: a category the table lacks).
CATEGORY_POS = "__category_pos"
#: The owner's position in the decision table (``BatchDecider.unknown``: never seen).
OWNER_POS = "__owner_pos"
#: ``v(item_id)`` of the multiset digest (0 when the run computes the sorted digest).
ID_VALUE = "__id_value"
#: The engine's hash of each subject of a multi-subject item (null for one subject).
SUBJECT_HASHES = "__subject_hashes"
#: The item carries a label the rule protects.
PROTECTED = "__protected_label"
#: The item's account in ``DecisionTable.accounts`` (from 1; 0: none given; null: unknown).
ACCOUNT_POS = "__account_pos"
#: The item's source URL opted out of AI training.
OPTED_OUT = "__source_opted_out"

ALLOW = np.zeros(256, dtype=bool)
ALLOW[list(ALLOW_CODES)] = True
EXCLUDED_SCHEMA = pa.schema(
    [
        ("item_id", pa.string()),
        ("reason", pa.string()),
        ("blocking_subject", pa.string()),
        ("event_seq", pa.int64()),
    ]
)


# -- checking ----------------------------------------------------------------------------------


def has_bad_rows(batch: Any, checks: Sequence[RowCheck]) -> bool:
    """True when a row of the batch fails one of ``checks`` (:mod:`consentry.gate.checks`),
    each translated into whole-column tests: a few passes over offsets and null counts
    instead of an expression per row in the scan. The engine then names the first one."""
    flat: dict[str, Any] = {}  # each list column's values, flattened once
    return any(_fails(batch, check, flat) for check in checks)


def _fails(batch: Any, check: RowCheck, flat: dict[str, Any]) -> bool:
    if check.column == "category":
        # The query's join leaves the position null for a null category and for one the
        # decision table lacks: both category checks are that null count.
        return bool(batch.column(CATEGORY_POS).null_count)
    if check.column == "account" and check.predicate is Predicate.NOT_IN:
        # Null for an account the decision table lacks (a null account is position 0).
        return bool(batch.column(ACCOUNT_POS).null_count)
    column = batch.column(check.column)
    p = check.predicate
    if p is Predicate.NULL:
        return bool(column.null_count)
    listed = pa.types.is_list(column.type) or pa.types.is_large_list(column.type)
    if p is Predicate.EMPTY:
        if listed:  # an empty list (a null one has no values either; NULL reports it first)
            return bool((np.diff(column.offsets.to_numpy()) == 0).any())
        return _any_empty(column)
    values = flat.get(check.column)
    if values is None:
        values = flat[check.column] = pc.list_flatten(column)
    if p is Predicate.NULL_ITEM:
        return bool(values.null_count)
    if p is Predicate.EMPTY_ITEM:
        return _any_empty(values)
    if not len(values):  # ITEM_NOT_IN
        return False
    known = pa.array(sorted(check.values), pa.string())
    return not pc.all(pc.is_in(values, value_set=known)).as_py()


def _any_empty(strings: Any) -> bool:
    return bool(len(strings)) and bool(pc.any(pc.equal(pc.binary_length(strings), 0)).as_py())


# -- deciding -----------------------------------------------------------------------------------


@dataclass
class BatchAnswers:
    """One batch's answers, row for row."""

    #: The reason code (an index into ``REASONS``).
    code: Any  # numpy uint8
    #: Answered by the item itself, before its parties (source opt-out, protected label, a
    #: fixed answer).
    item: Any  # numpy bool
    #: The ledger seq of the event behind the answer; 0 for none.
    seq: Any  # numpy int64
    #: The owner's position in the decision table's subjects (``len(subjects)``: unknown).
    owner: Any  # numpy int64
    #: The category's position in :attr:`BatchDecider.categories`.
    category: Any  # numpy uint16
    #: The category's decision group (the decision table's rows answering for it).
    group: Any = None  # numpy int64
    #: Where each row's subject list starts in the list column's values, and its length
    #: (list manifests; else None).
    starts: Any = None
    lengths: Any = None
    #: Rows blocked by a subject other than the owner (ascending), and where that subject
    #: is in the list column's values.
    blocked: Any = None
    blocked_at: Any = None

    @property
    def allowed(self) -> Any:
        return ALLOW[self.code]

    def answer(self, rows: Any, code: Any) -> None:
        """``rows`` (numpy bool) not answered yet take ``code`` (a number, or one per row):
        an item-level step."""
        rows = rows & ~self.item
        if rows.any():
            self.code[rows] = code if np.isscalar(code) else code[rows]
            self.item |= rows


class BatchDecider:
    """Per-row reason codes from the columns the stream query adds.

    :data:`CATEGORY_POS`, :data:`OWNER_POS` (the sentinel :attr:`unknown` for a subject the
    store has never seen), :data:`SUBJECT_HASHES` and, when they apply, :data:`OPTED_OUT` and
    :data:`PROTECTED`, in the order of :data:`~consentry.item_order.ITEM_ORDER`: one
    translation of each step in :attr:`STEPS`.
    """

    def __init__(self, table: DecisionTable, shape: Shape, *, opt_outs: bool, labels: bool):
        self.shape = shape
        self.opt_outs = opt_outs
        self.labels = labels
        self.categories: list[str] = sorted(table.categories)
        plans = [table.categories[c] for c in self.categories]
        self.subjects: list[str] = list(table.subjects)
        n = len(self.subjects)
        self.unknown = n
        groups = max(table.groups, 1)
        # One extra column per group: position ``n`` answers for a subject the store has
        # never seen, so that a lookup needs no branch.
        codes = np.full((groups, n + 1), UNKNOWN_CODE, dtype=np.uint8)
        seqs = np.zeros((groups, n + 1), dtype=np.int64)
        if table.groups and n:
            codes[:, :n] = table.table.column("code").to_numpy().reshape(table.groups, n)
            seq = pc.fill_null(table.table.column("seq"), 0).to_numpy()
            seqs[:, :n] = seq.reshape(table.groups, n)
        self.codes = codes
        self.seqs = seqs
        # A category's decision group with no account context (see DecisionTable.group_of).
        self.cat_group = np.array([p.group for p in plans], dtype=np.int64) * table.contexts
        self.cat_fixed = np.array(
            [-1 if p.fixed is None else p.fixed for p in plans], dtype=np.int16
        )
        self.cat_parties_all = np.array([p.parties_all for p in plans], dtype=bool)
        # Categories whose answer can depend on a subject other than the owner.
        self.cat_x = np.array([p.parties_all and p.fixed is None for p in plans], dtype=bool)
        self.has_x = shape.is_list and bool(self.cat_x.any())
        self._names: Any = None
        if table.table is not None and table.table.num_rows >= n:
            # The table's first group lists the subjects in position order already.
            self._names = table.table.column("subject").slice(0, n).combine_chunks()
        self._sorted = np.zeros(0, dtype=np.uint64)
        self._order = np.zeros(0, dtype=np.int64)
        self._ambiguous: Any = None
        self._by_name: dict[str, int] | None = None

    def category_table(self) -> Any:
        """(category, ci) for the stream query's join."""
        return pa.table(
            {
                "category": pa.array(self.categories, pa.string()),
                "ci": pa.array(np.arange(len(self.categories), dtype=np.uint16)),
            }
        )

    def subject_table(self) -> Any:
        """(subject, i) for the stream query's join on the owner."""
        return pa.table(
            {
                "subject": self.names(),
                "i": pa.array(np.arange(len(self.subjects), dtype=np.uint32)),
            }
        )

    def names(self) -> Any:
        """The decision table's subjects as an Arrow array, in position order."""
        if self._names is None:
            self._names = pa.array(self.subjects, pa.string())
        return self._names

    def set_hashes(self, hashes: Any) -> None:
        """The engine's 64-bit hash of each decision-table subject (in position order), for
        :meth:`positions`: DuckDB hashes the subject lists of multi-subject rows with the
        same function, so that they are looked up with a vectorised binary search instead of
        one dictionary lookup each."""
        order = np.argsort(hashes, kind="stable")
        self._sorted = hashes[order]
        self._order = order.astype(np.int64)
        same = self._sorted[1:] == self._sorted[:-1]
        # Two known subjects with one hash (about 1M²/2⁶⁵ ≈ 3e-8 for a million subjects):
        # those hashes are looked up by name.
        self._ambiguous = np.unique(self._sorted[1:][same]) if same.any() else None

    def positions(self, subjects: Any, hashes: Any) -> Any:
        """Each subject's position in the decision table (``len(subjects)`` when unknown).

        The hash only finds a candidate; the name must then match, so a hash that an unknown
        subject shares with a known one still answers unknown."""
        found = np.full(len(subjects), self.unknown, dtype=np.int64)
        if not len(subjects) or not len(self._sorted):
            return found
        # Needles in order: the binary searches then walk the table's memory in order.
        order = np.argsort(hashes)
        at = np.empty(len(hashes), dtype=np.int64)
        at[order] = np.searchsorted(self._sorted, hashes[order])
        at[at == len(self._sorted)] = 0
        candidate = self._order[at]
        hit = self._sorted[at] == hashes
        if hit.any():
            rows = np.flatnonzero(hit)
            same = pc.equal(
                subjects.take(pa.array(rows)), self.names().take(pa.array(candidate[rows]))
            )
            ok = rows[same.to_numpy(zero_copy_only=False)]
            found[ok] = candidate[ok]
        if self._ambiguous is not None:
            for r in np.flatnonzero(np.isin(hashes, self._ambiguous)).tolist():
                if self._by_name is None:
                    self._by_name = {s: i for i, s in enumerate(self.subjects)}
                found[r] = self._by_name.get(subjects[r].as_py(), self.unknown)
        return found

    def decide(self, batch: Any) -> BatchAnswers:
        """Every row's answer: the steps of :data:`~consentry.item_order.ITEM_ORDER` in
        order, each answering the rows no earlier step answered (:attr:`STEPS`)."""
        category = batch.column(CATEGORY_POS).to_numpy(zero_copy_only=False)
        owner = batch.column(OWNER_POS).to_numpy(zero_copy_only=False).astype(np.int64)
        n = len(owner)
        group = self.cat_group[category]
        if self.shape.account:  # the item's account context (0: none given)
            group = group + batch.column(ACCOUNT_POS).to_numpy(zero_copy_only=False)
        d = BatchAnswers(
            np.zeros(n, dtype=np.uint8), np.zeros(n, dtype=bool), None, owner, category, group,
        )  # fmt: skip
        for step in ITEM_ORDER:
            self.STEPS[step](self, batch, d)
        return d

    # One translation per step of ITEM_ORDER (see STEPS below the class).

    def _source_opt_out(self, batch: Any, d: BatchAnswers) -> None:
        if self.opt_outs:
            d.answer(batch.column(OPTED_OUT).to_numpy(zero_copy_only=False), OPT_OUT_CODE)

    def _protected_label(self, batch: Any, d: BatchAnswers) -> None:
        if self.labels:
            d.answer(batch.column(PROTECTED).to_numpy(zero_copy_only=False), PROTECTED_CODE)

    def _fixed_answer(self, batch: Any, d: BatchAnswers) -> None:
        fixed = self.cat_fixed[d.category]
        d.answer(fixed >= 0, fixed)

    def _parties(self, batch: Any, d: BatchAnswers) -> None:
        """The owner's answer from the decision table, then, where the rule needs every
        party and the owner allows, the first other subject that denies."""
        if len(self.codes) == 1:  # one decision group (the common case): a plain take
            code = np.take(self.codes[0], d.owner)
            seq = np.take(self.seqs[0], d.owner)
        else:
            at = d.group * self.codes.shape[1] + d.owner
            code = np.take(self.codes.ravel(), at)
            seq = np.take(self.seqs.ravel(), at)
        if d.item.any():  # the item-level answers stand, with no event behind them
            code = np.where(d.item, d.code, code)
            seq[d.item] = 0
        d.code, d.seq = code, seq
        if self.shape.is_list:
            # Offsets, not list kernels: rows' subjects are then plain takes from the values.
            offsets = batch.column("subject_ids").offsets.to_numpy().astype(np.int64)
            d.starts, d.lengths = offsets[:-1], np.diff(offsets)
        if self.has_x:
            self._others(batch, d)

    def _unknown_subject(self, batch: Any, d: BatchAnswers) -> None:
        """Nothing is left to answer here: a party the decision table lacks was answered
        ``unknown_subject`` in its place, by the table's sentinel column (see ``__init__``),
        so that a lookup needs no branch."""

    STEPS: ClassVar[dict[ItemStep, Callable[[BatchDecider, Any, BatchAnswers], None]]] = {
        ItemStep.SOURCE_OPT_OUT: _source_opt_out,
        ItemStep.PROTECTED_LABEL: _protected_label,
        ItemStep.FIXED_ANSWER: _fixed_answer,
        ItemStep.PARTIES: _parties,
        ItemStep.UNKNOWN_SUBJECT: _unknown_subject,
    }

    def others(self, batch: Any, d: BatchAnswers, rows: Any) -> tuple[Any, Any, Any, Any]:
        """The subjects after the owner of some (multi-subject) rows, in list order:
        (index into ``rows``, index into the list column's values, names, positions in the
        decision table)."""
        n = d.lengths[rows]
        parent = np.repeat(np.arange(rows.size, dtype=np.int64), n)
        pos = np.arange(int(n.sum()), dtype=np.int64) - np.repeat(np.cumsum(n) - n, n)
        others = np.flatnonzero(pos > 0)
        parents, pos = parent[others], pos[others]
        at = d.starts[rows][parents] + pos
        subjects = batch.column("subject_ids").values.take(pa.array(at))
        h = batch.column(SUBJECT_HASHES)
        h_starts = h.offsets.to_numpy().astype(np.int64)[:-1]
        hashes = h.values.to_numpy()[h_starts[rows][parents] + pos]
        return parents, at, subjects, self.positions(subjects, hashes)

    def _others(self, batch: Any, d: BatchAnswers) -> None:
        """Where the rule needs every party and the owner allows, the first other subject (in
        list order) whose answer denies decides; an owner who denies decides alone."""
        code = d.code
        rows = np.flatnonzero((d.lengths > 1) & self.cat_x[d.category] & ~d.item & ALLOW[code])
        if not rows.size:
            return
        # The owner's answer is already in ``code``: only the others are looked up.
        parents, at, _, where = self.others(batch, d, rows)
        groups = d.group[rows][parents]
        answers = self.codes[groups, where]
        deny = np.flatnonzero(~ALLOW[answers])
        if not deny.size:
            return
        # In list order, so a row's first denial is its first entry here.
        _, first = np.unique(parents[deny], return_index=True)
        pick = deny[first]
        target = rows[parents[pick]]
        code[target] = answers[pick]
        d.seq[target] = self.seqs[groups[pick], where[pick]]
        d.blocked, d.blocked_at = target, at[pick]

    def blocking(self, batch: Any, d: BatchAnswers, mask: Any) -> Any:
        """``blocking_subject`` of the rows in ``mask`` (numpy bool): the owner, or the other
        subject that denied."""
        if not self.shape.is_list:
            return batch.column("subject_id").filter(pa.array(mask))
        at = d.starts.copy()
        if d.blocked is not None:
            at[d.blocked] = d.blocked_at
        return batch.column("subject_ids").values.take(pa.array(at[mask]))


def excluded_batch(
    decider: BatchDecider, batch: Any, d: BatchAnswers, mask: Any, *, dictionary: bool
) -> Any:
    """The ``excluded`` rows (``mask``, numpy bool) of a batch: item_id, reason,
    blocking_subject, event_seq."""
    codes = d.code[mask]
    if dictionary:
        # The reason column as dictionary indices: Parquet stores it that way anyway, and the
        # file is written without the Arrow schema so that it reads back as plain strings.
        reason = pa.DictionaryArray.from_arrays(
            pa.array(codes.astype(np.int8)), pa.array(REASONS, pa.string())
        )
    else:
        reason = pc.take(pa.array(REASONS, pa.string()), pa.array(codes))
    seq = d.seq[mask]
    return pa.RecordBatch.from_arrays(
        [
            batch.column("item_id").filter(pa.array(mask)),
            reason,
            decider.blocking(batch, d, mask),
            pa.array(seq, pa.int64(), mask=seq == 0),
        ],
        names=EXCLUDED_SCHEMA.names,
    )


# -- counting -------------------------------------------------------------------------------------


class Tally:
    """Counts by reason, multiset digest sums and the subject index, batch by batch.

    The subject index counts, per (subject, category), the allowed items holding the
    subject's data and those whose decision the subject's answer took part in. Subjects are
    counted by position in the decision table (``position × categories + category``, one
    ``bincount`` at the end); a subject the store has never seen can only be a non-deciding
    participant of an item an owner-only rule let through, and gets a position after the
    table's.
    """

    def __init__(self, decider: BatchDecider) -> None:
        self.decider = decider
        self.by_code = np.zeros(len(REASONS), dtype=np.int64)
        self.sum_allowed = 0
        self.sum_excluded = 0
        self.ncat = max(len(decider.categories), 1)
        #: Keys of the allowed items' owners (each one item, decided by the owner).
        self.owner_keys: list[Any] = []
        #: Keys of the other subjects of allowed items, and those among them who decided.
        self.other_keys: list[Any] = []
        self.other_decided: list[Any] = []
        #: Subjects the store has never seen, by name: their positions after the table's.
        self.extras: dict[str, int] = {}

    def add(self, batch: Any, d: BatchAnswers, allowed: Any) -> None:
        self.by_code += np.bincount(d.code, minlength=len(REASONS))[: len(REASONS)]
        v = batch.column(ID_VALUE).to_numpy(zero_copy_only=False)
        # uint64 sums wrap modulo 2**64, which is what the digest wants.
        total = int(v.sum(dtype=np.uint64))
        kept = int(v[allowed].sum(dtype=np.uint64))
        self.sum_allowed = (self.sum_allowed + kept) & MASK64
        self.sum_excluded = (self.sum_excluded + total - kept) & MASK64
        # An allowed item's owner is always in the table (only a known subject allows).
        self.owner_keys.append(d.owner[allowed] * self.ncat + d.category[allowed])
        if d.lengths is not None:
            multi = allowed & (d.lengths > 1)
            if multi.any():
                self._add_others(batch, d, np.flatnonzero(multi))

    def _add_others(self, batch: Any, d: BatchAnswers, rows: Any) -> None:
        decider = self.decider
        parents, _, subjects, where = decider.others(batch, d, rows)
        unknown = np.flatnonzero(where == decider.unknown)
        if unknown.size:
            first = decider.unknown + 1
            for i, name in zip(unknown.tolist(), subjects.take(pa.array(unknown)).to_pylist(),
                               strict=True):  # fmt: skip
                where[i] = self.extras.setdefault(name, first + len(self.extras))
        ci = d.category[rows][parents].astype(np.int64)
        keys = where * self.ncat + ci
        self.other_keys.append(keys)
        self.other_decided.append(keys[decider.cat_parties_all[ci]])

    def counts(self) -> tuple[int, int, dict[str, int], dict[str, int]]:
        allowed: dict[str, int] = {}
        excluded: dict[str, int] = {}
        for code, n in enumerate(self.by_code.tolist()):
            if n:
                (allowed if ALLOW[code] else excluded)[REASONS[code]] = int(n)
        return sum(allowed.values()), sum(excluded.values()), allowed, excluded

    def digests(self, n_allowed: int, n_excluded: int) -> tuple[str, str, str]:
        """(input, output, excluded) ``multiset-md5-v1`` digests."""
        total = (self.sum_allowed + self.sum_excluded) & MASK64
        return (
            multiset_digest(n_allowed + n_excluded, total),
            multiset_digest(n_allowed, self.sum_allowed),
            multiset_digest(n_excluded, self.sum_excluded),
        )

    def index(self) -> Any:
        """The subject index as an Arrow table (subject, items, categories) in subject order.

        ``categories`` is the JSON text :func:`consentry.gate.measure.subject_index` builds
        from the files (``{"category":[items,decided],...}``, categories in order), byte for
        byte: ``gate verify`` compares the digests of the two."""
        decider = self.decider
        ncat = self.ncat
        size = (decider.unknown + 1 + len(self.extras)) * ncat

        def counted(parts: list[Any]) -> Any:
            keys = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
            return np.bincount(keys, minlength=size)

        owners = counted(self.owner_keys)
        items = owners + counted(self.other_keys)
        decided = owners + counted(self.other_decided)
        self.owner_keys, self.other_keys, self.other_decided = [], [], []
        nz = np.flatnonzero(items)
        subject, ci = nz // ncat, nz % ncat
        n, k = items[nz], decided[nz]
        prefixes = pa.array([f'"{c}":[' for c in decider.categories] or [""], pa.string())
        pieces = pc.binary_join_element_wise(
            prefixes.take(pa.array(ci)),
            pa.array(n).cast(pa.string()),
            ",",
            pa.array(k).cast(pa.string()),
            "]",
            "",
        )
        # nz is in key order: each subject's categories together, in category order.
        first = np.flatnonzero(np.r_[True, subject[1:] != subject[:-1]]) if nz.size else nz
        offsets = pa.array(np.r_[first, nz.size].astype(np.int32))
        joined = pc.binary_join(pa.ListArray.from_arrays(offsets, pieces), ",")
        names = decider.names()
        if self.extras:
            names = pa.concat_arrays([names, pa.array(["", *self.extras], pa.string())])
        table = pa.table(
            {
                "subject": names.take(pa.array(subject[first])),
                "items": pa.array(
                    np.add.reduceat(n, first) if nz.size else np.zeros(0, np.int64), pa.int64()
                ),
                "categories": pc.binary_join_element_wise("{", joined, "}", ""),
            }
        )
        # In subject order: the store inserts it into an index keyed by subject.
        return table.take(pc.sort_indices(table, sort_keys=[("subject", "ascending")]))


# -- reading -------------------------------------------------------------------------------------


class Prefetch:
    """Iterate a record-batch reader on a thread of its own, ``depth`` batches ahead.

    Fetching a batch from DuckDB runs part of its pipeline and the Arrow conversion in the
    fetching thread; on a thread of its own that overlaps the gate's per-batch work.
    """

    def __init__(self, reader: Any, depth: int = 2) -> None:
        self.reader = reader
        self._queue: queue.Queue[Any] = queue.Queue(depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="consentry-scan", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for batch in self.reader:
                if not self._offer(batch):
                    return
        except BaseException as exc:  # re-raised in the consuming thread
            self._offer(exc)
            return
        self._offer(None)

    def _offer(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Prefetch:
        return self

    def __next__(self) -> Any:
        item = self._queue.get()
        if item is None:
            raise StopIteration
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        """Stop the thread (a failing gate) and wait for it; then the reader may be closed."""
        self._stop.set()
        self._thread.join()


# -- writing ------------------------------------------------------------------------------------


class Sink:
    """One output file, written from a thread of its own.

    ``put`` queues a batch (waiting while ``QUEUE_DEPTH`` are queued); ``close`` waits for the
    rest and re-raises the writer's error, if any. Arrow's writers release the GIL, so the
    encoding overlaps the scan.
    """

    def __init__(self, open_writer: Callable[[Any], Any], schema: Any, name: str) -> None:
        self._open = open_writer
        self.schema = schema
        self.rows = 0
        self._queue: queue.Queue[Any] = queue.Queue(QUEUE_DEPTH)
        self._error: BaseException | None = None
        self._writer: Any = None
        self._thread = threading.Thread(target=self._run, name=f"consentry-{name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while True:
                batch = self._queue.get()
                if batch is None:
                    break
                if self._writer is None:
                    self._writer = self._open(batch)
                if batch.num_rows:
                    self._writer.write_batch(batch)
            if self._writer is None:
                self._writer = self._open(self.schema.empty_table())
            self._writer.close()
        except BaseException as exc:  # re-raised by put/close in the gate's thread
            self._error = exc
            while True:  # unblock a producer waiting on a full queue
                try:
                    if self._queue.get_nowait() is None:
                        break
                except queue.Empty:
                    break

    def put(self, batch: Any) -> None:
        while True:
            if self._error is not None:
                raise self._error
            try:
                self._queue.put(batch, timeout=0.5)
                self.rows += batch.num_rows
                return
            except queue.Full:
                continue

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def abort(self) -> None:
        """Stop without raising (the gate is failing anyway; the files are removed)."""
        if self._thread.is_alive():
            try:
                while True:
                    self._queue.get_nowait()
            except queue.Empty:
                pass
            self._queue.put(None)
        self._thread.join()
        writer = self._writer
        if writer is not None:
            with contextlib.suppress(Exception):  # the output is being discarded
                writer.close()


def parquet_opener(path: Path, *, store_schema: bool = True) -> Callable[[Any], Any]:
    """Open a Parquet writer when the first batch arrives (its values choose the encodings)."""
    import pyarrow.parquet as pq

    def open_writer(first: Any) -> Any:
        return pq.ParquetWriter(
            str(path),
            first.schema,
            compression="snappy",
            use_dictionary=dictionary_columns(first),
            write_statistics=True,
            store_schema=store_schema,
        )

    return open_writer


def ipc_opener(path: Path, *, stream: bool = False) -> Callable[[Any], Any]:
    """An Arrow IPC file writer (the ``arrow`` output format), or, with ``stream``, the spool
    that CSV and JSON Lines outputs are converted from at the end: LZ4-compressed, since it
    holds every allowed row until then."""

    def open_writer(first: Any) -> Any:
        sink = pa.OSFile(str(path), "wb")
        if stream:
            options = pa.ipc.IpcWriteOptions(compression="lz4")
            writer = pa.ipc.new_stream(sink, first.schema, options=options)
        else:
            writer = pa.ipc.new_file(sink, first.schema)
        return _ClosingBoth(writer, sink)

    return open_writer


class _ClosingBoth:
    def __init__(self, writer: Any, sink: Any) -> None:
        self.writer, self.sink = writer, sink

    def write_batch(self, batch: Any) -> None:
        self.writer.write_batch(batch)

    def close(self) -> None:
        try:
            self.writer.close()
        finally:
            self.sink.close()


def dictionary_columns(batch: Any) -> list[str]:
    """Parquet leaf columns worth a dictionary, judged on a sample of the first batch.

    A dictionary pays for repeated values (categories, labels, subjects of a small cohort)
    and costs for unique ones (item ids, URLs): the writer fills a dictionary page, gives
    up, and starts again in every row group. Leaves of a column whose sampled values are
    mostly distinct are written plain; nested types other than lists keep the default.
    """
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(batch.schema.empty_table(), buf)
    buf.seek(0)
    parquet_schema = pq.read_metadata(buf).schema
    paths = [parquet_schema.column(i).path for i in range(len(parquet_schema))]
    sample = batch.slice(0, DICTIONARY_SAMPLE)
    out: list[str] = []
    leaf = 0
    for i, f in enumerate(batch.schema):
        count = _leaves(f.type)
        if _repetitive(sample.column(i)):
            out.extend(paths[leaf : leaf + count])
        leaf += count
    return out


def _leaves(typ: Any) -> int:
    if pa.types.is_struct(typ):
        return sum(_leaves(typ.field(i).type) for i in range(typ.num_fields))
    if pa.types.is_map(typ):
        return _leaves(typ.key_type) + _leaves(typ.item_type)
    if pa.types.is_list(typ) or pa.types.is_large_list(typ) or pa.types.is_fixed_size_list(typ):
        return _leaves(typ.value_type)
    return 1


def _repetitive(column: Any) -> bool:
    values = column
    while pa.types.is_list(values.type) or pa.types.is_large_list(values.type):
        values = pc.list_flatten(values)
    typ = values.type
    if not (
        pa.types.is_string(typ)
        or pa.types.is_large_string(typ)
        or pa.types.is_binary(typ)
        or pa.types.is_integer(typ)
        or pa.types.is_floating(typ)
    ):
        return True  # the writer's default
    n = len(values) - values.null_count
    if n == 0:
        return True
    distinct = int(pc.count_distinct(values).as_py())
    return bool(distinct * 2 <= n)


def output_columns(schema: Any, names: Sequence[str]) -> list[int]:
    """Positions of a manifest's own columns in a stream batch's schema."""
    return [schema.get_field_index(n) for n in names]


# -- the pass -------------------------------------------------------------------------------------


class Pass:
    """One scan of the stream query: check and decide each batch, queue its allowed rows and
    exclusions to the two writers (:class:`Sink`), and count it (:class:`Tally`).

    Parquet and Arrow outputs are written as they come; CSV and JSON Lines are spooled as
    Arrow IPC streams in ``work`` and converted by DuckDB at the end
    (:meth:`convert_spools`; nested columns as JSON text, as ``write_manifest`` does).
    """

    def __init__(
        self,
        decider: BatchDecider,
        checks: Sequence[RowCheck],
        fmt: str,
        folder: Path,
        files: dict[str, str],
        work: Path,
    ) -> None:
        self.decider, self.checks, self.fmt = decider, checks, fmt
        self.spooled = fmt in ("csv", "jsonl")
        self.targets = {key: folder / name for key, name in files.items()}
        if self.spooled:
            work.mkdir(parents=True, exist_ok=True)
            self.paths = {key: work / f"{key}.arrows" for key in files}
        else:
            self.paths = dict(self.targets)

    def run(
        self, con: Any, query: str, names: list[str], total: int, progress: Callable[[float], None]
    ) -> Tally:
        """Run ``query`` (the stream query) and return the tally; ``names`` are the manifest's
        own columns (the allowed output's), ``total`` the rows expected (for ``progress``).
        Raises ``run.BadRowFound`` on a batch holding a row that fails a check."""
        from .run import BadRowFound

        tally = Tally(self.decider)
        done = 0
        sinks: list[Sink] = []
        reader = batches = None
        try:
            reader = con.sql(query).to_arrow_reader(BATCH_ROWS)
            keep = output_columns(reader.schema, names)
            sinks = self._sinks(pa.schema([reader.schema.field(i) for i in keep]))
            allowed_sink, excluded_sink = sinks
            batches = Prefetch(reader)
            dictionary = self.fmt == "parquet"
            for batch in batches:
                if has_bad_rows(batch, self.checks):
                    raise BadRowFound
                d = self.decider.decide(batch)
                allowed = d.allowed
                allowed_sink.put(batch.select(keep).filter(pa.array(allowed)))
                excluded_sink.put(
                    excluded_batch(self.decider, batch, d, ~allowed, dictionary=dictionary)
                )
                tally.add(batch, d, allowed)
                done += batch.num_rows
                if total:
                    progress(min(done / total, 1.0))
            for sink in sinks:
                sink.close()
            sinks = []
        finally:
            for sink in sinks:
                sink.abort()
            if batches is not None:
                batches.close()
            if reader is not None:
                reader.close()  # frees the connection (to name a bad row)
        return tally

    def _sinks(self, allowed_schema: Any) -> list[Sink]:
        allowed, excluded = self.paths["allowed"], self.paths["excluded"]
        if self.fmt == "parquet":
            open_a = parquet_opener(allowed)
            # Written without the Arrow schema: ``reason`` is dictionary-encoded in the
            # batches and reads back as plain strings.
            open_e = parquet_opener(excluded, store_schema=False)
        else:
            open_a = ipc_opener(allowed, stream=self.spooled)
            open_e = ipc_opener(excluded, stream=self.spooled)
        return [Sink(open_a, allowed_schema, "allowed"), Sink(open_e, EXCLUDED_SCHEMA, "excluded")]

    def convert_spools(
        self, con: Any, columns: Sequence[tuple[str, str]], excluded: Sequence[tuple[str, str]]
    ) -> None:
        """Write the spooled outputs as CSV or JSON Lines (``columns``: the manifest's, with
        their DuckDB types; ``excluded``: the exclusions')."""
        from . import manifest as mf

        for key, cols in (("allowed", columns), ("excluded", excluded)):
            mf.write_ipc_stream(con, self.paths[key], self.targets[key], self.fmt, cols)
            self.paths[key].unlink()
