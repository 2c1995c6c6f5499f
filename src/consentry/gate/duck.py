"""The gate on one machine: DuckDB streams the manifest through the decision table.

One run, over a manifest of any size (the manifest is never loaded whole):

1. read the distinct categories (validating them) and pin the ledger state and time;
2. build the per-(category group, subject) decision table with ``Plan.decide``
   (:mod:`consentry.gate.decisions`) and hand it to DuckDB as an Arrow table;
3. items with several subjects under a rule that needs every party: unnest them, join, and
   keep the first denying subject per item (a small side table keyed by file and row);
4. ``COPY`` the allowed rows, every column untouched, then the exclusions
   (``item_id, reason, blocking_subject, event_seq``), both into a temporary directory;
5. measure the outputs (counts, digests, subject index: :mod:`consentry.gate.measure`),
   write ``report.json``, and in one database transaction record the lineage and rename the
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
import threading
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
    ALLOW_CODES,
    CODES,
    OPT_OUT_CODE,
    PROTECTED_CODE,
    REASONS,
    UNKNOWN_CODE,
    DecisionTable,
    Snapshot,
    build_table,
    take_snapshot,
)
from .manifest import FILE_COL, ROW_COL, Shape, Source, sql_str
from .measure import Measured, measure
from .result import RECORD_VERSION, REPORT_NAME, GateResult, LineageRecord, digest_method

if TYPE_CHECKING:
    from ..store import Store

Progress = Callable[[str, float], None]
BAD_ROW = "consentry: bad manifest row"
DEFAULT_MEMORY_LIMIT = os.environ.get("CONSENTRY_GATE_MEMORY_LIMIT", "3GB")

# Overall progress: the share of the run each stage takes.
STAGES = {"read": (0.0, 0.05), "decide": (0.05, 0.15), "allowed": (0.15, 0.55),
          "excluded": (0.55, 0.8), "lineage": (0.8, 1.0)}  # fmt: skip


@dataclass
class Options:
    purpose: str
    out: Path
    as_of: Any = None
    dataset_name: str | None = None
    format: str = "parquet"
    overwrite: bool = False
    signals: Any = None
    digest: str = "multiset"
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
        self.timings: dict[str, float] = {}
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
                "extra": {"timings": self.timings},
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

    # -- the passes -------------------------------------------------------------------------

    def _gate(
        self,
        con: Any,
        snapshot: Snapshot,
        opt_outs: set[str] | None,
        signals_info: dict[str, Any] | None,
    ) -> tuple[LineageRecord, Measured]:
        import pyarrow as pa

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
        )
        con.register("__d_arrow", table.table)
        con.execute("CREATE TEMP TABLE __d AS SELECT * FROM __d_arrow").fetchall()
        con.unregister("__d_arrow")
        con.register("__c_arrow", table.category_table())
        con.execute("CREATE TEMP TABLE __c AS SELECT * FROM __c_arrow").fetchall()
        con.unregister("__c_arrow")
        if opt_outs is not None:
            con.register("__oo_arrow", pa.table({"url": pa.array(sorted(opt_outs), pa.string())}))
            con.execute("CREATE TEMP TABLE __optout AS SELECT url FROM __oo_arrow").fetchall()
            con.unregister("__oo_arrow")
        sql = ItemSql(source, shape, table, snapshot, opt_outs is not None)
        self._lap("decision_table")
        if sql.has_x:
            self._query(con, "decide", sql.side_table(), source, shape, snapshot)
        self._lap("multi_subject")
        self._progress("decide", 1.0)

        ext = mf.OUTPUT_EXTENSION[self.fmt]
        files = {"allowed": f"allowed{ext}", "excluded": f"excluded{ext}"}
        allowed_path = self.tmp / files["allowed"]
        excluded_path = self.tmp / files["excluded"]
        self._query(
            con, "allowed", None, source, shape, snapshot,
            write=(sql.allowed(self.fmt), allowed_path),
        )  # fmt: skip
        self._lap("allowed")
        self._query(
            con, "excluded", None, source, shape, snapshot,
            write=(sql.excluded(), excluded_path),
        )  # fmt: skip
        self._lap("excluded")

        self._progress("lineage", 0.0)
        allowed_src = mf.open_source(
            con, allowed_path, self.tmp / ".work" / "a", input_format=self.fmt
        )
        excluded_src = mf.open_source(
            con, excluded_path, self.tmp / ".work" / "e", input_format=self.fmt
        )
        parties_all = [c for c, p in table.categories.items() if p.parties_all]
        measured = measure(con, allowed_src, excluded_src, shape, parties_all, self.method)
        allowed_by_reason = self._allowed_by_reason(con, allowed_src, shape)
        record = self._record(
            snapshot, source, table, measured, allowed_by_reason, files, signals_info
        )
        self._lap("measure")
        return record, measured

    def _lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = round(now - self._last, 3)
        self._last = now

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

    def _allowed_by_reason(self, con: Any, allowed: Source, shape: Shape) -> dict[str, int]:
        owner = shape.owner("m")
        rows = con.execute(
            f"SELECT coalesce(d.code, {UNKNOWN_CODE}) AS code, count(*) "
            f"FROM {allowed.relation()} m "
            "JOIN __c c ON c.category = m.category "
            f"LEFT JOIN __d d ON d.g = c.g AND d.subject = {owner} GROUP BY ALL"
        ).fetchall()
        return {REASONS[int(code)]: int(n) for code, n in sorted(rows)}

    def _query(
        self,
        con: Any,
        stage: str,
        sql: str | None,
        source: Source,
        shape: Shape,
        snapshot: Snapshot,
        *,
        write: tuple[str, Path] | None = None,
    ) -> None:
        """Run one statement with progress; a bad row becomes an error that names it."""
        stop = threading.Event()
        poller = None
        if self.o.progress is not None:
            poller = threading.Thread(target=self._poll, args=(con, stage, stop), daemon=True)
            poller.start()
        try:
            if write is not None:
                query, path = write
                mf.write_query(con, query, path, self.fmt)
            else:
                assert sql is not None
                con.execute(sql).fetchall()
        except Exception as exc:
            if BAD_ROW in str(exc):
                raise diagnose(con, source, shape, snapshot) from None
            if isinstance(exc, ConsentryError):
                raise
            raise InvalidInput(
                f"cannot gate manifest {source.description}: {mf._short(exc)}",
                hint="check that the manifest's files are complete and of one schema",
                field="manifest",
            ) from exc
        finally:
            stop.set()
            if poller is not None:
                poller.join()
        self._progress(stage, 1.0)

    def _poll(self, con: Any, stage: str, stop: threading.Event) -> None:
        while not stop.wait(0.2):
            try:
                pct = float(con.query_progress())
            except Exception:
                return
            if pct >= 0:
                self._progress(stage, min(pct, 100.0) / 100.0)

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
    """The SQL that answers every item of a source (see the module docstring for the order)."""

    def __init__(
        self,
        source: Source,
        shape: Shape,
        table: DecisionTable,
        snapshot: Snapshot,
        opt_outs: bool,
    ) -> None:
        self.source = source
        self.shape = shape
        self.opt_outs = opt_outs
        self.known_labels = snapshot.known_labels()
        self.has_x = shape.is_list and any(
            p.parties_all and p.fixed is None for p in table.categories.values()
        )
        self.allow = "(" + ", ".join(str(c) for c in ALLOW_CODES) + ")"
        self.protected = {p.protected for p in table.categories.values()}

    def side_table(self) -> str:
        """Multi-subject items under a rule that needs every party: the first subject (in
        list order) whose answer denies, per (file, row)."""
        rel = self.source.relation()
        return f"""
        CREATE TEMP TABLE __x AS
        SELECT f, r, first.code AS code, first.blocker AS blocker, first.seq AS seq FROM (
            SELECT f, r, min({{'pos': pos, 'code': code, 'blocker': s, 'seq': seq}}) AS first
            FROM (
                SELECT u.f, u.r, u.pos, u.s, coalesce(d.code, {UNKNOWN_CODE}) AS code, d.seq
                FROM (
                    SELECT m.{FILE_COL} AS f, m.{ROW_COL} AS r, c.g,
                           unnest(m.subject_ids) AS s, generate_subscripts(m.subject_ids, 1) AS pos
                    FROM {rel} m JOIN __c c ON c.category = m.category
                    WHERE c.parties_all AND c.fixed IS NULL AND len(m.subject_ids) > 1
                ) u
                LEFT JOIN __d d ON d.g = u.g AND d.subject = u.s
            ) WHERE code NOT IN {self.allow}
            GROUP BY f, r
        )
        """

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
        checks.append(("c.g IS NULL", "category", "'category' is not a known category"))
        return checks

    def any_bad(self) -> str:
        """True for a row that :meth:`bad_checks` would report: the same conditions, ordered
        so that the common row (one subject, no labels) pays for a few scalar tests only."""
        parts = ["m.item_id IS NULL", "m.item_id = ''", "c.g IS NULL"]
        if self.shape.is_list:
            s = "m.subject_ids"
            parts += [
                f"{s} IS NULL",
                f"coalesce(len({s}) = 0, false)",
                f"{s}[1] IS NULL",
                f"{s}[1] = ''",
                f"CASE WHEN len({s}) > 1 THEN list_count({s}) < len({s}) "
                f"OR list_contains({s}, '') ELSE false END",
            ]
        else:
            parts += ["m.subject_id IS NULL", "m.subject_id = ''"]
        if self.shape.labels:
            label_bad = "list_count(m.labels) < len(m.labels)"
            if self.known_labels is not None:
                known = "[" + ", ".join(sql_str(x) for x in sorted(self.known_labels)) + "]"
                label_bad += f" OR NOT list_has_all({known}, m.labels)"
            parts.append(f"CASE WHEN len(m.labels) > 0 THEN {label_bad} ELSE false END")
        return " OR ".join(f"coalesce({p}, false)" for p in parts)

    def _inner(self, validate: bool) -> str:
        rel = self.source.relation()
        owner = self.shape.owner("m")
        oo = (
            "coalesce(m.source_url IN (SELECT url FROM __optout), false)"
            if self.opt_outs
            else "false"
        )
        pl = "false"
        if self.shape.labels and any(self.protected):
            # One protected set for every category (it depends on the policy and the purpose
            # only): a constant list is far cheaper per row than the joined column.
            if len(self.protected) == 1:
                (only,) = self.protected
                lst = "[" + ", ".join(sql_str(x) for x in only) + "]"
                pl = f"(len(m.labels) > 0 AND coalesce(list_has_any(m.labels, {lst}), false))"
            else:
                pl = "coalesce(list_has_any(m.labels, c.protected), false)"
        bad = self.any_bad() if validate else "false"
        x_cols = (
            "x.code AS __xc, x.blocker AS __xb, x.seq AS __xs"
            if self.has_x
            else "NULL::UTINYINT AS __xc, NULL::VARCHAR AS __xb, NULL::BIGINT AS __xs"
        )
        x_join = (
            f"LEFT JOIN __x x ON x.f = m.{FILE_COL} AND x.r = m.{ROW_COL}" if self.has_x else ""
        )
        return f"""
            SELECT m.*, {oo} AS __oo, {pl} AS __pl, c.fixed AS __fx, {x_cols},
                   d1.code AS __dc, d1.seq AS __dq, {owner} AS __ow, ({bad}) AS __bad
            FROM {rel} m
            LEFT JOIN __c c ON c.category = m.category
            LEFT JOIN __d d1 ON d1.g = c.g AND d1.subject = {owner}
            {x_join}
        """

    def decided(self, validate: bool) -> str:
        """Every item with ``__code`` (its reason code) and ``__item`` (decided by the item,
        not by a subject)."""
        return f"""
            SELECT t.*,
                CASE WHEN t.__bad THEN error('{BAD_ROW}')
                     WHEN t.__oo THEN {OPT_OUT_CODE}
                     WHEN t.__pl THEN {PROTECTED_CODE}
                     WHEN t.__fx IS NOT NULL THEN t.__fx
                     WHEN t.__xc IS NOT NULL THEN t.__xc
                     ELSE coalesce(t.__dc, {UNKNOWN_CODE})
                END::UTINYINT AS __code,
                (t.__oo OR t.__pl OR t.__fx IS NOT NULL) AS __item
            FROM ({self._inner(validate)}) t
        """

    def allowed(self, fmt: str) -> str:
        cols = mf.select_for_output(self.source.columns, fmt, alias="t")
        return f"SELECT {cols} FROM ({self.decided(True)}) t WHERE t.__code IN {self.allow}"

    def excluded(self) -> str:
        reasons = "[" + ", ".join(sql_str(r) for r in REASONS) + "]"
        return f"""
            SELECT t.item_id, {reasons}[t.__code + 1] AS reason,
                CASE WHEN NOT t.__item AND t.__xc IS NOT NULL THEN t.__xb ELSE t.__ow END
                    AS blocking_subject,
                CASE WHEN t.__item THEN NULL WHEN t.__xc IS NOT NULL THEN t.__xs ELSE t.__dq END
                    AS event_seq
            FROM ({self.decided(False)}) t WHERE t.__code NOT IN {self.allow}
        """

    def rows(self) -> str:
        """Every item's answer (``decide_rows``)."""
        reasons = "[" + ", ".join(sql_str(r) for r in REASONS) + "]"
        return f"""
            SELECT t.{FILE_COL} AS file_index, t.{ROW_COL} AS row_index, t.item_id,
                t.__code IN {self.allow} AS allowed,
                {reasons}[t.__code + 1] AS reason,
                CASE WHEN t.__code IN {self.allow} THEN NULL
                     WHEN NOT t.__item AND t.__xc IS NOT NULL THEN t.__xb ELSE t.__ow END
                    AS blocking_subject,
                CASE WHEN t.__item THEN NULL WHEN t.__xc IS NOT NULL THEN t.__xs ELSE t.__dq END
                    AS event_seq
            FROM ({self.decided(True)}) t
            ORDER BY t.{FILE_COL}, t.{ROW_COL}
        """


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

    The same SQL the gate runs; use it for a dry run or to explain a gate's choices.
    """
    import tempfile

    import pyarrow as pa

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
            con.register("__d_arrow", table.table)
            con.execute("CREATE TEMP TABLE __d AS SELECT * FROM __d_arrow").fetchall()
            con.register("__c_arrow", table.category_table())
            con.execute("CREATE TEMP TABLE __c AS SELECT * FROM __c_arrow").fetchall()
            if opt is not None:
                con.register("__oo_arrow", pa.table({"url": pa.array(sorted(opt), pa.string())}))
                con.execute("CREATE TEMP TABLE __optout AS SELECT url FROM __oo_arrow").fetchall()
            sql = ItemSql(source, shape, table, snapshot, opt is not None)
            try:
                if sql.has_x:
                    con.execute(sql.side_table()).fetchall()
                return con.sql(sql.rows()).to_arrow_table()
            except Exception as exc:
                if BAD_ROW in str(exc):
                    raise diagnose(con, source, shape, snapshot) from None
                raise
        finally:
            con.close()


__all__ = ["CODES", "decide_rows", "gate"]
