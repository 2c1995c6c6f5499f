"""One gate run, whichever engine does the heavy lifting.

A :class:`GateRun` owns everything that does not depend on the engine: the options, the
snapshot of the ledger, the do-not-train signals, the category and bad-row checks and their
messages (:mod:`consentry.gate.checks`), the decision table, the lineage record, the output
folder and its atomic commit, and the timings. An engine (:class:`GateEngine`) only reads,
decides, writes and measures: DuckDB on one machine (:class:`consentry.gate.duck.DuckEngine`),
Spark beyond it (:class:`consentry.gate.spark.SparkEngine`). Adding an engine is writing one
class with the methods of :class:`GateEngine` and naming it in :data:`ENGINES`.

A run:

1. the idempotency key (an earlier run with it is returned as is), the output folder (it must
   not exist unless ``overwrite``), the snapshot (``as_of``), the signals;
2. ``engine.open``: the manifest's columns (:class:`Opened`), checked for ``source_url``
   when there are signals;
3. ``engine.categories``: each checked against the policy; a bad one is located with
   ``engine.first_bad_row`` and reported;
4. the decision table (:func:`consentry.gate.decisions.build_table`);
5. ``engine.decide_and_write``: every item decided in :data:`consentry.item_order.ITEM_ORDER`,
   allowed rows and exclusions written into a temporary folder; a bad row stops it
   (:class:`BadRowFound`) and is located and reported as in 3;
6. ``engine.measure``: counts, digests, the subject index; the lineage record and
   ``report.json``; in one database transaction the lineage is recorded and the folder renamed
   into place. Any failure removes the temporary folder: nothing partial is left.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from ..errors import InvalidInput
from ..ids import new_id
from ..times import format_time
from . import manifest as mf
from .checks import (
    Located,
    RowCheck,
    account_checks,
    bad_row_error,
    category_checks,
    row_checks,
    split_accounts,
    split_categories,
)
from .decisions import (
    DecisionTable,
    LedgerSnapshot,
    ManifestSubjects,
    build_table,
    take_snapshot,
)
from .manifest import Shape
from .measure import Measured
from .options import GateOptions
from .result import RECORD_VERSION, REPORT_NAME, GateResult, LineageRecord

if TYPE_CHECKING:
    from ..store import Store

#: Engine name -> "module:class" (imported when used: Spark is optional).
ENGINES = {
    "duckdb": "consentry.gate.duck:DuckEngine",
    "spark": "consentry.gate.spark:SparkEngine",
}

#: Overall progress: the share of the run each stage takes.
STAGES = {"read": (0.0, 0.05), "decide": (0.05, 0.15), "gate": (0.15, 0.9),
          "lineage": (0.9, 1.0)}  # fmt: skip


class BadRowFound(Exception):
    """An engine met a row that fails one of the checks; the run then asks it for the first
    one (``first_bad_row``) and reports that."""


@dataclass(frozen=True)
class Opened:
    """A manifest an engine opened: its shape, and what the lineage record says of it."""

    shape: Shape
    #: What the caller passed (paths, or a description such as ``pyarrow.Table``).
    description: str
    #: The lineage record's ``source``: manifest, format, files.
    source: dict[str, Any]


@dataclass
class Job:
    """What an engine's pass needs: the decision table and how to check, write and count."""

    snapshot: LedgerSnapshot
    table: DecisionTable
    #: Opted-out source URLs (None: no signals).
    opt_outs: set[str] | None
    checks: tuple[RowCheck, ...]
    #: The folder to write into (renamed into place by the run) and the output file names.
    folder: Path
    files: dict[str, str]
    format: str
    #: The digest method (``sorted-sha256-v1`` or ``multiset-md5-v1``).
    method: str
    progress: Callable[[float], None]

    @property
    def parties_all(self) -> list[str]:
        """The categories whose rule needs every party (the subject index counts them)."""
        return [c for c, p in self.table.categories.items() if p.parties_all]


class GateEngine(Protocol):
    """What an engine does for a :class:`GateRun`: read, decide and write, measure."""

    #: The name in ``engine=`` and in the lineage record; the output formats it writes.
    NAME: ClassVar[str]
    FORMATS: ClassVar[tuple[str, ...]]

    def open(self, manifest: Any, work: Path) -> Opened:
        """Open the manifest (scratch files go into ``work``) and check its columns."""
        ...

    def categories(self) -> list[str | None]:
        """The manifest's distinct categories (null included)."""
        ...

    def table_subjects(self, snapshot: LedgerSnapshot) -> ManifestSubjects | Sequence[str] | None:
        """The subjects the decision table needs: the manifest's (category, subject) pairs
        (:class:`ManifestSubjects`), a list of subjects, or None (every subject the store
        knows)."""
        ...

    def accounts(self) -> list[str | None]:
        """The manifest's distinct values of its ``account`` column (null included)."""
        ...

    def first_bad_row(self, checks: Sequence[RowCheck]) -> tuple[RowCheck, Located] | None:
        """The first row that fails a check (in row order where the engine has one), and the
        first check it fails."""
        ...

    def decide_and_write(self, job: Job) -> Any:
        """Decide every item, write the allowed rows and the exclusions into ``job.folder``;
        raise :class:`BadRowFound` on a row that fails ``job.checks``. What it returns is
        handed to :meth:`measure`."""
        ...

    def measure(self, job: Job, written: Any) -> Measured:
        """Counts, digests (``job.method``) and the subject index of what was written."""
        ...

    def close(self) -> None:
        """Release what ``open`` took (the run's folder is removed or renamed by the run)."""
        ...


def engine_class(name: str) -> Any:
    """The engine class named ``name`` (see :data:`ENGINES`)."""
    where = ENGINES.get(name)
    if where is None:
        raise InvalidInput(
            f"unknown engine {name!r}", hint=f"use {' or '.join(ENGINES)}", field="engine"
        )
    module, _, cls = where.partition(":")
    return getattr(importlib.import_module(module), cls)


# -- checks shared by every entry point ------------------------------------------------------


def load_signals(signals: Any) -> tuple[set[str] | None, dict[str, Any] | None]:
    """The opted-out URLs and what the lineage record says of them: from a signals file
    (``consentry signals check ... --out FILE``) or the URLs themselves."""
    if signals is None:
        return None, None
    if isinstance(signals, (str, os.PathLike)):
        try:
            from ..signals import load_opt_outs
        except ImportError:  # pragma: no cover - the signals package ships with consentry
            raise InvalidInput(
                "do-not-train signals are not available in this installation", field="signals"
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


def require_source_url(opt_outs: set[str] | None, opened: Opened) -> None:
    """Signals need a ``source_url`` column to check."""
    if opt_outs is not None and not opened.shape.source_url:
        raise InvalidInput(
            f"manifest {opened.description} has no 'source_url' column to check signals on",
            hint="add source_url, or leave out --signals",
            field="source_url",
        )


def bad_row(
    engine: GateEngine,
    opened: Opened,
    checks: Sequence[RowCheck],
    hints: dict[str, str | None] | None = None,
) -> InvalidInput:
    """The error naming the manifest's first bad row."""
    found = engine.first_bad_row(checks)
    if found is None:  # pragma: no cover - only when an engine stopped without a bad row
        return InvalidInput(f"manifest {opened.description} has a bad row", field="manifest")
    check, at = found
    return bad_row_error(check, at, hints=hints)


def check_categories(engine: GateEngine, opened: Opened, snapshot: LedgerSnapshot) -> list[str]:
    """The manifest's categories, each one the policy in effect knows (else the first row
    with an empty or unknown one is reported)."""
    good, null, hints = split_categories(engine.categories(), snapshot)
    if null or hints:
        raise bad_row(engine, opened, category_checks(good), hints)
    return good


def check_accounts(engine: GateEngine, opened: Opened, snapshot: LedgerSnapshot) -> list[str]:
    """The accounts the manifest's items belong to (its ``account`` column), each one the
    store knows (else the first row with an empty or unknown one is reported)."""
    if not opened.shape.account:
        return []
    good, bad = split_accounts(engine.accounts(), snapshot.state.accounts)
    if bad:
        raise bad_row(engine, opened, account_checks(good))
    return good


def lineage_record(
    *,
    dataset_id: str,
    name: str,
    engine: str,
    snapshot: LedgerSnapshot,
    table: DecisionTable,
    measured: Measured,
    method: str,
    source: dict[str, Any],
    outputs: dict[str, Any] | None,
    signals: dict[str, Any] | None,
    created: str,
) -> LineageRecord:
    """The lineage record of one run (``report.json`` and the store's copy)."""
    m = measured
    return LineageRecord.make(
        {
            "version": RECORD_VERSION,
            "dataset_id": dataset_id,
            "name": name,
            "purpose": snapshot.purpose,
            "as_of": snapshot.as_of,
            "as_of_us": snapshot.now_us,
            "policy_version": snapshot.policy_version,
            "ledger": {"seq": snapshot.ledger_seq, "hash": snapshot.ledger_hash},
            "engine": engine,
            "source": source,
            "signals": signals,
            "categories": {c: p.to_dict() for c, p in sorted(table.categories.items())},
            "counts": {
                "input": m.input_items,
                "allowed": m.allowed,
                "excluded": m.excluded,
                "allowed_by_reason": m.allowed_by_reason,
                "excluded_by_reason": m.excluded_by_reason,
            },
            "digests": {
                "method": method,
                "input_sha256": m.input_sha256,
                "output_sha256": m.output_sha256,
                "excluded_sha256": m.excluded_sha256,
            },
            "subjects": {"count": m.subjects, "index_sha256": m.subjects_sha256},
            "outputs": outputs,
            "created_at": created,
        }
    )


# -- the output folder -------------------------------------------------------------------------


class OutputFolder:
    """The run's output folder: written under a temporary name next to ``out``, renamed into
    place inside the database transaction that records the lineage (a replaced folder is
    kept until that commits), or removed with any parents the run created."""

    def __init__(self, out: Path, overwrite: bool, tag: str) -> None:
        if out.exists() and not out.is_dir():
            raise InvalidInput(
                f"output {out} exists and is not a directory", hint="choose another --out",
                field="out",
            )  # fmt: skip
        if out.exists() and not overwrite:
            raise InvalidInput(
                f"output directory {out} already exists",
                hint="pass --overwrite (overwrite=True) to replace it, or choose another --out",
                field="out",
            )
        self.out = out
        self.tmp = out.parent / f".{out.name}.tmp-{tag}"
        self.old = out.parent / f".{out.name}.old-{tag}"
        self.created: list[Path] = []
        self.moved = self.replaced = False

    def create(self) -> None:
        missing = []
        parent = self.out.parent
        while not parent.exists():
            missing.append(parent)
            parent = parent.parent
        for d in reversed(missing):
            d.mkdir()
            self.created.append(d)
        self.tmp.mkdir()

    def discard(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
        for d in reversed(self.created):
            with contextlib.suppress(OSError):
                d.rmdir()

    def write_report(self, record: LineageRecord) -> None:
        path = self.tmp / REPORT_NAME
        path.write_text(json.dumps(record.to_dict(), indent=2, sort_keys=True) + "\n")

    def move(self) -> None:
        """Rename the finished folder into place (inside the lineage transaction)."""
        if self.out.exists():
            os.rename(self.out, self.old)
            self.replaced = True
        os.rename(self.tmp, self.out)
        self.moved = True

    def commit(self, save: Callable[[Callable[[], None]], None]) -> None:
        """Run ``save(before_commit)`` with :meth:`move` as its before-commit step; undo the
        rename if the transaction fails."""
        try:
            save(self.move)
        except BaseException:
            if self.moved:
                os.rename(self.out, self.tmp)
            if self.replaced:
                os.rename(self.old, self.out)
            raise
        if self.replaced:
            shutil.rmtree(self.old, ignore_errors=True)


# -- the run ------------------------------------------------------------------------------------


class GateRun:
    """One run of the gate (see the module docstring); :meth:`run` does it."""

    def __init__(self, store: Store, manifest: Any, engine: str = "duckdb", **options: Any):
        cls = engine_class(engine)
        self.store = store
        self.manifest = manifest
        self.options = GateOptions.parse(engine=cls.NAME, formats=cls.FORMATS, **options)
        self.engine: GateEngine = cls.from_options(self.options)
        self.dataset_id = new_id()
        self.started = time.perf_counter()
        self._last, self._last_cpu = self.started, time.process_time()
        self.timings: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def run(self) -> GateResult:
        from .. import lineage

        o = self.options
        if o.idempotency_key is not None:
            found = lineage.dataset_by_key(self.store, o.idempotency_key)
            if found is not None:
                return GateResult.from_record(found.record, None, replayed=True)
        folder = OutputFolder(o.out, o.overwrite, self.dataset_id)
        self._progress("read", 0.0)
        snapshot = take_snapshot(self.store, o.purpose, o.as_of)
        self._lap("snapshot")
        opt_outs, signals_info = load_signals(o.signals)
        folder.create()
        try:
            try:
                record, measured = self._gate(folder, snapshot, opt_outs, signals_info)
            finally:
                self.engine.close()
            folder.write_report(record)
            folder.commit(
                lambda move: lineage.save_dataset(
                    self.store,
                    record,
                    measured.index,
                    idempotency_key=o.idempotency_key,
                    before_commit=move,
                )
            )
            self._lap("commit")
        except BaseException:
            folder.discard()
            raise
        self._progress("lineage", 1.0)
        result = GateResult.from_record(record, o.out)
        return GateResult(
            **{
                **result.__dict__,
                "seconds": time.perf_counter() - self.started,
                "extra": {"timings": self.timings, "cpu": self.cpu},
            }
        )

    def _gate(
        self,
        folder: OutputFolder,
        snapshot: LedgerSnapshot,
        opt_outs: set[str] | None,
        signals_info: dict[str, Any] | None,
    ) -> tuple[LineageRecord, Measured]:
        engine, o = self.engine, self.options
        opened = engine.open(self.manifest, folder.tmp / ".work")
        require_source_url(opt_outs, opened)
        categories = check_categories(engine, opened, snapshot)
        accounts = check_accounts(engine, opened, snapshot)
        self._lap("read")
        self._progress("decide", 0.0)
        table = build_table(
            snapshot,
            categories,
            engine.table_subjects(snapshot),
            lock=self.store.lock if snapshot.live else None,
            store=self.store,
            allowed_seqs=False,  # the outputs name the event behind exclusions only
            accounts=accounts,
        )
        ext = mf.OUTPUT_EXTENSION[o.format]
        job = Job(
            snapshot=snapshot,
            table=table,
            opt_outs=opt_outs,
            checks=row_checks(opened.shape, snapshot.known_labels(), categories, accounts),
            folder=folder.tmp,
            files={"allowed": f"allowed{ext}", "excluded": f"excluded{ext}"},
            format=o.format,
            method=o.method,
            progress=lambda fraction: self._progress("gate", fraction),
        )
        self._lap("decision_table")
        self._progress("decide", 1.0)
        try:
            written = engine.decide_and_write(job)
        except BadRowFound:
            raise bad_row(engine, opened, job.checks) from None
        self._lap("gate")
        self._progress("lineage", 0.0)
        measured = engine.measure(job, written)
        record = lineage_record(
            dataset_id=self.dataset_id,
            name=o.dataset_name or o.out.name,
            engine=engine.NAME,
            snapshot=snapshot,
            table=table,
            measured=measured,
            method=o.method,
            source=opened.source,
            outputs={"format": o.format, "files": job.files, "dir": str(o.out.resolve())},
            signals=signals_info,
            created=format_time(self.store.clock()),
        )
        self._lap("measure")
        return record, measured

    def _lap(self, name: str) -> None:
        now, cpu = time.perf_counter(), time.process_time()
        self.timings[name] = round(now - self._last, 3)
        # Process CPU seconds (every thread): on a shared machine, wall time says as much
        # about the neighbours as about the stage.
        self.cpu[name] = round(cpu - self._last_cpu, 3)
        self._last, self._last_cpu = now, cpu

    def _progress(self, stage: str, fraction: float) -> None:
        if self.options.progress is not None:
            lo, hi = STAGES[stage]
            self.options.progress(stage, lo + (hi - lo) * fraction)


def run_gate(store: Store, manifest: Any, *, engine: str = "duckdb", **options: Any) -> GateResult:
    """Run the gate with the named engine (see :meth:`consentry.Store.gate`), between its
    OpenLineage START and COMPLETE (or FAIL) events when those are on."""
    from ..integrations.openlineage import around_gate

    job = GateRun(store, manifest, engine, **options)
    return around_gate(job, job.run)


__all__ = [
    "ENGINES",
    "BadRowFound",
    "GateEngine",
    "GateRun",
    "Job",
    "Located",
    "Opened",
    "OutputFolder",
    "bad_row",
    "check_categories",
    "engine_class",
    "lineage_record",
    "load_signals",
    "require_source_url",
    "run_gate",
]
