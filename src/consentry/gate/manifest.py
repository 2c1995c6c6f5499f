"""Training manifests in and out: Parquet, CSV, JSON Lines, Arrow IPC; PyArrow, pandas, Polars.

A manifest has one row per item:

``item_id``      string, required
``subject_id``   string — or ``subject_ids``, a list of strings (the first is the owner)
``category``     a data category of the store's policy, required
``labels``       list of strings, optional (sensitivity labels such as ``health``)
``source_url``   string, optional (checked against do-not-train signals)
``account``      string, optional: the account the item belongs to (the meeting host's, the
                 label's), its context for the decision; null or absent: none

Every other column passes through untouched. In CSV, list columns hold JSON arrays
(``["u1","u2"]``); in JSON Lines they are arrays.

This module resolves a manifest into a :class:`Source` the engines query with DuckDB: every
source exposes its own columns plus ``__file_index`` (which file) and ``__row_index`` (row
within it) so that an error can name the first bad row.
"""

from __future__ import annotations

import glob as globmod
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidInput

FORMATS = ("parquet", "csv", "jsonl", "arrow")
EXTENSIONS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".parq": "parquet",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".arrow": "arrow",
    ".feather": "arrow",
    ".ipc": "arrow",
}
OUTPUT_EXTENSION = {"parquet": ".parquet", "csv": ".csv", "jsonl": ".jsonl", "arrow": ".arrow"}
LIST_COLUMNS = ("subject_ids", "labels")
STRING_COLUMNS = ("item_id", "subject_id", "category", "source_url", "account")
KNOWN_COLUMNS = (
    "item_id", "subject_id", "subject_ids", "category", "labels", "source_url", "account",
)  # fmt: skip
#: The file (position in ``Source.files``) and row (within it) of each manifest row, as every
#: source exposes them: an error names the first bad row by them.
FILE_COL, ROW_COL = "__file_index", "__row_index"
RESERVED = (FILE_COL, ROW_COL)


def bad(message: str, *, hint: str | None = None, **details: Any) -> InvalidInput:
    return InvalidInput(message, hint=hint, **details)


@dataclass
class Source:
    """A manifest the engines can query: a SQL table expression and how to name its rows."""

    #: What the caller passed, for the lineage record (paths, or a description).
    description: str
    #: ``parquet`` (files queried in place) or ``arrow`` (an in-memory table).
    kind: str
    #: The files rows come from, in ``FILE_COL`` order (display names).
    files: list[str]
    #: Their format as given (parquet, csv, jsonl, arrow, memory).
    format: str
    #: Parquet files to query (the originals, or CSV/JSON converted into the work directory).
    parquet_files: list[str] = field(default_factory=list)
    table: Any = None  # a pyarrow.Table with FILE_COL and ROW_COL, for kind == "arrow"
    #: (name, DuckDB type) of the manifest's own columns, in order.
    columns: list[tuple[str, str]] = field(default_factory=list)
    rows_estimate: int | None = None
    #: 1 for CSV (a header line precedes row 1), else 0; used to name lines.
    header_lines: int = 0
    #: The name an in-memory table is registered under.
    view: str = field(default_factory=lambda: f"__manifest_{uuid.uuid4().hex[:12]}")
    #: Known columns whose file type says nothing (all null): read as this type instead.
    casts: dict[str, str] = field(default_factory=dict)

    def relation(self) -> str:
        """A SQL table expression with the manifest's columns plus ``FILE_COL`` and ``ROW_COL``."""
        if self.kind == "arrow":
            return self.view
        files = ", ".join(_sql_str(f) for f in self.parquet_files)
        star = "*"
        if self.casts:
            replace = ", ".join(
                f"CAST({_ident(n)} AS {t}) AS {_ident(n)}" for n, t in sorted(self.casts.items())
            )
            star = f"* REPLACE ({replace})"
        return (
            f"(SELECT {star}, file_index AS {FILE_COL}, file_row_number AS {ROW_COL} "
            f"FROM read_parquet([{files}]))"
        )

    def register(self, con: Any) -> None:
        if self.kind == "arrow":
            con.register(self.view, self.table)

    def where(self, file_index: int, row: int) -> str:
        """Human words for one row: ``row 17 of manifest.csv (line 18)``."""
        name = self.files[file_index] if 0 <= file_index < len(self.files) else self.description
        text = f"row {row + 1} of {name}"
        if self.format == "csv":
            text += f" (line {row + 1 + self.header_lines})"
        elif self.format == "jsonl":
            text += f" (line {row + 1})"
        return text

    def column_names(self) -> list[str]:
        return [name for name, _ in self.columns]

    def type_of(self, name: str) -> str | None:
        for col, typ in self.columns:
            if col == name:
                return typ
        return None


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


# -- resolving paths --------------------------------------------------------------------------


def detect_format(path: Path) -> str | None:
    name = path.name.lower()
    for compressed in (".gz", ".zst", ".bz2"):
        if name.endswith(compressed):
            name = name[: -len(compressed)]
    return EXTENSIONS.get(Path(name).suffix)


def resolve_files(manifest: str | Path, input_format: str | None = None) -> tuple[list[Path], str]:
    """The files of a manifest given as a file, a directory or a glob, and their format."""
    text = str(manifest)
    if any(ch in text for ch in "*?["):
        files = [Path(p) for p in sorted(globmod.glob(text, recursive=True)) if Path(p).is_file()]
        if not files:
            raise bad(
                f"no manifest files match {text}",
                hint="check the pattern; quote it so that the shell does not expand it",
                field="manifest",
            )
    else:
        path = Path(text)
        if not path.exists():
            raise bad(
                f"manifest {text} does not exist",
                hint="pass a Parquet, CSV, JSON Lines or Arrow file, a directory or a glob",
                field="manifest",
            )
        if path.is_dir():
            files = sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and not any(part.startswith((".", "_")) for part in p.relative_to(path).parts)
                and (input_format is not None or detect_format(p) is not None)
            )
            if not files:
                raise bad(
                    f"directory {text} holds no manifest files",
                    hint="expected *.parquet, *.csv, *.jsonl or *.arrow files",
                    field="manifest",
                )
        else:
            files = [path]
    if input_format is not None:
        if input_format not in FORMATS:
            raise bad(
                f"unknown input format {input_format!r}",
                hint=f"use one of {', '.join(FORMATS)}",
                field="input_format",
            )
        return files, input_format
    formats = {f: detect_format(f) for f in files}
    unknown = [f for f, fmt in formats.items() if fmt is None]
    if unknown:
        raise bad(
            f"cannot tell the format of {unknown[0]} from its name",
            hint="name it *.parquet, *.csv, *.jsonl or *.arrow, or pass the input format",
            field="manifest",
        )
    found = sorted({fmt for fmt in formats.values() if fmt})
    if len(found) > 1:
        raise bad(
            f"manifest {text} mixes formats ({', '.join(found)})",
            hint="keep one format per manifest",
            field="manifest",
        )
    return files, found[0]


# -- opening sources --------------------------------------------------------------------------


def open_source(
    con: Any, manifest: Any, workdir: Path, *, input_format: str | None = None
) -> Source:
    """Resolve any supported manifest into a :class:`Source` registered on ``con``."""
    if isinstance(manifest, (str, os.PathLike)):
        files, fmt = resolve_files(Path(manifest), input_format)
        if fmt == "parquet":
            source = _parquet_source(files, str(manifest))
        elif fmt == "arrow":
            source = _arrow_source(_read_ipc_files(files), str(manifest), [str(f) for f in files])
            source.format = "arrow"
        else:
            source = _convert_text(con, files, fmt, workdir, str(manifest))
    else:
        table, description = to_arrow(manifest)
        source = _arrow_source([table], description, [description])
    source.register(con)
    source.columns = _describe(con, source)
    untyped = ('"NULL"', "NULL", '"NULL"[]', "NULL[]")
    for name, typ in source.columns:
        if typ in untyped and name in LIST_COLUMNS:
            source.casts[name] = "VARCHAR[]"
        elif typ in untyped and name in STRING_COLUMNS:
            source.casts[name] = "VARCHAR"
    if source.casts:
        source.columns = _describe(con, source)
    return source


def to_arrow(obj: Any) -> tuple[Any, str]:
    """An in-memory manifest as a PyArrow table (PyArrow, pandas, Polars accepted)."""
    import pyarrow as pa

    if isinstance(obj, pa.Table):
        return obj, "pyarrow.Table"
    if isinstance(obj, pa.RecordBatch):
        return pa.Table.from_batches([obj]), "pyarrow.RecordBatch"
    if isinstance(obj, pa.RecordBatchReader):
        return obj.read_all(), "pyarrow.RecordBatchReader"
    module = type(obj).__module__.split(".")[0]
    if module == "pandas":
        try:
            return pa.Table.from_pandas(obj, preserve_index=False), "pandas.DataFrame"
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise bad(
                f"cannot read the pandas DataFrame as a manifest: {exc}",
                hint="list columns must hold lists of strings; ids must be strings",
            ) from None
    if module == "polars":
        if type(obj).__name__ == "LazyFrame":
            obj = obj.collect()
        return obj.to_arrow(), "polars.DataFrame"
    raise bad(
        f"cannot use a {type(obj).__name__} as a manifest",
        hint="pass a path, a glob, or a PyArrow table, pandas or Polars DataFrame",
        field="manifest",
    )


def _parquet_source(files: list[Path], description: str) -> Source:
    import pyarrow.parquet as pq

    rows = 0
    first: tuple[Path, list[tuple[str, str]]] | None = None
    for f in files:
        try:
            meta = pq.read_metadata(f)
            rows += meta.num_rows
            fields = [(field.name, str(field.type)) for field in meta.schema.to_arrow_schema()]
        except Exception as exc:
            raise bad(
                f"cannot read {f} as Parquet: {_short(exc)}",
                hint="is it a complete Parquet file? re-export it, or name it after its format",
                field="manifest",
                file=str(f),
            ) from None
        if first is None:
            first = (f, fields)
        elif sorted(fields) != sorted(first[1]):
            theirs, ours = dict(first[1]), dict(fields)
            diff = sorted(set(theirs.items()) ^ set(ours.items()))
            raise bad(
                f"{f} does not have the columns and types of {first[0]} "
                f"(differs in {', '.join(sorted({n for n, _ in diff}))})",
                hint="every file of a manifest needs the same schema",
                field="manifest",
                file=str(f),
            )
    names = [str(f) for f in files]
    return Source(
        description=description,
        kind="parquet",
        files=names,
        format="parquet",
        parquet_files=names,
        rows_estimate=rows,
    )


def _read_ipc_files(files: list[Path]) -> list[Any]:
    import pyarrow as pa
    import pyarrow.ipc as ipc

    tables = []
    for f in files:
        try:
            source = pa.memory_map(str(f), "r")
            try:
                tables.append(ipc.open_file(source).read_all())
            except pa.ArrowInvalid:
                source = pa.memory_map(str(f), "r")
                tables.append(ipc.open_stream(source).read_all())
        except Exception as exc:
            raise bad(
                f"cannot read {f} as an Arrow IPC file: {_short(exc)}",
                hint="write it with pyarrow.ipc (file or stream format) or Feather v2",
                field="manifest",
                file=str(f),
            ) from None
    return tables


def _arrow_source(tables: Sequence[Any], description: str, files: list[str]) -> Source:
    import numpy as np
    import pyarrow as pa

    parts = []
    first_schema = None
    for index, table in enumerate(tables):
        table = _untyped_to_strings(table)
        for name in RESERVED:
            if name in table.column_names:
                raise bad(f"column {name!r} is reserved", hint="rename it", field=name)
        if first_schema is None:
            first_schema = table.schema
        elif not table.schema.equals(first_schema):
            raise bad(
                f"{files[index]} has different columns or types than {files[0]}",
                hint="every file of a manifest needs the same schema",
                field="manifest",
            )
        n = table.num_rows
        table = table.append_column(FILE_COL, pa.array(np.full(n, index, dtype=np.int64)))
        table = table.append_column(ROW_COL, pa.array(np.arange(n, dtype=np.int64)))
        parts.append(table)
    combined = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
    return Source(
        description=description,
        kind="arrow",
        files=files,
        format="memory" if description.startswith(("pyarrow", "pandas", "polars")) else "arrow",
        table=combined,
        rows_estimate=combined.num_rows,
    )


def _untyped_to_strings(table: Any) -> Any:
    """Known columns whose type says nothing (all null, or lists that are all empty) become
    strings and lists of strings."""
    import pyarrow as pa

    for name in (*STRING_COLUMNS, *LIST_COLUMNS):
        if name not in table.column_names:
            continue
        typ = table.schema.field(name).type
        if pa.types.is_null(typ):
            target = pa.list_(pa.string()) if name in LIST_COLUMNS else pa.string()
        elif pa.types.is_list(typ) and pa.types.is_null(typ.value_type):
            target = pa.list_(pa.string())
        else:
            continue
        i = table.column_names.index(name)
        table = table.set_column(i, name, table.column(name).cast(target))
    return table


def _convert_text(con: Any, files: list[Path], fmt: str, workdir: Path, description: str) -> Source:
    """Convert CSV / JSON Lines files to Parquet in ``workdir`` (one per file, rows in order),
    with the manifest's own columns typed and list columns parsed."""
    converted = []
    workdir.mkdir(parents=True, exist_ok=True)
    for index, f in enumerate(files):
        target = workdir / f"input-{index:05d}.parquet"
        reader = _text_reader(con, f, fmt)
        try:
            cols = con.execute(f"DESCRIBE SELECT * FROM {reader}").fetchall()
        except Exception as exc:
            raise _parse_error(f, fmt, exc) from None
        select = []
        for name, typ, *_ in cols:
            if name in RESERVED:
                raise bad(f"column {name!r} is reserved", hint="rename it", field=name)
            select.append(_normalise_text_column(name, str(typ), fmt))
        try:
            con.execute("SET preserve_insertion_order=true")
            con.execute(
                f"COPY (SELECT {', '.join(select)} FROM {reader}) TO {_sql_str(str(target))} "
                "(FORMAT parquet)"
            )
        except Exception as exc:
            problem = (csv_width_error(f) if fmt == "csv" else None) or _first_bad_text_row(
                con, f, fmt, [c[0] for c in cols]
            )
            if problem is not None:
                raise problem from None
            raise _parse_error(f, fmt, exc) from None
        finally:
            con.execute("SET preserve_insertion_order=false")
        converted.append(str(target))
    source = _parquet_source([Path(p) for p in converted], description)
    source.files = [str(f) for f in files]
    source.format = fmt
    source.header_lines = 1 if fmt == "csv" else 0
    return source


def _text_reader(con: Any, path: Path, fmt: str) -> str:
    if fmt == "csv":
        try:
            header = con.execute(
                f"DESCRIBE SELECT * FROM read_csv({_sql_str(str(path))}, header=true)"
            ).fetchall()
        except Exception as exc:
            raise _parse_error(path, fmt, exc) from None
        names = [row[0] for row in header]
        if names != csv_header(path):
            # DuckDB guessed another header: a longer row, say, taken for it.
            problem = csv_width_error(path)
            if problem is not None:
                raise problem
        types = {n: "VARCHAR" for n in names if n in KNOWN_COLUMNS}
        spec = ", ".join(f"{_sql_str(k)}: {_sql_str(v)}" for k, v in types.items())
        return f"read_csv({_sql_str(str(path))}, header=true, types={{{spec}}})"
    return f"read_json({_sql_str(str(path))}, format='newline_delimited')"


def _normalise_text_column(name: str, typ: str, fmt: str) -> str:
    q = _ident(name)
    if name in LIST_COLUMNS:
        if fmt == "csv" and typ == "VARCHAR":
            return (
                f"CASE WHEN {q} IS NULL OR trim({q}) = '' THEN NULL "
                f"ELSE from_json({q}, '[\"VARCHAR\"]') END AS {q}"
            )
        if typ in ("JSON[]", "NULL[]", '"NULL"[]'):
            return f"list_transform({q}, lambda x: json_extract_string(x, '$')) AS {q}"
        if typ in ("NULL", '"NULL"', "JSON"):
            return f"CAST(NULL AS VARCHAR[]) AS {q}"
    if name in STRING_COLUMNS and typ in ("NULL", '"NULL"'):
        return f"CAST({q} AS VARCHAR) AS {q}"
    return q


def _first_bad_text_row(con: Any, path: Path, fmt: str, names: list[str]) -> InvalidInput | None:
    """The first row whose list cell is not a JSON array of strings (CSV)."""
    if fmt != "csv":
        return None
    checks = [n for n in names if n in LIST_COLUMNS]
    if not checks:
        return None
    reader = _text_reader(con, path, fmt)
    conds = " OR ".join(
        f"({_ident(n)} IS NOT NULL AND trim({_ident(n)}) <> '' AND "
        f"(NOT json_valid({_ident(n)}) OR json_type({_ident(n)}) <> 'ARRAY'))"
        for n in checks
    )
    cols = ", ".join(_ident(n) for n in checks)
    ((threads,),) = con.execute("SELECT current_setting('threads')").fetchall()
    try:
        con.execute("SET threads=1")
        rows = con.execute(
            f"SELECT rn, {cols} FROM (SELECT row_number() OVER () AS rn, * FROM {reader}) "
            f"WHERE {conds} ORDER BY rn LIMIT 1"
        ).fetchall()
    except Exception:
        return None
    finally:
        con.execute(f"SET threads={int(threads)}")
    if not rows:
        return None
    found = rows[0]
    row = int(found[0])
    for name, value in zip(checks, found[1:], strict=True):
        if value is not None and str(value).strip():
            return bad(
                f"{path}: column {name!r} in row {row} (line {row + 1}) is not a JSON array of "
                f"strings: {str(value)[:80]!r}",
                hint='write lists in CSV as JSON arrays, e.g. ["u1","u2"]',
                field=name,
                file=str(path),
                row=row,
            )
    return None


def _parse_error(path: Path, fmt: str, exc: Exception) -> InvalidInput:
    if fmt == "csv":
        problem = csv_width_error(path)
        if problem is not None:
            return problem
    label = {"csv": "CSV", "jsonl": "JSON Lines"}.get(fmt, fmt)
    return bad(
        f"cannot parse {path} as {label}: {_short(exc)}",
        hint="check the file's format, or name it after its format",
        field="manifest",
        file=str(path),
    )


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    for prefix in ("Invalid Input Error: ", "IO Error: ", "Conversion Error: "):
        first = first.removeprefix(prefix)
    return first[:300]


def _describe(con: Any, source: Source) -> list[tuple[str, str]]:
    try:
        rows = con.execute(f"DESCRIBE SELECT * FROM {source.relation()}").fetchall()
    except Exception as exc:
        raise bad(
            f"cannot read manifest {source.description}: {_short(exc)}",
            hint="every file of a manifest needs the same columns and types",
            field="manifest",
        ) from None
    return [(str(r[0]), str(r[1])) for r in rows if r[0] not in RESERVED]


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


ident = _ident
sql_str = _sql_str


# -- validating the shape ---------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """Which of the known columns a manifest has."""

    subjects: str  # "subject_id" or "subject_ids"
    labels: bool
    source_url: bool
    #: The manifest has an ``account`` column: the account each item belongs to (its
    #: context for the decision; null: none, the most protective answer).
    account: bool = False

    @property
    def is_list(self) -> bool:
        return self.subjects == "subject_ids"

    def owner(self, alias: str = "m") -> str:
        return f"{alias}.subject_ids[1]" if self.is_list else f"{alias}.subject_id"


#: What a column must hold, in words, by kind.
_KIND_WORDS = {"string": "a string", "list": "a list of strings"}
#: DuckDB's type names for the two kinds of known column.
DUCKDB_KINDS = {"VARCHAR": "string", "VARCHAR[]": "list"}


def shape_of(columns: Mapping[str, str], where: str, kind: Callable[[str], str | None]) -> Shape:
    """Required columns present and typed right, or one error naming the column.

    ``columns`` maps each column to its type in the engine's words (DuckDB's ``VARCHAR[]``,
    Spark's ``array<string>``); ``kind`` says which of those is a ``string`` or a ``list``
    (of strings). Both engines check a manifest with this one function."""

    def need(name: str, wanted: str) -> None:
        typ = columns.get(name)
        if typ is None:
            raise bad(
                f"manifest {where} has no {name!r} column",
                hint=f"columns found: {', '.join(columns) or 'none'}",
                field=name,
                file=where,
            )
        if kind(typ) != wanted:
            what = _KIND_WORDS[wanted]
            raise bad(
                f"column {name!r} of manifest {where} is {typ}, not {what}",
                hint=f"store {name} as {what}",
                field=name,
                file=where,
            )

    need("item_id", "string")
    need("category", "string")
    has_one, has_list = "subject_id" in columns, "subject_ids" in columns
    if has_one and has_list:
        raise bad(
            f"manifest {where} has both 'subject_id' and 'subject_ids'",
            hint="keep one: subject_id for one subject per item, subject_ids for several",
            field="subject_ids",
            file=where,
        )
    if not has_one and not has_list:
        raise bad(
            f"manifest {where} has no 'subject_id' or 'subject_ids' column",
            hint=f"columns found: {', '.join(columns) or 'none'}",
            field="subject_id",
            file=where,
        )
    need("subject_ids" if has_list else "subject_id", "list" if has_list else "string")
    for optional, wanted in (("labels", "list"), ("source_url", "string"), ("account", "string")):
        if optional in columns:
            need(optional, wanted)
    return Shape(
        "subject_ids" if has_list else "subject_id",
        "labels" in columns,
        "source_url" in columns,
        "account" in columns,
    )


def check_shape(source: Source) -> Shape:
    """A DuckDB source's shape (:func:`shape_of`)."""
    return shape_of(dict(source.columns), source.description, DUCKDB_KINDS.get)


# -- CSV rows of the wrong width ----------------------------------------------------------------


def _open_text(path: Path) -> Any:
    name = path.name.lower()
    if name.endswith(".gz"):
        import gzip

        return gzip.open(path, "rt", newline="", encoding="utf-8", errors="replace")
    if name.endswith(".bz2"):
        import bz2

        return bz2.open(path, "rt", newline="", encoding="utf-8", errors="replace")
    if name.endswith(".zst"):
        return None  # no reader in the standard library: the engine's own error stands
    return open(path, newline="", encoding="utf-8", errors="replace")


def csv_header(path: Path) -> list[str] | None:
    """The first record of a CSV file (its header), or None when it cannot be read here."""
    import csv

    f = _open_text(path)
    if f is None:
        return None
    with f:
        return next(csv.reader(f), None)


def csv_width_error(path: Path) -> InvalidInput | None:
    """The first CSV record with more or fewer fields than the header, as an error naming
    its line and both counts; None when every record has the header's width (or the file
    cannot be read here). Both engines call it when a CSV manifest does not parse: a reader
    left to guess would take a longer row for the header and report columns that are not."""
    import csv

    f = _open_text(path)
    if f is None:
        return None
    with f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            return None
        row = 0
        for record in reader:
            if not record:  # a blank line
                continue
            row += 1
            if len(record) != len(header):
                return bad(
                    f"{path}: line {reader.line_num} (row {row}) has {len(record)} fields, "
                    f"but the header has {len(header)}",
                    hint="give every row one field per column (quote a field that holds "
                    'a comma, e.g. "a, b"; leave a field empty, not out)',
                    field="manifest",
                    file=str(path),
                    row=row,
                )
    return None


# -- writing ----------------------------------------------------------------------------------


def output_format(fmt: str | None, default: str = "parquet") -> str:
    fmt = (fmt or default).lower()
    if fmt not in FORMATS:
        raise bad(
            f"unknown output format {fmt!r}",
            hint=f"use one of {', '.join(FORMATS)}",
            field="format",
        )
    return fmt


def copy_options(fmt: str) -> str:
    if fmt == "parquet":
        return "(FORMAT parquet, COMPRESSION snappy)"
    if fmt == "csv":
        return "(FORMAT csv, HEADER true)"
    if fmt == "jsonl":
        return "(FORMAT json)"
    raise ValueError(fmt)


def select_for_output(columns: Sequence[tuple[str, str]], fmt: str, alias: str = "m") -> str:
    """The select list that writes a manifest's columns in ``fmt`` (CSV: nested as JSON)."""
    out = []
    for name, typ in columns:
        q = f"{alias}.{_ident(name)}"
        if fmt == "csv" and _nested(typ):
            out.append(f"to_json({q}) AS {_ident(name)}")
        else:
            out.append(q)
    return ", ".join(out)


def _nested(typ: str) -> bool:
    return typ.endswith("]") or typ.startswith(("STRUCT", "MAP", "UNION"))


def write_query(con: Any, query: str, path: Path, fmt: str, columns: Any = None) -> None:
    """Write the result of ``query`` to ``path`` in ``fmt`` (Arrow IPC through PyArrow)."""
    if fmt != "arrow":
        con.execute(f"COPY ({query}) TO {_sql_str(str(path))} {copy_options(fmt)}").fetchall()
        return
    import pyarrow as pa

    batches = con.sql(query).to_arrow_reader(1 << 17)
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, batches.schema) as writer:
        for batch in batches:
            writer.write_batch(batch)


def write_ipc_stream(
    con: Any, spool: Path, path: Path, fmt: str, columns: Sequence[tuple[str, str]]
) -> None:
    """Write an Arrow IPC stream file (the gate's spool) to ``path`` as CSV or JSON Lines,
    nested columns as JSON text in CSV, exactly as :func:`write_query` would."""
    import pyarrow as pa

    name = f"__spool_{uuid.uuid4().hex[:12]}"
    with pa.memory_map(str(spool), "r") as source:
        con.register(name, pa.ipc.open_stream(source))
        try:
            write_query(con, f"SELECT {select_for_output(columns, fmt)} FROM {name} m", path, fmt)
        finally:
            con.unregister(name)


def read_manifest(manifest: Any, *, input_format: str | None = None) -> Any:
    """A manifest (any supported file or in-memory form) as a PyArrow table, shape-checked."""
    import duckdb

    with tempfile.TemporaryDirectory(prefix="consentry-read-") as tmp:
        con = duckdb.connect()
        try:
            source = open_source(con, manifest, Path(tmp), input_format=input_format)
            check_shape(source)
            cols = ", ".join(_ident(n) for n in source.column_names())
            return con.sql(
                f"SELECT {cols} FROM {source.relation()} ORDER BY {FILE_COL}, {ROW_COL}"
            ).to_arrow_table()
        finally:
            con.close()


def write_manifest(
    table: Any, path: str | Path, *, format: str | None = None, overwrite: bool = False
) -> Path:
    """Write a manifest (any in-memory form) to ``path``: Parquet by default, or the format its
    extension names (CSV lists as JSON arrays). Written to a temporary name, then renamed."""
    import duckdb

    path = Path(path)
    fmt = output_format(format or detect_format(path) or "parquet")
    if path.exists() and not overwrite:
        raise bad(f"{path} exists", hint="pass overwrite=True to replace it", field="path")
    arrow, _ = to_arrow(table)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    con = duckdb.connect()
    try:
        con.register("__w", arrow)
        cols = [
            (str(r[0]), str(r[1])) for r in con.execute("DESCRIBE SELECT * FROM __w").fetchall()
        ]
        write_query(con, f"SELECT {select_for_output(cols, fmt)} FROM __w m", tmp, fmt)
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
    finally:
        con.close()
    return path


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink(missing_ok=True)
