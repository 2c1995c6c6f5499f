"""The gate on one machine: DuckDB streams the manifest through the decision table.

:class:`DuckEngine` is the :class:`~consentry.gate.run.GateEngine` a
:class:`~consentry.gate.run.GateRun` drives (the run owns the options, snapshot, checks,
decision table, lineage record and output folder). Over a manifest of any size (the manifest
is never loaded whole):

1. ``open``: the manifest as a :class:`~consentry.gate.manifest.Source` DuckDB queries (CSV
   and JSON Lines converted to Parquet first), its columns checked;
2. ``categories``: one ``SELECT DISTINCT`` over the category column;
3. ``decide_and_write``: the small tables the stream query joins (categories, the decision
   table's subjects, opted-out URLs), then one scan (:mod:`consentry.gate.stream`): DuckDB
   finds each row's category, its owner's position in the decision table and its item-id
   digest value; numpy turns that into reason codes in :data:`~consentry.item_order.ITEM_ORDER`
   (:class:`~consentry.gate.stream.BatchDecider`); the allowed rows, every column untouched,
   and the exclusions (``item_id, reason, blocking_subject, event_seq``) go to two writers on
   threads of their own; counts, digest sums and the subject index are added up from the same
   batches (:class:`~consentry.gate.stream.Tally`);
4. ``measure``: the counts and index from the tally; the multiset digests from its sums, the
   sorted ones from the output files (they sort every id);
5. ``first_bad_row``: the checks (:mod:`consentry.gate.checks`) as one SQL ``CASE``, the
   first failing row in file and row order.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import ConsentryError, InvalidInput
from . import manifest as mf
from .checks import Located, Predicate, RowCheck, row_checks
from .decisions import (
    CODES,
    REASONS,
    DecisionTable,
    LedgerSnapshot,
    ManifestSubjects,
    build_table,
    take_snapshot,
)
from .manifest import FILE_COL, ROW_COL, Shape, Source, ident, sql_str
from .measure import V_SQL, Measured, index_digest, output_digests
from .options import GateOptions
from .result import MULTISET
from .run import (
    BadRowFound,
    GateRun,
    Job,
    Opened,
    bad_row,
    check_accounts,
    check_categories,
    require_source_url,
)
from .stream import (
    ACCOUNT_POS,
    CATEGORY_POS,
    ID_VALUE,
    OPTED_OUT,
    OWNER_POS,
    PROTECTED,
    SUBJECT_HASHES,
)

if TYPE_CHECKING:
    from ..store import Store
    from .stream import BatchDecider, Tally

DEFAULT_MEMORY_LIMIT = os.environ.get("CONSENTRY_GATE_MEMORY_LIMIT", "3GB")
STREAM_BUFFER = "400MB"

#: (name, DuckDB type) of the ``excluded`` output's columns.
EXCLUDED_COLUMNS = [
    ("item_id", "VARCHAR"), ("reason", "VARCHAR"), ("blocking_subject", "VARCHAR"),
    ("event_seq", "BIGINT"),
]  # fmt: skip


def gate(store: Store, manifest: Any, **options: Any) -> Any:
    """Run the gate with DuckDB; see :meth:`consentry.Store.gate`."""
    return GateRun(store, manifest, "duckdb", **options).run()


def connect(threads: int | None, memory_limit: str | None, spill: Path | None) -> Any:
    import duckdb

    con = duckdb.connect(":memory:")
    con.execute(f"SET threads={int(threads or os.cpu_count() or 1)}")
    con.execute(f"SET memory_limit={sql_str(memory_limit or DEFAULT_MEMORY_LIMIT)}")
    if spill is not None:
        con.execute(f"SET temp_directory={sql_str(str(spill))}")
    con.execute("SET preserve_insertion_order=false")
    # Let the scan run ahead of the gate's per-batch work by a few batches (the default,
    # 10 MiB, is a tenth of one batch: the scan would wait for every batch to be taken).
    con.execute(f"SET streaming_buffer_size={sql_str(STREAM_BUFFER)}")
    con.execute("SET enable_progress_bar=true")
    con.execute("SET enable_progress_bar_print=false")
    return con


def _is_duckdb_error(exc: BaseException) -> bool:
    return type(exc).__module__.split(".")[0] in ("duckdb", "_duckdb")


# -- the engine -------------------------------------------------------------------------------


class DuckEngine:
    """The DuckDB engine (see the module docstring)."""

    NAME: ClassVar[str] = "duckdb"
    FORMATS: ClassVar[tuple[str, ...]] = mf.FORMATS

    def __init__(
        self,
        *,
        threads: int | None = None,
        memory_limit: str | None = None,
        input_format: str | None = None,
    ) -> None:
        self.threads, self.memory_limit, self.input_format = threads, memory_limit, input_format
        self.con: Any = None
        self.work: Path | None = None
        self.source: Source | None = None
        self.shape: Shape | None = None

    @classmethod
    def from_options(cls, o: GateOptions) -> DuckEngine:
        return cls(threads=o.threads, memory_limit=o.memory_limit, input_format=o.input_format)

    def open(self, manifest: Any, work: Path) -> Opened:
        work.mkdir(parents=True, exist_ok=True)
        self.work = work
        self.con = connect(self.threads, self.memory_limit, work / "spill")
        source = mf.open_source(self.con, manifest, work / "input", input_format=self.input_format)
        self.source, self.shape = source, mf.check_shape(source)
        return Opened(
            self.shape,
            source.description,
            {"manifest": source.description, "format": source.format, "files": source.files},
        )

    def categories(self) -> list[str | None]:
        rel = self._source.relation()
        return [r[0] for r in self.con.execute(f"SELECT DISTINCT category FROM {rel}").fetchall()]

    def accounts(self) -> list[str | None]:
        rel = self._source.relation()
        return [r[0] for r in self.con.execute(f"SELECT DISTINCT account FROM {rel}").fetchall()]

    def table_subjects(self, snapshot: LedgerSnapshot) -> ManifestSubjects | None:
        """The manifest's distinct (category, subject) pairs, as Arrow: the decision table
        decides those only (see :class:`ManifestSubjects`). None (every subject the store
        knows, each group) when the manifest has at least a quarter as many rows as the
        store knows subjects: it then names most of them, and collecting the pairs (a
        distinct over every row) would cost more than deciding the few it does not name."""
        state = snapshot.state
        known = max(len(state.consents), len(state.memberships), len(state.objections))
        rows = self._source.rows_estimate
        if rows is None or rows * 4 >= known:
            return None
        rel = self._source.relation()
        if self._shape.is_list:
            query = (
                "SELECT DISTINCT category, s AS subject FROM "
                f"(SELECT category, unnest(subject_ids) AS s FROM {rel}) WHERE s IS NOT NULL"
            )
        else:
            query = (
                f"SELECT DISTINCT category, subject_id AS subject FROM {rel} "
                "WHERE subject_id IS NOT NULL"
            )
        return ManifestSubjects(self.con.sql(query).to_arrow_table())

    def first_bad_row(self, checks: Sequence[RowCheck]) -> tuple[RowCheck, Located] | None:
        source = self._source
        cases = " ".join(f"WHEN {check_sql(c)} THEN {i}" for i, c in enumerate(checks))
        values = " ".join(
            f"WHEN {check_sql(c)} THEN {value_sql(c)}"
            for c in checks
            if c.predicate in (Predicate.ITEM_NOT_IN, Predicate.NOT_IN)
        )
        value = f"CASE {values} END" if values else "NULL::VARCHAR"
        rows = self.con.execute(
            f"""
            SELECT * FROM (
                SELECT m.{FILE_COL} AS f, m.{ROW_COL} AS r, m.item_id,
                       CASE {cases} END AS k, {value} AS v
                FROM {source.relation()} m
            ) WHERE k IS NOT NULL ORDER BY f, r LIMIT 1
            """
        ).fetchall()
        if not rows:
            return None
        f, r, item_id, k, bad_value = rows[0]
        details = {"file": source.description, "row": int(r) + 1}
        return checks[int(k)], Located(source.where(int(f), int(r)), item_id, bad_value, details)

    def decide_and_write(self, job: Job) -> Tally:
        """Scan the manifest once: decide each batch, queue its allowed rows and exclusions
        to the two writers, and count it."""
        from .stream import Pass

        query = StreamQuery(
            self._source, self._shape, job.table, job.opt_outs is not None,
            multiset=job.method == MULTISET,
        )  # fmt: skip
        decider = prepare(self.con, query, job.table, job.opt_outs)
        work = job.folder / ".work"
        one = Pass(decider, job.checks, job.format, job.folder, job.files, work)
        try:
            tally = one.run(self.con, query.stream(positions=False), self._source.column_names(),
                            self._source.rows_estimate or 0, job.progress)  # fmt: skip
        except (BadRowFound, ConsentryError):
            raise
        except Exception as exc:
            if not _is_duckdb_error(exc):
                raise
            raise InvalidInput(
                f"cannot gate manifest {self._source.description}: {mf._short(exc)}",
                hint="check that the manifest's files are complete and of one schema",
                field="manifest",
            ) from None
        if job.format in ("csv", "jsonl"):
            one.convert_spools(self.con, self._source.columns, EXCLUDED_COLUMNS)
        return tally

    def measure(self, job: Job, tally: Tally) -> Measured:
        n_allowed, n_excluded, allowed_by_reason, excluded_by_reason = tally.counts()
        if job.method == MULTISET:
            digests = tally.digests(n_allowed, n_excluded)
        else:
            # The sorted digest sorts every id: it reads the outputs back.
            files = output_digests(
                self.con, job.folder, job.files, job.format, self._shape, job.method
            )
            digests = (files.input_sha256, files.output_sha256, files.excluded_sha256)
        measured = Measured(n_allowed, n_excluded, excluded_by_reason, *digests)
        measured.allowed_by_reason = allowed_by_reason
        measured.index = tally.index()
        self.con.register("__index_arrow", measured.index)
        measured.subjects, measured.subjects_sha256 = index_digest(self.con, "__index_arrow")
        self.con.unregister("__index_arrow")
        return measured

    def close(self) -> None:
        if self.con is not None:
            self.con.close()
            self.con = None
        if self.work is not None:
            shutil.rmtree(self.work, ignore_errors=True)

    @property
    def _source(self) -> Source:
        assert self.source is not None, "open() first"
        return self.source

    @property
    def _shape(self) -> Shape:
        assert self.shape is not None, "open() first"
        return self.shape


# -- SQL --------------------------------------------------------------------------------------


def check_sql(check: RowCheck, alias: str = "m") -> str:
    """A check (:mod:`consentry.gate.checks`) as a SQL condition on the manifest's row."""
    col = f"{alias}.{ident(check.column)}"
    listed = check.column in mf.LIST_COLUMNS
    p = check.predicate
    if p is Predicate.NULL:
        return f"{col} IS NULL"
    if p is Predicate.EMPTY:
        return f"len({col}) = 0" if listed else f"{col} = ''"
    if p is Predicate.NULL_ITEM:
        return f"({col} IS NOT NULL AND list_count({col}) < len({col}))"
    if p is Predicate.EMPTY_ITEM:
        return f"list_contains({col}, '')"
    values = _sql_list(check.values)
    if p is Predicate.ITEM_NOT_IN:
        return f"({col} IS NOT NULL AND NOT list_has_all({values}, {col}))"
    return f"({col} IS NOT NULL AND NOT list_contains({values}, {col}))"


def value_sql(check: RowCheck, alias: str = "m") -> str:
    """The value a value-naming check reports: the first one outside its allowed values."""
    col = f"{alias}.{ident(check.column)}"
    if check.predicate is Predicate.ITEM_NOT_IN:
        return f"list_filter({col}, lambda x: NOT list_contains({_sql_list(check.values)}, x))[1]"
    return f"{col}::VARCHAR"


def _sql_list(values: Iterable[str]) -> str:
    return "[" + ", ".join(sql_str(x) for x in sorted(values)) + "]::VARCHAR[]"


class StreamQuery:
    """The stream query: every row of a source with the columns
    :mod:`consentry.gate.stream` decides it by (see :meth:`stream`)."""

    def __init__(
        self,
        source: Source,
        shape: Shape,
        table: DecisionTable,
        opt_outs: bool,
        *,
        multiset: bool = True,
    ) -> None:
        self.source = source
        self.shape = shape
        self.opt_outs = opt_outs
        #: Whether the pass adds up the multiset digest; the sorted one is computed from the
        #: outputs afterwards, and MD5 of every id is a large share of the scan.
        self.multiset = multiset
        self.protected = {p.protected for p in table.categories.values()}
        self.unknown = len(table.subjects)
        #: A protected label can exclude an item (the manifest has labels and the policy
        #: protects some): the query then computes the protected-label column.
        self.labels = shape.labels and any(self.protected)

    def stream(self, *, positions: bool) -> str:
        """Every row: the manifest's columns, then the category's position (null for one the
        decision table lacks), the owner's position in the decision table (the sentinel
        position when unknown), ``v(item_id)`` of the multiset digest and, where they apply,
        the hashes of a multi-subject item's subjects, whether a label is protected and
        whether the source opted out; with ``positions``, the file and row too (names in
        :mod:`consentry.gate.stream`). Rows are not checked here: the pass checks each batch."""
        rel = self.source.relation()
        cols = [f"m.{ident(n)}" for n in self.source.column_names()]
        if positions:
            cols += [f"m.{FILE_COL} AS {FILE_COL}", f"m.{ROW_COL} AS {ROW_COL}"]
        cols += [
            # Null for a category the table lacks; the batch is then checked before anything
            # is decided or written.
            f"c.ci AS {CATEGORY_POS}",
            # Unknown owner: the decision table's sentinel position (BatchDecider.unknown).
            f"coalesce(u.i, {self.unknown})::UINTEGER AS {OWNER_POS}",
            f"{V_SQL.format('m.item_id') if self.multiset else '0::UBIGINT'} AS {ID_VALUE}",
        ]
        joins = ""
        if self.shape.account:
            # 0: no account given; null: one the decision table lacks (a bad row, checked
            # per batch like an unknown category).
            cols.append(f"CASE WHEN m.account IS NULL THEN 0 ELSE a.a END AS {ACCOUNT_POS}")
            joins = "LEFT JOIN __accounts a ON a.account = m.account"
        if self.shape.is_list:
            # The engine's hash of every subject of a multi-subject item, to look the others
            # up (BatchDecider.positions); single-subject rows, the vast majority, pay nothing.
            cols.append(
                "CASE WHEN len(m.subject_ids) > 1 "
                f"THEN list_transform(m.subject_ids, lambda s: hash(s)) END AS {SUBJECT_HASHES}"
            )
        if self.labels:
            cols.append(f"{self._protected_sql()} AS {PROTECTED}")
        if self.opt_outs:
            cols.append(
                f"coalesce(m.source_url IN (SELECT url FROM __optout), false) AS {OPTED_OUT}"
            )
        return f"""
            SELECT {", ".join(cols)}
            FROM {rel} m
            LEFT JOIN __categories c ON c.category = m.category
            LEFT JOIN __subjects u ON u.subject = {self.shape.owner("m")}
            {joins}
        """

    def _protected_sql(self) -> str:
        # One protected set for every category (it depends on the policy and the purpose
        # only): a constant list is far cheaper per row than a joined column.
        if len(self.protected) == 1:
            (only,) = self.protected
            lst = "[" + ", ".join(sql_str(x) for x in only) + "]"
            return f"(len(m.labels) > 0 AND coalesce(list_has_any(m.labels, {lst}), false))"
        return "coalesce(list_has_any(m.labels, c.protected), false)"


def prepare(
    con: Any, query: StreamQuery, table: DecisionTable, opt_outs: set[str] | None
) -> BatchDecider:
    """The batch decider, and the small tables the stream query joins (``__categories``,
    ``__subjects`` the decision table's, ``__optout`` opted-out URLs)."""
    import pyarrow as pa

    from .stream import BatchDecider

    decider = BatchDecider(table, query.shape, opt_outs=opt_outs is not None, labels=query.labels)
    categories = decider.category_table()
    plans = [table.categories[c] for c in decider.categories]
    categories = categories.append_column(
        "protected", pa.array([list(p.protected) for p in plans], pa.list_(pa.string()))
    )
    tables = {"__categories": categories, "__subjects": decider.subject_table()}
    if query.shape.account:
        tables["__accounts"] = table.account_table()
    if opt_outs is not None:
        tables["__optout"] = pa.table({"url": pa.array(sorted(opt_outs), pa.string())})
    for name, arrow in tables.items():
        con.register(f"{name}_arrow", arrow)
        con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM {name}_arrow").fetchall()
        con.unregister(f"{name}_arrow")
    if query.shape.is_list:
        hashes = con.sql("SELECT hash(subject) AS h FROM __subjects ORDER BY i").to_arrow_table()
        decider.set_hashes(hashes.column("h").to_numpy())
    return decider


# -- a dry run ----------------------------------------------------------------------------------


def decide_rows(
    store: Store,
    manifest: Any,
    *,
    purpose: str,
    as_of: Any = None,
    signals: Iterable[str] | None = None,
    input_format: str | None = None,
    threads: int | None = None,
) -> Any:
    """Every item's answer as a PyArrow table, in manifest order, writing nothing:
    ``file_index, row_index, item_id, allowed, reason, blocking_subject, event_seq``.

    The same query and batch decider the gate runs; use it for a dry run or to explain a
    gate's choices.
    """
    import tempfile

    snapshot = take_snapshot(store, purpose, as_of)
    engine = DuckEngine(threads=threads, input_format=input_format)
    with tempfile.TemporaryDirectory(prefix="consentry-rows-") as tmp:
        try:
            opened = engine.open(manifest, Path(tmp) / "work")
            opt = set(signals) if signals is not None else None
            require_source_url(opt, opened)
            categories = check_categories(engine, opened, snapshot)
            accounts = check_accounts(engine, opened, snapshot)
            table = build_table(
                snapshot,
                categories,
                engine.table_subjects(snapshot),
                lock=store.lock if snapshot.live else None,
                store=store,
                accounts=accounts,
            )
            checks = row_checks(opened.shape, snapshot.known_labels(), categories, accounts)
            try:
                return _answers(engine, table, opt, checks)
            except BadRowFound:
                raise bad_row(engine, opened, checks) from None
        finally:
            engine.close()


def _answers(
    engine: DuckEngine, table: DecisionTable, opt: set[str] | None, checks: Sequence[RowCheck]
) -> Any:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from . import stream

    query = StreamQuery(engine._source, engine._shape, table, opt is not None)
    decider = prepare(engine.con, query, table, opt)
    reasons = pa.array(REASONS, pa.string())
    parts = []
    reader = engine.con.sql(query.stream(positions=True)).to_arrow_reader(1 << 20)
    try:
        for batch in reader:
            if stream.has_bad_rows(batch, checks):
                raise BadRowFound
            d = decider.decide(batch)
            allowed = d.allowed
            blocking = decider.blocking(batch, d, np.ones(batch.num_rows, dtype=bool))
            blocking = pc.if_else(pa.array(allowed), pa.scalar(None, pa.string()), blocking)
            parts.append(
                pa.table(
                    {
                        "file_index": batch.column(FILE_COL).cast(pa.int64()),
                        "row_index": batch.column(ROW_COL).cast(pa.int64()),
                        "item_id": batch.column("item_id"),
                        "allowed": pa.array(allowed),
                        "reason": reasons.take(pa.array(d.code)),
                        "blocking_subject": blocking,
                        "event_seq": pa.array(d.seq, pa.int64(), mask=d.seq == 0),
                    }
                )
            )
    finally:
        reader.close()  # frees the connection for first_bad_row()
    if not parts:
        return _rows_schema().empty_table()
    rows = pa.concat_tables(parts)
    return rows.sort_by([("file_index", "ascending"), ("row_index", "ascending")])


def _rows_schema() -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            ("file_index", pa.int64()), ("row_index", pa.int64()), ("item_id", pa.string()),
            ("allowed", pa.bool_()), ("reason", pa.string()), ("blocking_subject", pa.string()),
            ("event_seq", pa.int64()),
        ]
    )  # fmt: skip


__all__ = ["CODES", "DuckEngine", "decide_rows", "gate"]
