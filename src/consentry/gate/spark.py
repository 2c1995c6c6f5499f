"""The gate beyond one machine: the same decisions over a Spark DataFrame.

::

    from consentry.gate.spark import gate_dataframe
    manifest = spark.read.parquet("s3://bucket/manifest/")
    result = gate_dataframe(store, manifest, purpose="ai.training")
    result.allowed.write.parquet("s3://bucket/datasets/run-42/allowed")
    result.lineage.to_dict()

The per-subject decision table is computed once on the driver with ``Plan.decide`` (exactly as
the DuckDB engine does, :mod:`consentry.gate.decisions`) and joined to the manifest: broadcast
when it is small, a shuffle join otherwise. Items with several subjects under a rule that needs
every party are exploded, joined and reduced to their first denying subject by a key
(``monotonically_increasing_id``) — so the input DataFrame must be deterministic (re-reading it
gives the same rows in the same partitions, as a file scan does; ``cache()`` it otherwise).
Nothing collects the manifest to the driver: only the distinct categories, aggregates and the
subject index come back.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInput, UnknownName
from ..ids import new_id
from ..times import format_time
from . import manifest as mf
from .decisions import (
    ALLOW_CODES,
    OPT_OUT_CODE,
    PROTECTED_CODE,
    REASONS,
    UNKNOWN_CODE,
    DecisionTable,
    Snapshot,
    build_table,
    take_snapshot,
)
from .manifest import Shape
from .result import (
    MASK64,
    MULTISET,
    RECORD_VERSION,
    REPORT_NAME,
    GateResult,
    LineageRecord,
    digest_method,
    multiset_digest,
)

if TYPE_CHECKING:
    from ..store import Store

#: Decision tables up to this many rows are broadcast to every executor.
BROADCAST_ROWS = int(os.environ.get("CONSENTRY_SPARK_BROADCAST_ROWS", "2000000"))
BAD_ROW = "consentry: bad manifest row"


def get_spark(master: str | None = None, app_name: str = "consentry-gate") -> Any:
    """The active SparkSession; else one for ``SPARK_REMOTE`` (Spark Connect); else, under
    ``spark-submit``, the cluster it names; else ``master`` (default
    ``$CONSENTRY_SPARK_MASTER`` or ``local[*]``)."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    builder = SparkSession.builder.appName(app_name)
    remote = os.environ.get("SPARK_REMOTE")
    if remote and master is None:
        return builder.remote(remote).getOrCreate()
    if master is not None:
        builder = builder.master(master)
    elif "PYSPARK_GATEWAY_PORT" not in os.environ:  # not launched by spark-submit
        builder = builder.master(os.environ.get("CONSENTRY_SPARK_MASTER", "local[*]"))
    return (
        builder.config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )


# -- shape ------------------------------------------------------------------------------------


def untyped_to_strings(df: Any) -> Any:
    """Known columns whose type says nothing (all null, or lists that are all empty) become
    strings and lists of strings."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import ArrayType, NullType

    for f in df.schema.fields:
        t = f.dataType
        if f.name in mf.LIST_COLUMNS and (
            isinstance(t, NullType)
            or (isinstance(t, ArrayType) and isinstance(t.elementType, NullType))
        ):
            df = df.withColumn(f.name, F.col(f.name).cast("array<string>"))
        elif f.name in mf.STRING_COLUMNS and isinstance(t, NullType):
            df = df.withColumn(f.name, F.col(f.name).cast("string"))
    return df


def spark_shape(df: Any, where: str) -> Shape:
    """Check a DataFrame's columns like :func:`consentry.gate.manifest.check_shape`."""
    from pyspark.sql.types import ArrayType, StringType

    fields = {f.name: f.dataType for f in df.schema.fields}
    for reserved in fields:
        if reserved.startswith("__"):
            raise InvalidInput(f"column {reserved!r} is reserved", hint="rename it", field=reserved)

    def is_str(t: Any) -> bool:
        return isinstance(t, StringType)

    def is_list(t: Any) -> bool:
        return isinstance(t, ArrayType) and isinstance(t.elementType, StringType)

    def need(name: str, ok: Any, what: str) -> None:
        if name not in fields:
            raise InvalidInput(
                f"manifest {where} has no {name!r} column",
                hint=f"columns found: {', '.join(fields) or 'none'}",
                field=name,
            )
        if not ok(fields[name]):
            raise InvalidInput(
                f"column {name!r} of manifest {where} is {fields[name].simpleString()}, not {what}",
                hint=f"store {name} as {what}",
                field=name,
            )

    need("item_id", is_str, "a string")
    need("category", is_str, "a string")
    if "subject_id" in fields and "subject_ids" in fields:
        raise InvalidInput(
            f"manifest {where} has both 'subject_id' and 'subject_ids'",
            hint="keep one: subject_id for one subject per item, subject_ids for several",
            field="subject_ids",
        )
    if "subject_ids" in fields:
        need("subject_ids", is_list, "a list of strings")
    else:
        need("subject_id", is_str, "a string")
    if "labels" in fields:
        need("labels", is_list, "a list of strings")
    if "source_url" in fields:
        need("source_url", is_str, "a string")
    return Shape(
        "subject_ids" if "subject_ids" in fields else "subject_id",
        "labels" in fields,
        "source_url" in fields,
    )


# -- reading ----------------------------------------------------------------------------------


def read_manifest(spark: Any, manifest: Any, input_format: str | None = None) -> tuple[Any, str]:
    """A manifest as a Spark DataFrame: a DataFrame as is; a path, directory or glob read by
    Spark (Arrow IPC and in-memory tables through PyArrow)."""
    from pyspark.sql import DataFrame

    if isinstance(manifest, DataFrame) or (
        type(manifest).__name__ == "DataFrame" and hasattr(manifest, "sparkSession")
    ):
        return manifest, "spark.DataFrame"
    if not isinstance(manifest, (str, os.PathLike)):
        table, description = mf.to_arrow(manifest)
        return spark.createDataFrame(table), description
    text = str(manifest)
    if "://" in text and not text.startswith("file://"):
        fmt = input_format or mf.detect_format(Path(text.rstrip("/"))) or "parquet"
        paths = [text]
    else:
        files, fmt = mf.resolve_files(Path(text), input_format)
        paths = [str(f) for f in files]
    if fmt == "parquet":
        df = spark.read.parquet(*paths)
    elif fmt == "jsonl":
        df = spark.read.json(paths)
    elif fmt == "csv":
        df = spark.read.option("header", True).option("inferSchema", False).csv(paths)
        df = _parse_csv_lists(df)
    else:  # arrow IPC: Spark has no reader; small files only
        from .manifest import _arrow_source, _read_ipc_files

        table = _arrow_source(_read_ipc_files([Path(p) for p in paths]), text, paths).table
        df = spark.createDataFrame(table.drop([mf.FILE_COL, mf.ROW_COL]))
    return df, text


def _parse_csv_lists(df: Any) -> Any:
    from pyspark.sql import functions as F
    from pyspark.sql.types import ArrayType, StringType

    for name in mf.LIST_COLUMNS:
        if name in df.columns:
            col = F.col(name)
            parsed = F.from_json(col, ArrayType(StringType()))
            df = df.withColumn(
                name,
                F.when(col.isNull() | (F.trim(col) == ""), F.lit(None))
                .when(parsed.isNull(), F.raise_error(F.concat(F.lit(f"{BAD_ROW}: {name} "), col)))
                .otherwise(parsed),
            )
    return df


# -- deciding ---------------------------------------------------------------------------------


@dataclass
class Decided:
    """A DataFrame with every item's answer, and what it was decided over."""

    frame: Any  # original columns + __code, __blocker, __seq
    columns: list[str]
    shape: Shape
    snapshot: Snapshot
    table: DecisionTable
    decisions: Any  # the decision table as a Spark DataFrame
    categories: Any  # the category table as a Spark DataFrame
    description: str


def _bad_condition(shape: Shape, known_labels: frozenset[str] | None) -> tuple[Any, list[Any]]:
    """(any-bad condition, [(condition, column, problem)]) on a manifest DataFrame."""
    from pyspark.sql import functions as F

    checks: list[Any] = [
        (F.col("item_id").isNull(), "item_id", "'item_id' is empty (null)"),
        (F.col("item_id") == "", "item_id", "'item_id' is an empty string"),
    ]
    if shape.is_list:
        s = F.col("subject_ids")
        checks += [
            (s.isNull(), "subject_ids", "'subject_ids' is empty (null)"),
            (F.size(s) == 0, "subject_ids", "'subject_ids' is an empty list"),
            (
                F.exists(s, lambda x: x.isNull()),
                "subject_ids",
                "'subject_ids' holds a null subject",
            ),
            (F.array_contains(s, ""), "subject_ids", "'subject_ids' holds an empty subject id"),
        ]
    else:
        s = F.col("subject_id")
        checks += [
            (s.isNull(), "subject_id", "'subject_id' is empty (null)"),
            (s == "", "subject_id", "'subject_id' is an empty string"),
        ]
    if shape.labels:
        lab = F.col("labels")
        checks.append(
            (
                lab.isNotNull() & F.exists(lab, lambda x: x.isNull()),
                "labels",
                "'labels' holds a null label",
            )
        )
        if known_labels is not None:
            known = F.array(*[F.lit(x) for x in sorted(known_labels)])
            checks.append(
                (
                    lab.isNotNull() & (F.size(F.array_except(lab, known)) > 0),
                    "labels",
                    "unknown label",
                )
            )
    cond = None
    for c, _, _ in checks:
        c = F.coalesce(c, F.lit(False))
        cond = c if cond is None else (cond | c)
    return cond, checks


def decide_frame(
    store: Store,
    df: Any,
    *,
    purpose: str,
    as_of: Any = None,
    signals: Iterable[str] | None = None,
    description: str = "spark.DataFrame",
    broadcast_rows: int | None = None,
) -> Decided:
    """Every item of ``df`` with its reason code, blocking subject and deciding event."""
    from pyspark.sql import functions as F

    spark = df.sparkSession
    df = untyped_to_strings(df)
    shape = spark_shape(df, description)
    snapshot = take_snapshot(store, purpose, as_of)
    opt = {str(u) for u in signals} if signals is not None else None
    if opt is not None and not shape.source_url:
        raise InvalidInput(
            f"manifest {description} has no 'source_url' column to check signals on",
            hint="add source_url, or leave out --signals",
            field="source_url",
        )
    categories = _check_categories(df, snapshot, description)
    table = build_table(
        snapshot, categories, None, lock=store.lock if snapshot.live else None, store=store
    )
    decisions = spark.createDataFrame(_signed(table.table))
    cats = spark.createDataFrame(_signed(table.category_table()))
    limit = BROADCAST_ROWS if broadcast_rows is None else broadcast_rows
    d_join = F.broadcast(decisions) if table.table.num_rows <= limit else decisions
    columns = list(df.columns)
    owner = F.col("subject_ids")[0] if shape.is_list else F.col("subject_id")
    bad, _ = _bad_condition(shape, snapshot.known_labels())

    keyed = df.withColumn("__k", F.monotonically_increasing_id())
    m = keyed.join(F.broadcast(cats.alias("c")), on="category", how="left")
    d1 = d_join.select(
        F.col("g").alias("__g1"), F.col("subject").alias("__s1"),
        F.col("code").alias("__dc"), F.col("seq").alias("__dq"),
    )  # fmt: skip
    m = m.join(d1, on=(F.col("g") == F.col("__g1")) & (owner == F.col("__s1")), how="left")
    has_x = shape.is_list and any(
        p.parties_all and p.fixed is None for p in table.categories.values()
    )
    if has_x:
        multi = keyed.join(F.broadcast(cats), on="category").where(
            F.col("parties_all") & F.col("fixed").isNull() & (F.size("subject_ids") > 1)
        )
        units = multi.select("__k", "g", F.posexplode("subject_ids").alias("pos", "s"))
        units = units.join(
            d_join.select(F.col("g").alias("__ug"), F.col("subject").alias("__us"), "code", "seq"),
            on=(F.col("g") == F.col("__ug")) & (F.col("s") == F.col("__us")),
            how="left",
        ).withColumn("code", F.coalesce(F.col("code"), F.lit(UNKNOWN_CODE)))
        denied = units.where(~F.col("code").isin(list(ALLOW_CODES)))
        x = (
            denied.groupBy("__k")
            .agg(F.min(F.struct("pos", "code", "s", "seq")).alias("first"))
            .select(
                F.col("__k").alias("__xk"),
                F.col("first.code").alias("__xc"),
                F.col("first.s").alias("__xb"),
                F.col("first.seq").alias("__xs"),
            )
        )
        m = m.join(x, on=F.col("__k") == F.col("__xk"), how="left")
    else:
        m = (
            m.withColumn("__xc", F.lit(None).cast("int"))
            .withColumn("__xb", F.lit(None).cast("string"))
            .withColumn("__xs", F.lit(None).cast("long"))
        )
    if opt is not None:
        oo_df = spark.createDataFrame([(u,) for u in sorted(opt)], "url string")
        m = m.join(F.broadcast(oo_df), on=F.col("source_url") == F.col("url"), how="left")
        oo = F.col("url").isNotNull()
    else:
        oo = F.lit(False)
    pl = (
        F.coalesce(F.arrays_overlap(F.col("labels"), F.col("protected")), F.lit(False))
        if shape.labels
        else F.lit(False)
    )
    item_level = oo | pl | F.col("fixed").isNotNull()
    code = (
        F.when(bad | F.col("g").isNull(), F.raise_error(F.lit(BAD_ROW)).cast("int"))
        .when(oo, F.lit(OPT_OUT_CODE))
        .when(pl, F.lit(PROTECTED_CODE))
        .when(F.col("fixed").isNotNull(), F.col("fixed").cast("int"))
        .when(F.col("__xc").isNotNull(), F.col("__xc").cast("int"))
        .otherwise(F.coalesce(F.col("__dc").cast("int"), F.lit(UNKNOWN_CODE)))
    )
    allowed = code.isin(list(ALLOW_CODES))
    blocker = (
        F.when(allowed, F.lit(None).cast("string"))
        .when(~item_level & F.col("__xc").isNotNull(), F.col("__xb"))
        .otherwise(owner)
    )
    seq = (
        F.when(item_level, F.lit(None).cast("long"))
        .when(F.col("__xc").isNotNull(), F.col("__xs"))
        .otherwise(F.col("__dq"))
    )
    frame = m.select(
        *[F.col(c) for c in columns],
        code.alias("__code"),
        blocker.alias("__blocker"),
        seq.cast("long").alias("__seq"),
    )
    return Decided(frame, columns, shape, snapshot, table, decisions, cats, description)


def _signed(table: Any) -> Any:
    """Spark has no unsigned integers: widen uint columns to int32."""
    import pyarrow as pa

    fields = [
        pa.field(f.name, pa.int32()) if pa.types.is_unsigned_integer(f.type) else f
        for f in table.schema
    ]
    return table.cast(pa.schema(fields))


def _check_categories(df: Any, snapshot: Snapshot, where: str) -> list[str]:
    from pyspark.sql import functions as F

    found = []
    for row in df.groupBy("category").count().collect():
        category = row["category"]
        if category is None:
            item = df.where(F.col("category").isNull()).select("item_id").first()
            raise InvalidInput(
                f"manifest {where}: 'category' is empty (item {item[0]!r})",
                hint="every item needs a data category, e.g. content.audio",
                field="category",
            )
        try:
            snapshot.check_category(category)
        except UnknownName as exc:
            item = df.where(F.col("category") == category).select("item_id").first()
            raise InvalidInput(
                f"manifest {where}: unknown category {category!r} in column 'category' "
                f"(item {item[0]!r})",
                hint=exc.hint,
                field="category",
                value=category,
            ) from None
        found.append(category)
    return sorted(found)


def _diagnose(decided: Decided, df: Any) -> InvalidInput:
    """Name one bad row (Spark has no row order: the error names the item)."""
    from pyspark.sql import functions as F

    from ..errors import unknown

    _, checks = _bad_condition(decided.shape, decided.snapshot.known_labels())
    for cond, column, problem in checks:
        row = df.where(F.coalesce(cond, F.lit(False))).limit(1).collect()
        if not row:
            continue
        item = row[0]["item_id"]
        label = f" (item {item!r})" if item else ""
        if problem == "unknown label":
            known = decided.snapshot.known_labels() or frozenset()
            bad = [x for x in (row[0]["labels"] or []) if x not in known]
            exc = unknown("label", str(bad[0]), known)
            return InvalidInput(
                f"manifest {decided.description}{label}: unknown label {bad[0]!r} in column "
                "'labels'",
                hint=exc.hint,
                field="labels",
                value=bad[0],
            )
        return InvalidInput(
            f"manifest {decided.description}{label}: {problem}", field=column, value=item
        )
    return InvalidInput(f"manifest {decided.description} has a bad row", field="manifest")


def _run_action(decided: Decided, df: Any, action: Any) -> Any:
    try:
        return action()
    except Exception as exc:
        if BAD_ROW in str(exc):
            raise _diagnose(decided, df) from None
        raise


# -- measuring --------------------------------------------------------------------------------


def v_column(col: Any) -> Any:
    """``v(x)`` of the multiset digest as a Spark decimal (see :mod:`consentry.gate.result`):
    the first 8 bytes of MD5 as a little-endian unsigned integer."""
    from pyspark.sql import functions as F

    h = F.md5(col.cast("string"))
    little = F.concat(*[F.substring(h, 15 - 2 * i, 2) for i in range(8)])
    return F.conv(little, 16, 10).cast("decimal(20,0)")


def _sum_int(value: Any) -> int:
    if value is None:
        return 0
    return int(Decimal(value))


@dataclass
class SparkMeasured:
    by_code: dict[int, int]
    allowed: int
    excluded: int
    excluded_by_reason: dict[str, int]
    allowed_by_reason: dict[str, int]
    input_sha256: str
    output_sha256: str
    excluded_sha256: str
    subjects: int
    subjects_sha256: str
    index: Any  # DataFrame (subject, items, categories)


def subject_index_frame(allowed: Any, shape: Shape, parties_all: Iterable[str]) -> Any:
    """The subject index of the allowed rows, as :func:`consentry.gate.measure.subject_index`
    builds it (same JSON text, so the digests agree)."""
    from pyspark.sql import functions as F

    every = sorted(set(parties_all))
    if shape.is_list:
        units = allowed.select(F.posexplode("subject_ids").alias("pos", "subject"), "category")
    else:
        units = allowed.select(
            F.lit(0).alias("pos"), F.col("subject_id").alias("subject"), "category"
        )
    decided = (F.col("pos") == 0) | (F.col("category").isin(every) if every else F.lit(False))
    per = units.groupBy("subject", "category").agg(
        F.count(F.lit(1)).alias("items"),
        F.sum(F.when(decided, 1).otherwise(0)).alias("decided"),
    )
    grouped = per.groupBy("subject").agg(
        F.sum("items").cast("long").alias("items"),
        F.sort_array(F.collect_list(F.struct("category", "items", "decided"))).alias("cats"),
    )
    text = F.concat(
        F.lit("{"),
        F.array_join(
            F.transform(
                "cats",
                lambda c: F.concat(
                    F.lit('"'),
                    c["category"],
                    F.lit('":['),
                    c["items"].cast("string"),
                    F.lit(","),
                    c["decided"].cast("string"),
                    F.lit("]"),
                ),
            ),
            ",",
        ),
        F.lit("}"),
    )
    return grouped.select("subject", "items", text.alias("categories"))


def measure_frames(
    allowed: Any,
    excluded: Any,
    shape: Shape,
    parties_all: Iterable[str],
    *,
    by_code: dict[int, int] | None = None,
    sums: tuple[int, int] | None = None,
) -> SparkMeasured:
    """Counts, digests and subject index of allowed rows and exclusions (output frames)."""
    from pyspark.sql import functions as F

    a = allowed.agg(F.count(F.lit(1)).alias("n"), F.sum(v_column(F.col("item_id"))).alias("s"))
    e = excluded.groupBy("reason").agg(
        F.count(F.lit(1)).alias("n"), F.sum(v_column(F.col("item_id"))).alias("s")
    )
    (ra,) = a.collect()
    n_a, s_a = int(ra["n"]), _sum_int(ra["s"])
    by_reason: dict[str, int] = {}
    n_e = s_e = 0
    for r in e.collect():
        by_reason[str(r["reason"])] = int(r["n"])
        n_e += int(r["n"])
        s_e += _sum_int(r["s"])
    index = subject_index_frame(allowed, shape, parties_all)
    line = F.concat_ws("\t", "subject", F.col("items").cast("string"), "categories")
    (ri,) = index.agg(F.count(F.lit(1)).alias("n"), F.sum(v_column(line)).alias("s")).collect()
    return SparkMeasured(
        by_code=by_code or {},
        allowed=n_a,
        excluded=n_e,
        excluded_by_reason=dict(sorted(by_reason.items())),
        allowed_by_reason={},
        input_sha256=multiset_digest(n_a + n_e, (s_a + s_e) & MASK64),
        output_sha256=multiset_digest(n_a, s_a),
        excluded_sha256=multiset_digest(n_e, s_e),
        subjects=int(ri["n"]),
        subjects_sha256=multiset_digest(int(ri["n"]), _sum_int(ri["s"])),
        index=index,
    )


def _index_rows(index: Any) -> Iterator[tuple[str, int, str]]:
    for row in index.toLocalIterator():
        yield (row["subject"], int(row["items"]), row["categories"])


# -- running ----------------------------------------------------------------------------------


@dataclass
class SparkGateResult:
    """Allowed rows and exclusions as (lazy) Spark DataFrames, and the lineage record."""

    allowed: Any
    excluded: Any
    lineage: LineageRecord
    result: GateResult


def _split(decided: Decided) -> tuple[Any, Any]:
    from pyspark.sql import functions as F

    reasons = F.array(*[F.lit(r) for r in REASONS])
    frame = decided.frame
    is_allowed = F.col("__code").isin(list(ALLOW_CODES))
    allowed = frame.where(is_allowed).select(*[F.col(c) for c in decided.columns])
    excluded = frame.where(~is_allowed).select(
        "item_id",
        F.element_at(reasons, F.col("__code") + 1).alias("reason"),
        F.col("__blocker").alias("blocking_subject"),
        F.col("__seq").alias("event_seq"),
    )
    return allowed, excluded


def _allowed_by_reason(decided: Decided, allowed: Any) -> dict[str, int]:
    from pyspark.sql import functions as F

    owner = F.col("subject_ids")[0] if decided.shape.is_list else F.col("subject_id")
    rows = (
        allowed.join(F.broadcast(decided.categories), on="category")
        .join(
            decided.decisions.select(
                F.col("g").alias("__g1"), F.col("subject").alias("__s1"), "code"
            ),
            on=(F.col("g") == F.col("__g1")) & (owner == F.col("__s1")),
            how="left",
        )
        .groupBy(F.coalesce(F.col("code").cast("int"), F.lit(UNKNOWN_CODE)).alias("c"))
        .count()
        .collect()
    )
    return {REASONS[int(r["c"])]: int(r["count"]) for r in sorted(rows, key=lambda r: r["c"])}


def _record(
    dataset_id: str,
    name: str,
    decided: Decided,
    m: SparkMeasured,
    outputs: dict[str, Any] | None,
    signals_info: dict[str, Any] | None,
    created: str,
    source: dict[str, Any],
) -> LineageRecord:
    snap = decided.snapshot
    return LineageRecord.make(
        {
            "version": RECORD_VERSION,
            "dataset_id": dataset_id,
            "name": name,
            "purpose": snap.purpose,
            "as_of": snap.as_of,
            "as_of_us": snap.now_us,
            "policy_version": snap.policy_version,
            "ledger": {"seq": snap.ledger_seq, "hash": snap.ledger_hash},
            "engine": "spark",
            "source": source,
            "signals": signals_info,
            "categories": {c: p.to_dict() for c, p in sorted(decided.table.categories.items())},
            "counts": {
                "input": m.allowed + m.excluded,
                "allowed": m.allowed,
                "excluded": m.excluded,
                "allowed_by_reason": m.allowed_by_reason,
                "excluded_by_reason": m.excluded_by_reason,
            },
            "digests": {
                "method": MULTISET,
                "input_sha256": m.input_sha256,
                "output_sha256": m.output_sha256,
                "excluded_sha256": m.excluded_sha256,
            },
            "subjects": {"count": m.subjects, "index_sha256": m.subjects_sha256},
            "outputs": outputs,
            "created_at": created,
        }
    )


def _signals(signals: Any) -> tuple[set[str] | None, dict[str, Any] | None]:
    if signals is None:
        return None, None
    if isinstance(signals, (str, os.PathLike)):
        from ..signals import load_opt_outs

        if not Path(signals).exists():
            raise InvalidInput(f"signals file {signals} does not exist", field="signals")
        urls = set(load_opt_outs(Path(signals)))
        return urls, {"file": str(signals), "opted_out_urls": len(urls)}
    urls = {str(u) for u in signals}
    return urls, {"file": None, "opted_out_urls": len(urls)}


def gate_dataframe(
    store: Store,
    df: Any,
    *,
    purpose: str,
    as_of: Any = None,
    dataset_name: str = "dataset",
    signals: Any = None,
    digest: str = "multiset",
    idempotency_key: str | None = None,
    broadcast_rows: int | None = None,
) -> SparkGateResult:
    """The gate over a Spark DataFrame: allowed rows and exclusions as DataFrames, and the
    lineage record (kept in the store). The frames are lazy: writing them recomputes the
    same rows, so the input must be deterministic (see the module docstring)."""
    from .. import lineage

    if digest_method(digest) != MULTISET:
        raise InvalidInput("the Spark engine computes the multiset digest only", field="digest")
    started = time.perf_counter()
    opt, signals_info = _signals(signals)
    decided = decide_frame(
        store, df, purpose=purpose, as_of=as_of, signals=opt, broadcast_rows=broadcast_rows
    )
    allowed, excluded = _split(decided)
    parties_all = [c for c, p in decided.table.categories.items() if p.parties_all]
    m = _run_action(
        decided, df, lambda: measure_frames(allowed, excluded, decided.shape, parties_all)
    )
    m.allowed_by_reason = _allowed_by_reason(decided, allowed)
    dataset_id = new_id()
    source = {"manifest": decided.description, "format": "spark", "files": []}
    record = _record(
        dataset_id, dataset_name, decided, m, None, signals_info,
        format_time(store.clock()), source,
    )  # fmt: skip
    lineage.save_dataset(store, record, _index_rows(m.index), idempotency_key=idempotency_key)
    result = GateResult.from_record(record, None)
    result = GateResult(**{**result.__dict__, "seconds": time.perf_counter() - started})
    return SparkGateResult(allowed, excluded, record, result)


def gate_to_directory(
    store: Store,
    manifest: Any,
    *,
    purpose: str,
    out: Path,
    as_of: Any = None,
    dataset_name: str | None = None,
    format: str = "parquet",
    overwrite: bool = False,
    signals: Any = None,
    digest: str = "multiset",
    input_format: str | None = None,
    idempotency_key: str | None = None,
    progress: Any = None,
    spark: Any = None,
    master: str | None = None,
    broadcast_rows: int | None = None,
    **_ignored: Any,
) -> GateResult:
    """``consentry gate --engine spark``: read the manifest with Spark, write the allowed rows
    and exclusions (one directory of part files each) and ``report.json`` into ``out``
    (written under a temporary name and renamed), and record the lineage."""
    import json

    from .. import lineage

    started = time.perf_counter()
    fmt = mf.output_format(format)
    if fmt == "arrow":
        raise InvalidInput("the Spark engine writes parquet, csv or jsonl", field="format")
    if digest_method(digest) != MULTISET:
        raise InvalidInput("the Spark engine computes the multiset digest only", field="digest")
    out = Path(out)
    if idempotency_key is not None:
        found = lineage.dataset_by_key(store, idempotency_key)
        if found is not None:
            return GateResult.from_record(found.record, None, replayed=True)
    if out.exists() and not overwrite:
        raise InvalidInput(
            f"output directory {out} already exists",
            hint="pass --overwrite (overwrite=True) to replace it, or choose another --out",
            field="out",
        )

    def step(stage: str, fraction: float) -> None:
        if progress is not None:
            progress(stage, fraction)

    step("read", 0.0)
    spark = spark or get_spark(master)
    opt, signals_info = _signals(signals)
    df, description = read_manifest(spark, manifest, input_format)
    decided = decide_frame(
        store, df, purpose=purpose, as_of=as_of, signals=opt, description=description,
        broadcast_rows=broadcast_rows,
    )  # fmt: skip
    step("decide", 0.15)
    allowed, excluded = _split(decided)
    dataset_id = new_id()
    tmp = out.parent / f".{out.name}.tmp-{dataset_id}"
    created: list[Path] = []
    parent = out.parent
    while not parent.exists():
        created.append(parent)
        parent = parent.parent
    for d in reversed(created):
        d.mkdir()
    ext = mf.OUTPUT_EXTENSION[fmt]
    files = {"allowed": f"allowed{ext}", "excluded": f"excluded{ext}"}
    try:
        writer_fmt = {"parquet": "parquet", "csv": "csv", "jsonl": "json"}[fmt]

        def write(frame: Any, path: Path) -> None:
            if fmt == "csv":
                from pyspark.sql import functions as F

                frame = frame.select(
                    *[
                        F.to_json(F.col(c)).alias(c)
                        if _nested(frame.schema[c].dataType)
                        else F.col(c)
                        for c in frame.columns
                    ]
                )
            w = frame.write.mode("error").format(writer_fmt)
            if fmt == "csv":
                w = w.option("header", True)
            w.save(str(path))

        _run_action(decided, df, lambda: write(allowed, tmp / files["allowed"]))
        step("allowed", 0.55)
        _run_action(decided, df, lambda: write(excluded, tmp / files["excluded"]))
        step("excluded", 0.8)
        a_df, _ = read_manifest(spark, tmp / files["allowed"], fmt)
        e_df, _ = read_manifest(spark, tmp / files["excluded"], fmt)
        parties_all = [c for c, p in decided.table.categories.items() if p.parties_all]
        m = measure_frames(a_df, e_df, decided.shape, parties_all)
        m.allowed_by_reason = _allowed_by_reason(decided, a_df)
        source = {"manifest": description, "format": input_format or "spark", "files": []}
        record = _record(
            dataset_id, dataset_name or out.name, decided, m,
            {"format": fmt, "files": files, "dir": str(out.resolve())}, signals_info,
            format_time(store.clock()), source,
        )  # fmt: skip
        for marker in tmp.rglob("*"):
            if marker.name.startswith((".", "_")) and marker.is_file():
                marker.unlink()  # Spark's _SUCCESS and .crc files
        (tmp / REPORT_NAME).write_text(
            json.dumps(record.to_dict(), indent=2, sort_keys=True) + "\n"
        )
        old = out.parent / f".{out.name}.old-{dataset_id}"
        moved = replaced = False

        def move() -> None:
            nonlocal moved, replaced
            if out.exists():
                os.rename(out, old)
                replaced = True
            os.rename(tmp, out)
            moved = True

        try:
            lineage.save_dataset(
                store, record, _index_rows(m.index), idempotency_key=idempotency_key,
                before_commit=move,
            )  # fmt: skip
        except BaseException:
            if moved:
                os.rename(out, tmp)
            if replaced:
                os.rename(old, out)
            raise
        if replaced:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for d in created:  # deepest first
            with contextlib.suppress(OSError):
                d.rmdir()
        raise
    step("lineage", 1.0)
    result = GateResult.from_record(record, out)
    return GateResult(**{**result.__dict__, "seconds": time.perf_counter() - started})


def _nested(dtype: Any) -> bool:
    from pyspark.sql.types import ArrayType, MapType, StructType

    return isinstance(dtype, (ArrayType, MapType, StructType))


def decide_rows(
    store: Store,
    df: Any,
    *,
    purpose: str,
    as_of: Any = None,
    signals: Iterable[str] | None = None,
    broadcast_rows: int | None = None,
) -> Any:
    """Every item's answer as a Spark DataFrame
    (``item_id, allowed, reason, blocking_subject, event_seq``), like
    :func:`consentry.gate.duck.decide_rows`."""
    from pyspark.sql import functions as F

    decided = decide_frame(
        store, df, purpose=purpose, as_of=as_of, signals=signals, broadcast_rows=broadcast_rows
    )
    reasons = F.array(*[F.lit(r) for r in REASONS])
    return decided.frame.select(
        "item_id",
        F.col("__code").isin(list(ALLOW_CODES)).alias("allowed"),
        F.element_at(reasons, F.col("__code") + 1).alias("reason"),
        F.col("__blocker").alias("blocking_subject"),
        F.col("__seq").alias("event_seq"),
    )


__all__ = [
    "SparkGateResult",
    "decide_frame",
    "decide_rows",
    "gate_dataframe",
    "gate_to_directory",
    "get_spark",
    "read_manifest",
]
