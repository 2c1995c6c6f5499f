"""The gate on one machine: DuckDB streams the manifest through the decision table.

One run, over a manifest of any size (the manifest is never loaded whole):

1. read the distinct categories (validating them) and pin the ledger state and time;
2. build the per-(category group, subject) decision table with the batch decision kernel
   (:mod:`consentry.gate.decisions`) and hand DuckDB the small tables it joins;
3. one scan (:mod:`consentry.gate.stream`): DuckDB validates each row and finds its category,
   its owner's answer and its item-id digest value; numpy turns that into reason codes (asking
   the other subjects of a multi-subject item where the rule needs every party); the allowed
   rows, every column untouched, and the exclusions (``item_id, reason, blocking_subject,
   event_seq``) go to two writers on threads of their own, in a temporary directory; counts,
   digests and the subject index are added up from the same batches;
4. write ``report.json``, and in one database transaction record the lineage and rename the
   directory into place. Any failure removes the temporary directory: nothing partial is left.

Per item, in this order: ``source_opt_out`` (its ``source_url`` opted out), a protected
label (``protected_label``), a subject-independent answer (``no_basis``, ``prohibited``),
then the subjects in list order (every subject where the rule needs all parties, else the
first): a subject the store has never seen answers ``unknown_subject``, any other subject what
``Plan.decide`` answers; the first denying subject blocks the item. An allowed item's reason
is its first subject's.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConsentryError, InvalidInput, UnknownName, unknown
from ..ids import new_id
from ..times import format_time
from . import manifest as mf
from .decisions import (
    CODES,
    REASONS,
    DecisionTable,
    Snapshot,
    build_table,
    take_snapshot,
)
from .manifest import FILE_COL, ROW_COL, Shape, Source, ident, sql_str
from .measure import V_SQL, Measured, index_digest, measure
from .result import (
    MULTISET,
    RECORD_VERSION,
    REPORT_NAME,
    GateResult,
    LineageRecord,
    digest_method,
)

if TYPE_CHECKING:
    from ..store import Store
    from .stream import BatchDecider, Tally

Progress = Callable[[str, float], None]


class BadRow(Exception):
    """A batch holds a row that :func:`diagnose` reports (found by ``stream.has_bad_rows``)."""


DEFAULT_MEMORY_LIMIT = os.environ.get("CONSENTRY_GATE_MEMORY_LIMIT", "3GB")
STREAM_BUFFER = "400MB"

# Overall progress: the share of the run each stage takes.
STAGES = {"read": (0.0, 0.05), "decide": (0.05, 0.15), "gate": (0.15, 0.9),
          "lineage": (0.9, 1.0)}  # fmt: skip


@dataclass
class Options:
    purpose: str
    out: Path
    as_of: Any = None
    dataset_name: str | None = None
    format: str = "parquet"
    overwrite: bool = False
    signals: Any = None
    #: ``sorted``: SHA-256 of the sorted ids (exact, a commitment); ``multiset``: faster
    #: checksum (see consentry.gate.result).
    digest: str = "sorted"
    input_format: str | None = None
    threads: int | None = None
    memory_limit: str | None = None
    progress: Progress | None = None
    idempotency_key: str | None = None


def gate(store: Store, manifest: Any, **kwargs: Any) -> GateResult:
    """Run the gate with DuckDB; see :meth:`consentry.Store.gate`."""
    opts = Options(**kwargs)
    return _Run(store, manifest, opts).run()


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


class _Run:
    def __init__(self, store: Store, manifest: Any, opts: Options) -> None:
        self.store = store
        self.manifest = manifest
        self.o = opts
        self.fmt = mf.output_format(opts.format)
        self.method = digest_method(opts.digest)
        self.out = Path(opts.out)
        self.dataset_id = new_id()
        self.tmp = self.out.parent / f".{self.out.name}.tmp-{self.dataset_id}"
        self.started = time.perf_counter()
        self._last = self.started
        self._last_cpu = time.process_time()
        self.timings: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.created_dirs: list[Path] = []

    # -- driver -------------------------------------------------------------------------------

    def run(self) -> GateResult:
        from .. import lineage

        o = self.o
        if o.idempotency_key is not None:
            found = lineage.dataset_by_key(self.store, o.idempotency_key)
            if found is not None:
                return GateResult.from_record(found.record, None, replayed=True)
        self._check_out()
        self._progress("read", 0.0)
        snapshot = take_snapshot(self.store, o.purpose, o.as_of)
        self._lap("snapshot")
        opt_outs, signals_info = self._signals()
        self._make_parents()
        self.tmp.mkdir()
        try:
            con = connect(o.threads, o.memory_limit, self.tmp / ".spill")
            try:
                record, measured = self._gate(con, snapshot, opt_outs, signals_info)
            finally:
                con.close()
            shutil.rmtree(self.tmp / ".spill", ignore_errors=True)
            shutil.rmtree(self.tmp / ".work", ignore_errors=True)
            self._write_report(record)
            self._commit(record, measured)
            self._lap("commit")
        except BaseException:
            shutil.rmtree(self.tmp, ignore_errors=True)
            for d in reversed(self.created_dirs):
                with contextlib.suppress(OSError):
                    d.rmdir()
            raise
        self._progress("lineage", 1.0)
        result = GateResult.from_record(record, self.out)
        return GateResult(
            **{
                **result.__dict__,
                "seconds": time.perf_counter() - self.started,
                "extra": {"timings": self.timings, "cpu": self.cpu},
            }
        )

    def _check_out(self) -> None:
        out = self.out
        if out.exists() and not out.is_dir():
            raise InvalidInput(
                f"output {out} exists and is not a directory", hint="choose another --out",
                field="out",
            )  # fmt: skip
        if out.exists() and not self.o.overwrite:
            raise InvalidInput(
                f"output directory {out} already exists",
                hint="pass --overwrite (overwrite=True) to replace it, or choose another --out",
                field="out",
            )

    def _make_parents(self) -> None:
        missing = []
        parent = self.out.parent
        while not parent.exists():
            missing.append(parent)
            parent = parent.parent
        for d in reversed(missing):
            d.mkdir()
            self.created_dirs.append(d)

    def _signals(self) -> tuple[set[str] | None, dict[str, Any] | None]:
        signals = self.o.signals
        if signals is None:
            return None, None
        if isinstance(signals, (str, os.PathLike)):
            try:
                from ..signals import load_opt_outs
            except ImportError:  # pragma: no cover - the signals package ships with consentry
                raise InvalidInput(
                    "do-not-train signals are not available in this installation",
                    field="signals",
                ) from None
            path = Path(signals)
            if not path.exists():
                raise InvalidInput(
                    f"signals file {path} does not exist",
                    hint="write one with `consentry signals check ... --out FILE`",
                    field="signals",
                )
            urls = set(load_opt_outs(path))
            return urls, {"file": str(path), "opted_out_urls": len(urls)}
        urls = {str(u) for u in signals}
        return urls, {"file": None, "opted_out_urls": len(urls)}

    # -- the pass -----------------------------------------------------------------------------

    def _gate(
        self,
        con: Any,
        snapshot: Snapshot,
        opt_outs: set[str] | None,
        signals_info: dict[str, Any] | None,
    ) -> tuple[LineageRecord, Measured]:
        source = mf.open_source(
            con, self.manifest, self.tmp / ".work", input_format=self.o.input_format
        )
        shape = mf.check_shape(source)
        if opt_outs is not None and not shape.source_url:
            raise InvalidInput(
                f"manifest {source.description} has no 'source_url' column to check signals on",
                hint="add source_url, or leave out --signals",
                field="source_url",
            )
        categories = check_categories(con, source, snapshot)
        self._lap("read")
        self._progress("decide", 0.0)
        subjects = self._subjects_if_few(con, source, shape, snapshot)
        table = build_table(
            snapshot,
            categories,
            subjects,
            lock=self.store.lock if snapshot.live else None,
            store=self.store,
            allowed_seqs=False,  # the outputs name the event behind exclusions only
        )
        sql = ItemSql(
            source, shape, table, snapshot, opt_outs is not None, multiset=self.method == MULTISET
        )
        decider = prepare(con, sql, table, opt_outs)
        self._lap("decision_table")
        self._progress("decide", 1.0)

        ext = mf.OUTPUT_EXTENSION[self.fmt]
        files = {"allowed": f"allowed{ext}", "excluded": f"excluded{ext}"}
        tally = self._pass(con, source, shape, snapshot, sql, decider, files)
        self._lap("gate")

        self._progress("lineage", 0.0)
        n_allowed, n_excluded, allowed_by_reason, excluded_by_reason = tally.counts()
        if self.method == MULTISET:
            inp, out, excl = tally.digests(n_allowed, n_excluded)
        else:
            # The sorted digest sorts every id: it reads the outputs back (small datasets).
            sorted_ = measure(
                con,
                mf.open_source(con, self.tmp / files["allowed"], self.tmp / ".work" / "a",
                               input_format=self.fmt),
                mf.open_source(con, self.tmp / files["excluded"], self.tmp / ".work" / "e",
                               input_format=self.fmt),
                shape, [], self.method, with_index=False,
            )  # fmt: skip
            inp, out, excl = sorted_.input_sha256, sorted_.output_sha256, sorted_.excluded_sha256
        measured = Measured(n_allowed, n_excluded, excluded_by_reason, inp, out, excl)
        measured.index = tally.index()
        con.register("__index_arrow", measured.index)
        measured.subjects, measured.subjects_sha256 = index_digest(con, "__index_arrow")
        con.unregister("__index_arrow")
        record = self._record(
            snapshot, source, table, measured, allowed_by_reason, files, signals_info
        )
        self._lap("measure")
        return record, measured

    def _pass(
        self,
        con: Any,
        source: Source,
        shape: Shape,
        snapshot: Snapshot,
        sql: ItemSql,
        decider: BatchDecider,
        files: dict[str, str],
    ) -> Tally:
        """Scan the manifest once: decide each batch, queue its allowed rows and exclusions
        to the two writers, and count it."""
        import pyarrow as pa

        from . import stream

        fmt = self.fmt
        work = self.tmp / ".work"
        work.mkdir(exist_ok=True)
        # CSV and JSON Lines are spooled as Arrow IPC and converted by DuckDB at the end
        # (nested columns as JSON text, as write_manifest does).
        spooled = fmt in ("csv", "jsonl")
        allowed_path = (work / "allowed.arrows") if spooled else self.tmp / files["allowed"]
        excluded_path = (work / "excluded.arrows") if spooled else self.tmp / files["excluded"]
        names = source.column_names()
        tally = stream.Tally(decider)
        total = source.rows_estimate or 0
        done = 0
        sinks: list[Any] = []
        reader = batches = None
        try:
            try:
                reader = con.sql(sql.stream(positions=False)).to_arrow_reader(stream.BATCH_ROWS)
                keep = stream.output_columns(reader.schema, names)
                allowed_schema = pa_schema_select(reader.schema, keep)
                if fmt == "parquet":
                    open_a = stream.parquet_opener(allowed_path)
                    # Written without the Arrow schema: ``reason`` is dictionary-encoded in
                    # the batches and reads back as plain strings.
                    open_e = stream.parquet_opener(excluded_path, store_schema=False)
                else:
                    open_a = stream.ipc_opener(allowed_path, stream=spooled)
                    open_e = stream.ipc_opener(excluded_path, stream=spooled)
                sinks = [
                    stream.Sink(open_a, allowed_schema, "allowed"),
                    stream.Sink(open_e, stream.EXCLUDED_SCHEMA, "excluded"),
                ]
                allowed_sink, excluded_sink = sinks
                batches = stream.Prefetch(reader)
                for batch in batches:
                    if stream.has_bad_rows(batch, shape, sql.known_labels):
                        raise BadRow
                    d = decider.decide(batch)
                    allowed = d.allowed
                    allowed_sink.put(batch.select(keep).filter(pa.array(allowed)))
                    excluded_sink.put(
                        stream.excluded_batch(
                            decider, batch, d, ~allowed, dictionary=fmt == "parquet"
                        )
                    )
                    tally.add(batch, d, allowed)
                    done += batch.num_rows
                    if total:
                        self._progress("gate", min(done / total, 1.0))
            except Exception as exc:
                if batches is not None:
                    batches.close()
                if reader is not None:
                    reader.close()  # frees the connection for diagnose()
                    reader = None
                translated = self._translate(exc, con, source, shape, snapshot)
                if translated is exc:
                    raise
                raise translated from None
            for sink in sinks:
                sink.close()
            sinks = []
        finally:
            for sink in sinks:
                sink.abort()
            if batches is not None:
                batches.close()
            if reader is not None:
                reader.close()
        if spooled:
            for key, spool in (("allowed", allowed_path), ("excluded", excluded_path)):
                columns = source.columns if key == "allowed" else EXCLUDED_COLUMNS
                mf.write_ipc_stream(con, spool, self.tmp / files[key], fmt, columns)
            shutil.rmtree(work, ignore_errors=True)
        return tally

    def _translate(
        self, exc: Exception, con: Any, source: Source, shape: Shape, snapshot: Snapshot
    ) -> Exception:
        """A bad row becomes an error that names it; anything else DuckDB raised, one that
        names the manifest."""
        if isinstance(exc, BadRow):
            return diagnose(con, source, shape, snapshot)
        if isinstance(exc, ConsentryError):
            return exc
        if not _is_duckdb_error(exc):
            return exc
        return InvalidInput(
            f"cannot gate manifest {source.description}: {mf._short(exc)}",
            hint="check that the manifest's files are complete and of one schema",
            field="manifest",
        )

    def _lap(self, name: str) -> None:
        now, cpu = time.perf_counter(), time.process_time()
        self.timings[name] = round(now - self._last, 3)
        # Process CPU seconds (every thread): on a shared machine, wall time says as much
        # about the neighbours as about the stage.
        self.cpu[name] = round(cpu - self._last_cpu, 3)
        self._last, self._last_cpu = now, cpu

    def _subjects_if_few(
        self, con: Any, source: Source, shape: Shape, snapshot: Snapshot
    ) -> list[str] | None:
        """The manifest's subjects when it names far fewer than the store knows (then the
        decision table only needs those)."""
        state = snapshot.state
        known = max(len(state.consents), len(state.memberships), len(state.objections))
        rows = source.rows_estimate
        if rows is None or known < 100_000 or rows * 4 >= known:
            return None
        rel = source.relation()
        if shape.is_list:
            query = f"SELECT DISTINCT s FROM (SELECT unnest(subject_ids) AS s FROM {rel})"
        else:
            query = f"SELECT DISTINCT subject_id FROM {rel}"
        return [r[0] for r in con.execute(query).fetchall() if r[0] is not None]

    def _progress(self, stage: str, fraction: float) -> None:
        if self.o.progress is not None:
            lo, hi = STAGES[stage]
            self.o.progress(stage, lo + (hi - lo) * fraction)

    # -- recording ----------------------------------------------------------------------------

    def _record(
        self,
        snapshot: Snapshot,
        source: Source,
        table: DecisionTable,
        m: Measured,
        allowed_by_reason: dict[str, int],
        files: dict[str, str],
        signals_info: dict[str, Any] | None,
    ) -> LineageRecord:
        name = self.o.dataset_name or self.out.name
        return LineageRecord.make(
            {
                "version": RECORD_VERSION,
                "dataset_id": self.dataset_id,
                "name": name,
                "purpose": snapshot.purpose,
                "as_of": snapshot.as_of,
                "as_of_us": snapshot.now_us,
                "policy_version": snapshot.policy_version,
                "ledger": {"seq": snapshot.ledger_seq, "hash": snapshot.ledger_hash},
                "engine": "duckdb",
                "source": {
                    "manifest": source.description,
                    "format": source.format,
                    "files": source.files,
                },
                "signals": signals_info,
                "categories": {c: p.to_dict() for c, p in sorted(table.categories.items())},
                "counts": {
                    "input": m.input_items,
                    "allowed": m.allowed,
                    "excluded": m.excluded,
                    "allowed_by_reason": allowed_by_reason,
                    "excluded_by_reason": m.excluded_by_reason,
                },
                "digests": {
                    "method": self.method,
                    "input_sha256": m.input_sha256,
                    "output_sha256": m.output_sha256,
                    "excluded_sha256": m.excluded_sha256,
                },
                "subjects": {"count": m.subjects, "index_sha256": m.subjects_sha256},
                "outputs": {"format": self.fmt, "files": files, "dir": str(self.out.resolve())},
                "created_at": format_time(self.store.clock()),
            }
        )

    def _write_report(self, record: LineageRecord) -> None:
        path = self.tmp / REPORT_NAME
        path.write_text(json.dumps(record.to_dict(), indent=2, sort_keys=True) + "\n")

    def _commit(self, record: LineageRecord, measured: Measured) -> None:
        from .. import lineage

        mover = _Mover(self.tmp, self.out, self.dataset_id)
        try:
            lineage.save_dataset(
                self.store,
                record,
                measured.index,
                idempotency_key=self.o.idempotency_key,
                before_commit=mover.move,
            )
        except BaseException:
            mover.undo()
            raise
        mover.done()


class _Mover:
    """Rename the finished directory into place (keeping a replaced one until commit)."""

    def __init__(self, tmp: Path, out: Path, tag: str) -> None:
        self.tmp, self.out = tmp, out
        self.old = out.parent / f".{out.name}.old-{tag}"
        self.moved = False
        self.replaced = False

    def move(self) -> None:
        if self.out.exists():
            os.rename(self.out, self.old)
            self.replaced = True
        os.rename(self.tmp, self.out)
        self.moved = True

    def undo(self) -> None:
        if self.moved:
            os.rename(self.out, self.tmp)
        if self.replaced:
            os.rename(self.old, self.out)

    def done(self) -> None:
        if self.replaced:
            shutil.rmtree(self.old, ignore_errors=True)


# -- SQL --------------------------------------------------------------------------------------


class ItemSql:
    """The stream query: every row of a source with what :mod:`consentry.gate.stream` needs
    to decide it (see the module docstring for the order of the checks)."""

    def __init__(
        self,
        source: Source,
        shape: Shape,
        table: DecisionTable,
        snapshot: Snapshot,
        opt_outs: bool,
        *,
        multiset: bool = True,
    ) -> None:
        self.source = source
        self.shape = shape
        self.opt_outs = opt_outs
        #: Whether the pass adds up the multiset digest (``__v``); the sorted one is computed
        #: from the outputs afterwards, and MD5 of every id is a large share of the scan.
        self.multiset = multiset
        self.known_labels = snapshot.known_labels()
        self.protected = {p.protected for p in table.categories.values()}
        self.unknown = len(table.subjects)
        #: A protected label can exclude an item (the manifest has labels and the policy
        #: protects some): the query then computes ``__pl``.
        self.labels = shape.labels and any(self.protected)

    def bad_checks(self) -> list[tuple[str, str, str]]:
        """(condition on alias m, column, problem) in the order they are reported."""
        checks = [
            ("m.item_id IS NULL", "item_id", "'item_id' is empty (null)"),
            ("m.item_id = ''", "item_id", "'item_id' is an empty string"),
        ]
        if self.shape.is_list:
            checks += [
                ("m.subject_ids IS NULL", "subject_ids", "'subject_ids' is empty (null)"),
                ("len(m.subject_ids) = 0", "subject_ids", "'subject_ids' is an empty list"),
                (
                    "list_count(m.subject_ids) < len(m.subject_ids)",
                    "subject_ids",
                    "'subject_ids' holds a null subject",
                ),
                (
                    "list_contains(m.subject_ids, '')",
                    "subject_ids",
                    "'subject_ids' holds an empty subject id",
                ),
            ]
        else:
            checks += [
                ("m.subject_id IS NULL", "subject_id", "'subject_id' is empty (null)"),
                ("m.subject_id = ''", "subject_id", "'subject_id' is an empty string"),
            ]
        if self.shape.labels:
            checks.append(
                (
                    "(m.labels IS NOT NULL AND list_count(m.labels) < len(m.labels))",
                    "labels",
                    "'labels' holds a null label",
                )
            )
            if self.known_labels is not None:
                known = "[" + ", ".join(sql_str(x) for x in sorted(self.known_labels)) + "]"
                checks.append(
                    (
                        f"(m.labels IS NOT NULL AND NOT list_has_all({known}, m.labels))",
                        "labels",
                        "unknown label",
                    )
                )
        checks.append(("c.ci IS NULL", "category", "'category' is not a known category"))
        return checks

    def stream(self, *, positions: bool) -> str:
        """Every row: the manifest's columns, then ``__ci`` (category position, null for an
        unknown one), ``__oi`` (owner's position in the decision table; the sentinel
        position when unknown), ``__v`` (``v(item_id)`` of the multiset digest) and, where
        they apply, ``__h`` (hashes of a multi-subject item's subjects), ``__pl`` (protected
        label) and ``__oo`` (source opted out); with ``positions``, ``__cf`` and ``__cr``
        too. Rows are not checked here: :func:`stream.has_bad_rows` checks each batch."""
        rel = self.source.relation()
        cols = [f"m.{ident(n)}" for n in self.source.column_names()]
        if positions:
            cols += [f"m.{FILE_COL} AS {FILE_COL}", f"m.{ROW_COL} AS {ROW_COL}"]
        cols += [
            # Null for a category the policy does not know; the batch is then checked
            # (stream.has_bad_rows) before anything is decided or written.
            "c.ci AS __ci",
            # Unknown owner: the decision table's sentinel position (BatchDecider.unknown).
            f"coalesce(u.i, {self.unknown})::UINTEGER AS __oi",
            f"{V_SQL.format('m.item_id')} AS __v" if self.multiset else "0::UBIGINT AS __v",
        ]
        if self.shape.is_list:
            # The engine's hash of every subject of a multi-subject item, to look the others
            # up (BatchDecider.positions); single-subject rows, the vast majority, pay nothing.
            cols.append(
                "CASE WHEN len(m.subject_ids) > 1 "
                "THEN list_transform(m.subject_ids, lambda s: hash(s)) END AS __h"
            )
        if self.labels:
            # One protected set for every category (it depends on the policy and the purpose
            # only): a constant list is far cheaper per row than a joined column.
            if len(self.protected) == 1:
                (only,) = self.protected
                lst = "[" + ", ".join(sql_str(x) for x in only) + "]"
                pl = f"(len(m.labels) > 0 AND coalesce(list_has_any(m.labels, {lst}), false))"
            else:
                pl = "coalesce(list_has_any(m.labels, c.protected), false)"
            cols.append(f"{pl} AS __pl")
        if self.opt_outs:
            cols.append("coalesce(m.source_url IN (SELECT url FROM __optout), false) AS __oo")
        return f"""
            SELECT {", ".join(cols)}
            FROM {rel} m
            LEFT JOIN __c c ON c.category = m.category
            LEFT JOIN __u u ON u.subject = {self.shape.owner("m")}
        """


def prepare(
    con: Any, sql: ItemSql, table: DecisionTable, opt_outs: set[str] | None
) -> BatchDecider:
    """The batch decider, and the small tables the stream query joins (``__c`` categories,
    ``__u`` the decision table's subjects, ``__optout`` opted-out URLs)."""
    import pyarrow as pa

    from .stream import BatchDecider

    decider = BatchDecider(table, sql.shape, opt_outs=opt_outs is not None, labels=sql.labels)
    categories = decider.category_table()
    plans = [table.categories[c] for c in decider.categories]
    categories = categories.append_column(
        "protected", pa.array([list(p.protected) for p in plans], pa.list_(pa.string()))
    )
    tables = {"__c": categories, "__u": decider.subject_table()}
    if opt_outs is not None:
        tables["__optout"] = pa.table({"url": pa.array(sorted(opt_outs), pa.string())})
    for name, arrow in tables.items():
        con.register(f"{name}_arrow", arrow)
        con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM {name}_arrow").fetchall()
        con.unregister(f"{name}_arrow")
    if sql.shape.is_list:
        hashes = con.sql("SELECT hash(subject) AS h FROM __u ORDER BY i").to_arrow_table()
        decider.set_hashes(hashes.column("h").to_numpy())
    return decider


#: (name, DuckDB type) of the ``excluded`` output's columns.
EXCLUDED_COLUMNS = [
    ("item_id", "VARCHAR"), ("reason", "VARCHAR"), ("blocking_subject", "VARCHAR"),
    ("event_seq", "BIGINT"),
]  # fmt: skip


def pa_schema_select(schema: Any, positions: list[int]) -> Any:
    import pyarrow as pa

    return pa.schema([schema.field(i) for i in positions])


def _is_duckdb_error(exc: BaseException) -> bool:
    return type(exc).__module__.split(".")[0] in ("duckdb", "_duckdb")


def check_categories(con: Any, source: Source, snapshot: Snapshot) -> list[str]:
    """The manifest's distinct categories, each checked against the policy in effect (one
    pass over the category column; a bad one is then located to its first row)."""
    rel = source.relation()
    distinct = [r[0] for r in con.execute(f"SELECT DISTINCT category FROM {rel}").fetchall()]
    bad: list[tuple[str | None, str | None]] = []
    for category in distinct:
        if category is None:
            bad.append((None, None))
            continue
        try:
            snapshot.check_category(category)
        except UnknownName as exc:
            bad.append((category, exc.hint))
    if not bad:
        return sorted(distinct)
    hints = dict(bad)
    (first,) = con.execute(
        f"SELECT category, {FILE_COL}, {ROW_COL} FROM {rel} "
        "WHERE category IS NULL OR list_contains($names, category) "
        f"ORDER BY {FILE_COL}, {ROW_COL} LIMIT 1",
        {"names": [c for c, _ in bad if c is not None] or [""]},
    ).fetchall()
    category, f, r = first
    where = source.where(int(f), int(r))
    if category is None:
        raise InvalidInput(
            f"{where}: 'category' is empty",
            hint="every item needs a data category, e.g. content.audio",
            field="category",
            file=source.description,
            row=int(r) + 1,
        )
    raise InvalidInput(
        f"{where}: unknown category {category!r} in column 'category'",
        hint=hints.get(category),
        field="category",
        value=category,
        file=source.description,
        row=int(r) + 1,
    )


def diagnose(con: Any, source: Source, shape: Shape, snapshot: Snapshot) -> InvalidInput:
    """The first bad row of a manifest (in file and row order), as one clear error."""
    sql = ItemSql(source, shape, DecisionTable({}, 0), snapshot, False)
    checks = sql.bad_checks()
    cases = " ".join(f"WHEN {cond} THEN {i}" for i, (cond, _, _) in enumerate(checks))
    label = "NULL::VARCHAR"
    known = snapshot.known_labels()
    if shape.labels and known is not None:
        lst = "[" + ", ".join(sql_str(x) for x in sorted(known)) + "]"
        label = f"list_filter(m.labels, lambda x: NOT list_contains({lst}, x))[1]"
    rows = con.execute(
        f"""
        SELECT * FROM (
            SELECT m.{FILE_COL} AS f, m.{ROW_COL} AS r, m.item_id,
                   CASE {cases} END AS k, {label} AS bad_label
            FROM {source.relation()} m LEFT JOIN __c c ON c.category = m.category
        ) WHERE k IS NOT NULL ORDER BY f, r LIMIT 1
        """
    ).fetchall()
    row = rows[0] if rows else None
    if row is None:  # pragma: no cover - only when error() fired without a bad row
        return InvalidInput(f"manifest {source.description} has a bad row", field="manifest")
    f, r, item_id, k, bad_label = row
    _, column, problem = checks[int(k)]
    where = source.where(int(f), int(r))
    item = f" (item {item_id!r})" if item_id else ""
    if problem == "unknown label" and known is not None:
        exc = unknown("label", str(bad_label), known)
        return InvalidInput(
            f"{where}{item}: unknown label {bad_label!r} in column 'labels'",
            hint=exc.hint,
            field="labels",
            value=bad_label,
            file=source.description,
            row=int(r) + 1,
        )
    return InvalidInput(
        f"{where}{item}: {problem}",
        hint=_HINTS.get(column),
        field=column,
        file=source.description,
        row=int(r) + 1,
    )


_HINTS = {
    "item_id": "every item needs a non-empty item_id",
    "subject_id": "every item needs the id of the subject whose data it is",
    "subject_ids": "list every subject of the item (the owner first); no nulls or empty ids",
    "labels": "labels is a list of label names; leave it empty for none",
    "category": "every item needs a data category, e.g. content.audio",
}


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

    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from . import stream

    snapshot = take_snapshot(store, purpose, as_of)
    with tempfile.TemporaryDirectory(prefix="consentry-rows-") as tmp:
        con = connect(threads, None, Path(tmp) / ".spill")
        try:
            source = mf.open_source(con, manifest, Path(tmp) / "work", input_format=input_format)
            shape = mf.check_shape(source)
            opt = set(signals) if signals is not None else None
            if opt is not None and not shape.source_url:
                raise InvalidInput("the manifest has no 'source_url' column", field="source_url")
            categories = check_categories(con, source, snapshot)
            table = build_table(
                snapshot, categories, None, lock=store.lock if snapshot.live else None, store=store
            )
            sql = ItemSql(source, shape, table, snapshot, opt is not None)
            decider = prepare(con, sql, table, opt)
            reasons = pa.array(REASONS, pa.string())
            parts = []
            try:
                reader = con.sql(sql.stream(positions=True)).to_arrow_reader(1 << 20)
                for batch in reader:
                    if stream.has_bad_rows(batch, shape, sql.known_labels):
                        raise BadRow
                    d = decider.decide(batch)
                    allowed = d.allowed
                    everyone = np.ones(batch.num_rows, dtype=bool)
                    blocking = decider.blocking(batch, d, everyone)
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
                reader.close()
            except Exception as exc:
                if isinstance(exc, BadRow):
                    reader.close()
                    raise diagnose(con, source, shape, snapshot) from None
                raise
            if not parts:
                return _rows_schema().empty_table()
            rows = pa.concat_tables(parts)
            return rows.sort_by([("file_index", "ascending"), ("row_index", "ascending")])
        finally:
            con.close()


def _rows_schema() -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            ("file_index", pa.int64()), ("row_index", pa.int64()), ("item_id", pa.string()),
            ("allowed", pa.bool_()), ("reason", pa.string()), ("blocking_subject", pa.string()),
            ("event_seq", pa.int64()),
        ]
    )  # fmt: skip


__all__ = ["CODES", "decide_rows", "gate"]
