"""The gate beyond one machine: the same decisions over a Spark DataFrame.

::

    from consentry.gate.spark import gate_dataframe
    manifest = spark.read.parquet("s3://bucket/manifest/")
    result = gate_dataframe(store, manifest, purpose="ai.training")
    result.allowed.write.parquet("s3://bucket/datasets/run-42/allowed")
    result.lineage.to_dict()

``consentry gate --engine spark`` (``Store.gate(..., engine="spark")``) is a
:class:`~consentry.gate.run.GateRun` with :class:`SparkEngine`: the run is the DuckDB
engine's (options, snapshot, checks, decision table, lineage record, output folder); only
reading, deciding, writing and measuring are Spark's.

The per-subject decision table is computed once on the driver (exactly as for the DuckDB
engine, :mod:`consentry.gate.decisions`) and joined to the manifest: broadcast when it is
small, a shuffle join otherwise. Each item's answer is one ``CASE`` folded over
:data:`~consentry.item_order.ITEM_ORDER`. Items with several subjects under a rule that needs
every party are exploded, joined and reduced to their first denying subject by a key
(``monotonically_increasing_id``) — so the input DataFrame must be deterministic (re-reading
it gives the same rows in the same partitions, as a file scan does; ``cache()`` it
otherwise). Nothing collects the manifest to the driver: only the distinct categories,
aggregates and the subject index come back.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import InvalidInput
from ..ids import new_id
from ..item_order import ITEM_ORDER, ItemStep
from ..times import format_time
from . import manifest as mf
from .checks import NAMES_A_VALUE, Located, Predicate, RowCheck, row_checks
from .decisions import (
    ALLOW_CODES,
    OPT_OUT_CODE,
    PROTECTED_CODE,
    REASONS,
    UNKNOWN_CODE,
    DecisionTable,
    LedgerSnapshot,
    ManifestSubjects,
    build_table,
    take_snapshot,
)
from .manifest import Shape
from .measure import Measured, output_digests
from .options import GateOptions
from .result import MASK64, MULTISET, GateResult, LineageRecord, digest_method, multiset_digest
from .run import (
    BadRowFound,
    GateRun,
    Job,
    Opened,
    bad_row,
    check_accounts,
    check_categories,
    lineage_record,
    load_signals,
    require_source_url,
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


#: Spark's type names for the two kinds of known column (see ``manifest.shape_of``).
SPARK_KINDS = {"string": "string", "array<string>": "list"}


def spark_shape(df: Any, where: str) -> Shape:
    """Check a DataFrame's columns with :func:`consentry.gate.manifest.shape_of`."""
    columns = {f.name: f.dataType.simpleString() for f in df.schema.fields}
    for reserved in columns:
        if reserved.startswith("__"):
            raise InvalidInput(f"column {reserved!r} is reserved", hint="rename it", field=reserved)
    return mf.shape_of(columns, where, SPARK_KINDS.get)


# -- reading ----------------------------------------------------------------------------------


def read_frame(spark: Any, manifest: Any, input_format: str | None = None) -> tuple[Any, str]:
    """A manifest as a Spark DataFrame, and its description: a DataFrame as is; a path,
    directory or glob read by Spark (Arrow IPC and in-memory tables through PyArrow)."""
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
        # FAILFAST: a row of the wrong width fails the read (Spark would pad or cut it);
        # SparkEngine then names its line (manifest.csv_width_error).
        df = (
            spark.read.option("header", True).option("inferSchema", False)
            .option("mode", "FAILFAST").csv(paths)
        )  # fmt: skip
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


# -- checking ---------------------------------------------------------------------------------


def check_column(check: RowCheck) -> Any:
    """A check (:mod:`consentry.gate.checks`) as a Spark condition on a manifest row."""
    from pyspark.sql import functions as F

    col = F.col(check.column)
    p = check.predicate
    if p is Predicate.NULL:
        return col.isNull()
    if p is Predicate.EMPTY:
        return F.size(col) == 0 if check.column in mf.LIST_COLUMNS else col == ""
    if p is Predicate.NULL_ITEM:
        return col.isNotNull() & F.exists(col, lambda x: x.isNull())
    if p is Predicate.EMPTY_ITEM:
        return F.array_contains(col, "")
    values = sorted(check.values)
    if p is Predicate.ITEM_NOT_IN:
        known = F.array(*[F.lit(x) for x in values]) if values else F.array().cast("array<string>")
        return col.isNotNull() & (F.size(F.array_except(col, known)) > 0)
    return col.isNotNull() & ~col.isin(values)


def any_fails(checks: Sequence[RowCheck]) -> Any:
    """True where a row fails one of ``checks``."""
    from pyspark.sql import functions as F

    cond = F.lit(False)
    for check in checks:
        cond = cond | F.coalesce(check_column(check), F.lit(False))
    return cond


# -- deciding ---------------------------------------------------------------------------------

#: Columns the decision adds to a manifest row (the manifest may use none starting ``__``).
ROW_KEY = "__row_key"
GROUP, FIXED, PARTIES_ALL, PROTECTED_LABELS = "__group", "__fixed", "__parties_all", "__protected"
OWNER_CODE, OWNER_SEQ = "__owner_code", "__owner_seq"
OTHER_CODE, OTHER_SUBJECT, OTHER_SEQ = "__other_code", "__other_subject", "__other_seq"
OPTED_OUT_URL = "__opted_out_url"
#: What :class:`DecidedFrame` adds to the manifest's columns.
REASON_CODE, BLOCKING, EVENT_SEQ = "__reason_code", "__blocking_subject", "__event_seq"


@dataclass
class DecidedFrame:
    """A DataFrame with every item's answer, and what it was decided over."""

    frame: Any  # the manifest's columns + REASON_CODE, BLOCKING, EVENT_SEQ
    columns: list[str]
    shape: Shape
    table: DecisionTable
    decisions: Any  # the decision table as a Spark DataFrame
    categories: Any  # the category table as a Spark DataFrame (GROUP, FIXED, ...)


def _signed(table: Any) -> Any:
    """Spark has no unsigned integers: widen uint columns to int32."""
    import pyarrow as pa

    fields = [
        pa.field(f.name, pa.int32()) if pa.types.is_unsigned_integer(f.type) else f
        for f in table.schema
    ]
    return table.cast(pa.schema(fields))


def _category_frame(spark: Any, table: DecisionTable) -> Any:
    from pyspark.sql import functions as F

    cats = spark.createDataFrame(_signed(table.category_table()))
    return cats.select(
        "category", F.col("g").alias(GROUP), F.col("fixed").alias(FIXED),
        F.col("parties_all").alias(PARTIES_ALL), F.col("protected").alias(PROTECTED_LABELS),
    )  # fmt: skip


#: The columns of the account frame (:func:`_grouped`).
ACCOUNT_NAME, ACCOUNT_AT = "__account", "__account_pos"


def _grouped(frame: Any, cats: Any, table: DecisionTable, shape: Shape, how: str) -> Any:
    """``frame`` joined to its category's plan, with GROUP the decision group of the item's
    category in its account context (``DecisionTable.group_of``)."""
    from pyspark.sql import functions as F

    m = frame.join(F.broadcast(cats), on="category", how=how)
    if not shape.account:
        return m
    spark = frame.sparkSession
    accounts = spark.createDataFrame(
        [(a, i) for i, a in enumerate(table.accounts, 1)],
        f"{ACCOUNT_NAME} string, {ACCOUNT_AT} int",
    )
    m = m.join(F.broadcast(accounts), on=F.col("account") == F.col(ACCOUNT_NAME), how="left")
    context = F.coalesce(F.col(ACCOUNT_AT), F.lit(0))
    return m.withColumn(GROUP, F.col(GROUP) * table.contexts + context).drop(
        ACCOUNT_NAME, ACCOUNT_AT
    )


def _others(keyed: Any, cats: Any, d_join: Any, table: DecisionTable, shape: Shape) -> Any:
    """Per multi-subject item whose rule needs every party: its first denying subject (in
    list order, the owner included), that subject's answer and event."""
    from pyspark.sql import functions as F

    multi = _grouped(keyed, cats, table, shape, "inner").where(
        F.col(PARTIES_ALL) & F.col(FIXED).isNull() & (F.size("subject_ids") > 1)
    )
    units = multi.select(ROW_KEY, GROUP, F.posexplode("subject_ids").alias("pos", "s"))
    units = units.join(
        d_join.select(F.col("g").alias("__party_group"), F.col("subject").alias("__party"),
                      "code", "seq"),
        on=(F.col(GROUP) == F.col("__party_group")) & (F.col("s") == F.col("__party")),
        how="left",
    ).withColumn("code", F.coalesce(F.col("code"), F.lit(UNKNOWN_CODE)))  # fmt: skip
    denied = units.where(~F.col("code").isin(list(ALLOW_CODES)))
    return (
        denied.groupBy(ROW_KEY)
        .agg(F.min(F.struct("pos", "code", "s", "seq")).alias("first"))
        .select(
            F.col(ROW_KEY).alias("__other_key"),
            F.col("first.code").alias(OTHER_CODE),
            F.col("first.s").alias(OTHER_SUBJECT),
            F.col("first.seq").alias(OTHER_SEQ),
        )
    )


def _step_answers(shape: Shape, opted_out: Any) -> dict[ItemStep, tuple[Any, Any]]:
    """Each step of ITEM_ORDER as (where it answers, its answer) on a joined row."""
    from pyspark.sql import functions as F

    protected = (
        F.coalesce(F.arrays_overlap(F.col("labels"), F.col(PROTECTED_LABELS)), F.lit(False))
        if shape.labels
        else F.lit(False)
    )
    other, owner = F.col(OTHER_CODE).cast("int"), F.col(OWNER_CODE).cast("int")
    return {
        ItemStep.SOURCE_OPT_OUT: (opted_out, F.lit(OPT_OUT_CODE)),
        ItemStep.PROTECTED_LABEL: (protected, F.lit(PROTECTED_CODE)),
        ItemStep.FIXED_ANSWER: (F.col(FIXED).isNotNull(), F.col(FIXED).cast("int")),
        ItemStep.PARTIES: (other.isNotNull() | owner.isNotNull(), F.coalesce(other, owner)),
        # A party the decision table lacks (the join found no row): never seen.
        ItemStep.UNKNOWN_SUBJECT: (F.lit(True), F.lit(UNKNOWN_CODE)),
    }


def decide(
    df: Any,
    shape: Shape,
    table: DecisionTable,
    opt_outs: set[str] | None,
    checks: Sequence[RowCheck],
    broadcast_rows: int | None = None,
) -> DecidedFrame:
    """Every item of ``df`` with its reason code, blocking subject and deciding event: one
    ``CASE`` folded over ITEM_ORDER (a row failing a check raises :data:`BAD_ROW`)."""
    from pyspark.sql import functions as F

    spark = df.sparkSession
    decisions = spark.createDataFrame(_signed(table.table))
    cats = _category_frame(spark, table)
    limit = BROADCAST_ROWS if broadcast_rows is None else broadcast_rows
    d_join = F.broadcast(decisions) if table.table.num_rows <= limit else decisions
    columns = list(df.columns)
    owner = F.col("subject_ids")[0] if shape.is_list else F.col("subject_id")

    keyed = df.withColumn(ROW_KEY, F.monotonically_increasing_id())
    m = _grouped(keyed, cats, table, shape, "left")
    owners = d_join.select(
        F.col("g").alias("__owner_group"), F.col("subject").alias("__owner"),
        F.col("code").alias(OWNER_CODE), F.col("seq").alias(OWNER_SEQ),
    )  # fmt: skip
    m = m.join(
        owners, on=(F.col(GROUP) == F.col("__owner_group")) & (owner == F.col("__owner")),
        how="left",
    )  # fmt: skip
    if shape.is_list and any(p.parties_all and p.fixed is None for p in table.categories.values()):
        m = m.join(_others(keyed, cats, d_join, table, shape),
                   on=F.col(ROW_KEY) == F.col("__other_key"), how="left")  # fmt: skip
    else:
        m = (
            m.withColumn(OTHER_CODE, F.lit(None).cast("int"))
            .withColumn(OTHER_SUBJECT, F.lit(None).cast("string"))
            .withColumn(OTHER_SEQ, F.lit(None).cast("long"))
        )
    opted_out = F.lit(False)
    if opt_outs is not None:
        urls = spark.createDataFrame([(u,) for u in sorted(opt_outs)], f"{OPTED_OUT_URL} string")
        m = m.join(F.broadcast(urls), on=F.col("source_url") == F.col(OPTED_OUT_URL), how="left")
        opted_out = F.col(OPTED_OUT_URL).isNotNull()

    answers = _step_answers(shape, opted_out)
    code = F.when(any_fails(checks), F.raise_error(F.lit(BAD_ROW)).cast("int"))
    for step in ITEM_ORDER:  # the first step that answers decides
        where, answer = answers[step]
        code = code.when(where, answer)
    before_parties = ITEM_ORDER[: ITEM_ORDER.index(ItemStep.PARTIES)]
    item_level = F.lit(False)
    for step in before_parties:
        item_level = item_level | answers[step][0]
    other_blocks = ~item_level & F.col(OTHER_CODE).isNotNull()
    blocker = (
        F.when(code.isin(list(ALLOW_CODES)), F.lit(None).cast("string"))
        .when(other_blocks, F.col(OTHER_SUBJECT))
        .otherwise(owner)
    )
    seq = (
        F.when(item_level, F.lit(None).cast("long"))
        .when(F.col(OTHER_CODE).isNotNull(), F.col(OTHER_SEQ))
        .otherwise(F.col(OWNER_SEQ))
    )
    frame = m.select(
        *[F.col(c) for c in columns],
        code.alias(REASON_CODE),
        blocker.alias(BLOCKING),
        seq.cast("long").alias(EVENT_SEQ),
    )
    return DecidedFrame(frame, columns, shape, table, decisions, cats)


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
) -> Measured:
    """Counts, multiset digests and subject index (a DataFrame) of allowed rows and
    exclusions."""
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
    return Measured(
        allowed=n_a,
        excluded=n_e,
        excluded_by_reason=dict(sorted(by_reason.items())),
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


def _split(decided: DecidedFrame) -> tuple[Any, Any]:
    from pyspark.sql import functions as F

    reasons = F.array(*[F.lit(r) for r in REASONS])
    frame = decided.frame
    is_allowed = F.col(REASON_CODE).isin(list(ALLOW_CODES))
    allowed = frame.where(is_allowed).select(*[F.col(c) for c in decided.columns])
    excluded = frame.where(~is_allowed).select(
        "item_id",
        F.element_at(reasons, F.col(REASON_CODE) + 1).alias("reason"),
        F.col(BLOCKING).alias("blocking_subject"),
        F.col(EVENT_SEQ).alias("event_seq"),
    )
    return allowed, excluded


def _allowed_by_reason(decided: DecidedFrame, allowed: Any) -> dict[str, int]:
    from pyspark.sql import functions as F

    owner = F.col("subject_ids")[0] if decided.shape.is_list else F.col("subject_id")
    rows = (
        allowed.join(F.broadcast(decided.categories), on="category")
        .join(
            decided.decisions.select(
                F.col("g").alias("__owner_group"), F.col("subject").alias("__owner"), "code"
            ),
            on=(F.col(GROUP) == F.col("__owner_group")) & (owner == F.col("__owner")),
            how="left",
        )
        .groupBy(F.coalesce(F.col("code").cast("int"), F.lit(UNKNOWN_CODE)).alias("c"))
        .count()
        .collect()
    )
    return {REASONS[int(r["c"])]: int(r["count"]) for r in sorted(rows, key=lambda r: r["c"])}


def _nested(dtype: Any) -> bool:
    from pyspark.sql.types import ArrayType, MapType, StructType

    return isinstance(dtype, (ArrayType, MapType, StructType))


def _write(frame: Any, path: Path, fmt: str) -> None:
    from pyspark.sql import functions as F

    if fmt == "csv":  # nested columns as JSON text, as the DuckDB engine writes them
        frame = frame.select(
            *[
                F.to_json(F.col(c)).alias(c) if _nested(frame.schema[c].dataType) else F.col(c)
                for c in frame.columns
            ]
        )
    writer = frame.write.mode("error").format({"jsonl": "json"}.get(fmt, fmt))
    if fmt == "csv":
        writer = writer.option("header", True)
    writer.save(str(path))


# -- the engine -------------------------------------------------------------------------------


class SparkEngine:
    """The Spark engine for a :class:`~consentry.gate.run.GateRun` (see the module
    docstring); also the reading and checking behind :func:`gate_dataframe`."""

    NAME: ClassVar[str] = "spark"
    FORMATS: ClassVar[tuple[str, ...]] = ("parquet", "csv", "jsonl")

    def __init__(
        self,
        *,
        spark: Any = None,
        master: str | None = None,
        broadcast_rows: int | None = None,
        input_format: str | None = None,
    ) -> None:
        self.spark, self.master = spark, master
        self.broadcast_rows, self.input_format = broadcast_rows, input_format
        self.df: Any = None
        self.shape: Shape | None = None
        self.description = ""
        self.files: list[Path] = []
        self.work: Path | None = None
        #: The checks the last ``decide`` applied (to name a bad row it met).
        self.checks: tuple[RowCheck, ...] = ()

    @classmethod
    def from_options(cls, o: GateOptions) -> SparkEngine:
        return cls(
            spark=o.spark, master=o.master, broadcast_rows=o.broadcast_rows,
            input_format=o.input_format,
        )  # fmt: skip

    def open(self, manifest: Any, work: Path | None) -> Opened:
        self.work = work
        self.spark = self.spark or get_spark(self.master)
        df, self.description = read_frame(self.spark, manifest, self.input_format)
        if isinstance(manifest, (str, os.PathLike)) and "://" not in str(manifest):
            self.files, _ = mf.resolve_files(Path(manifest), self.input_format)
        self.df = untyped_to_strings(df)
        self.shape = spark_shape(self.df, self.description)
        source = {"manifest": self.description, "format": self.input_format or "spark",
                  "files": []}  # fmt: skip
        return Opened(self.shape, self.description, source)

    def categories(self) -> list[str | None]:
        rows = self._action(lambda: self.df.select("category").distinct().collect())
        return [r["category"] for r in rows]

    def table_subjects(self, snapshot: LedgerSnapshot) -> ManifestSubjects:
        """The manifest's distinct (category, subject) pairs, collected as Arrow: the
        decision table decides those only (see :class:`ManifestSubjects`)."""
        from pyspark.sql import functions as F

        assert self.shape is not None
        if self.shape.is_list:
            pairs = self.df.select("category", F.explode("subject_ids").alias("subject"))
        else:
            pairs = self.df.select("category", F.col("subject_id").alias("subject"))
        pairs = pairs.where(F.col("subject").isNotNull()).distinct()
        return ManifestSubjects(self._action(pairs.toArrow))

    def accounts(self) -> list[str | None]:
        rows = self._action(lambda: self.df.select("account").distinct().collect())
        return [r["account"] for r in rows]

    def first_bad_row(self, checks: Sequence[RowCheck]) -> tuple[RowCheck, Located] | None:
        """Spark has no row order: the first check that some row fails, and such a row."""
        from pyspark.sql import functions as F

        for check in checks:
            cond = F.coalesce(check_column(check), F.lit(False))
            rows = self._action(lambda c=cond: self.df.where(c).limit(1).collect())
            if rows:
                row = rows[0]
                value = None
                if check.predicate is Predicate.ITEM_NOT_IN:
                    value = next(x for x in row[check.column] if x not in check.values)
                elif check.predicate in NAMES_A_VALUE:
                    value = row[check.column]
                return check, Located(f"manifest {self.description}", row["item_id"], value)
        return None

    def decide(
        self, table: DecisionTable, opt_outs: set[str] | None, checks: Sequence[RowCheck]
    ) -> DecidedFrame:
        assert self.shape is not None, "open() first"
        self.checks = tuple(checks)
        return decide(self.df, self.shape, table, opt_outs, checks, self.broadcast_rows)

    def decide_and_write(self, job: Job) -> DecidedFrame:
        decided = self.decide(job.table, job.opt_outs, job.checks)
        allowed, excluded = _split(decided)
        self._action(lambda: _write(allowed, job.folder / job.files["allowed"], job.format))
        job.progress(0.55)
        self._action(lambda: _write(excluded, job.folder / job.files["excluded"], job.format))
        job.progress(1.0)
        for marker in job.folder.rglob("*"):
            if marker.name.startswith((".", "_")) and marker.is_file():
                marker.unlink()  # Spark's _SUCCESS and .crc files
        return decided

    def measure(self, job: Job, decided: DecidedFrame) -> Measured:
        """Counts, the multiset digests and the subject index from the outputs read back
        with Spark; the sorted digests from the files, as ``gate verify`` computes them."""
        a_df, _ = read_frame(self.spark, job.folder / job.files["allowed"], job.format)
        e_df, _ = read_frame(self.spark, job.folder / job.files["excluded"], job.format)
        m = measure_frames(a_df, e_df, decided.shape, job.parties_all)
        m.allowed_by_reason = _allowed_by_reason(decided, a_df)
        if job.method != MULTISET:
            from .duck import connect

            con = connect(None, None, job.folder / ".work" / "spill")
            try:
                files = output_digests(con, job.folder, job.files, job.format, decided.shape,
                                       job.method)  # fmt: skip
            finally:
                con.close()
            m.input_sha256, m.output_sha256 = files.input_sha256, files.output_sha256
            m.excluded_sha256 = files.excluded_sha256
        m.index = _index_rows(m.index)
        return m

    def close(self) -> None:
        if self.work is not None:
            shutil.rmtree(self.work, ignore_errors=True)

    def _action(self, action: Any) -> Any:
        """Run a Spark action; a bad row it met becomes :class:`BadRowFound`, and a CSV row
        of the wrong width an error naming its line."""
        try:
            return action()
        except Exception as exc:
            text = str(exc)
            if BAD_ROW in text:
                raise BadRowFound from None
            if "MALFORMED_CSV_RECORD" in text or "Malformed CSV record" in text:
                raise self._malformed_csv(text) from None
            raise

    def _malformed_csv(self, text: str) -> InvalidInput:
        for path in self.files:
            problem = mf.csv_width_error(path)
            if problem is not None:
                return problem
        line = next((x for x in text.splitlines() if "Malformed CSV record" in x), text[:300])
        return InvalidInput(
            f"cannot parse manifest {self.description} as CSV: {line.strip()}",
            hint="give every row one field per column (quote a field that holds a comma)",
            field="manifest",
        )


# -- entry points -----------------------------------------------------------------------------


@dataclass
class SparkGateResult:
    """Allowed rows and exclusions as (lazy) Spark DataFrames, and the lineage record."""

    allowed: Any
    excluded: Any
    lineage: LineageRecord
    result: GateResult


def _decided(
    store: Store,
    engine: SparkEngine,
    df: Any,
    purpose: str,
    as_of: Any,
    opt_outs: set[str] | None,
) -> tuple[LedgerSnapshot, Opened, DecidedFrame]:
    """Open ``df``, check it, build the decision table and decide every item (lazily)."""
    snapshot = take_snapshot(store, purpose, as_of)
    opened = engine.open(df, None)
    require_source_url(opt_outs, opened)
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
    return snapshot, opened, engine.decide(table, opt_outs, checks)


def decide_frame(
    store: Store,
    df: Any,
    *,
    purpose: str,
    as_of: Any = None,
    signals: Iterable[str] | None = None,
    broadcast_rows: int | None = None,
) -> DecidedFrame:
    """Every item of ``df`` with its reason code, blocking subject and deciding event."""
    engine = SparkEngine(broadcast_rows=broadcast_rows)
    opt = {str(u) for u in signals} if signals is not None else None
    return _decided(store, engine, df, purpose, as_of, opt)[2]


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
    same rows, so the input must be deterministic (see the module docstring).

    With no files to sort, it computes the multiset digest only (a gate run into a folder,
    ``Store.gate(..., engine="spark")``, computes either)."""
    from .. import lineage

    if digest_method(digest) != MULTISET:
        raise InvalidInput(
            "gate_dataframe computes the multiset digest only",
            hint="pass digest='multiset', or gate into a folder with Store.gate(engine='spark')",
            field="digest",
        )
    started = time.perf_counter()
    opt, signals_info = load_signals(signals)
    engine = SparkEngine(broadcast_rows=broadcast_rows)
    snapshot, opened, decided = _decided(store, engine, df, purpose, as_of, opt)
    allowed, excluded = _split(decided)
    parties_all = [c for c, p in decided.table.categories.items() if p.parties_all]
    try:
        m = engine._action(lambda: measure_frames(allowed, excluded, decided.shape, parties_all))
    except BadRowFound:
        raise bad_row(engine, opened, engine.checks) from None
    m.allowed_by_reason = _allowed_by_reason(decided, allowed)
    record = lineage_record(
        dataset_id=new_id(), name=dataset_name, engine=SparkEngine.NAME, snapshot=snapshot,
        table=decided.table, measured=m, method=MULTISET, source=opened.source, outputs=None,
        signals=signals_info, created=format_time(store.clock()),
    )  # fmt: skip
    lineage.save_dataset(store, record, _index_rows(m.index), idempotency_key=idempotency_key)
    result = GateResult.from_record(record, None)
    result = GateResult(**{**result.__dict__, "seconds": time.perf_counter() - started})
    return SparkGateResult(allowed, excluded, record, result)


def gate_to_directory(store: Store, manifest: Any, **options: Any) -> GateResult:
    """``consentry gate --engine spark``: a :class:`~consentry.gate.run.GateRun` with this
    engine (read the manifest with Spark, write the allowed rows and exclusions as
    directories of part files and ``report.json`` into ``out``, record the lineage)."""
    return GateRun(store, manifest, "spark", **options).run()


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
        F.col(REASON_CODE).isin(list(ALLOW_CODES)).alias("allowed"),
        F.element_at(reasons, F.col(REASON_CODE) + 1).alias("reason"),
        F.col(BLOCKING).alias("blocking_subject"),
        F.col(EVENT_SEQ).alias("event_seq"),
    )


__all__ = [
    "SparkEngine",
    "SparkGateResult",
    "decide_frame",
    "decide_rows",
    "gate_dataframe",
    "gate_to_directory",
    "get_spark",
    "read_frame",
]
