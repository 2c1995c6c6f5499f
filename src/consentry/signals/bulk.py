"""Bulk checking: URLs in, a table of decisions out, and the opt-outs the gate excludes.

The output table has one row per distinct URL with the columns of :data:`COLUMNS`. Its format
follows the file extension: ``.parquet`` (or ``.pq``), ``.csv``, or ``.jsonl``/``.ndjson``.
``consentry gate --signals FILE`` reads it back with :func:`load_opt_outs` and excludes the
items whose source URL was denied, with reason ``source_opt_out``.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import InvalidInput
from .fetch import SignalChecker, run
from .model import DENY, UNSET, UrlDecision

COLUMNS: tuple[str, ...] = (
    "url",
    "host",
    "decision",
    "signal",
    "evidence",
    "purpose",
    "user_agent",
    "error",
    "checked_at",
)

#: The exclusion reason the gate records for a source that opted out.
REASON = "source_opt_out"


def _format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    raise InvalidInput(
        f"cannot tell the format of {path.name!r} from its extension",
        hint="use .parquet, .csv or .jsonl",
    )


def read_column(path: str | Path, column: str) -> list[str]:
    """The non-empty values of ``column`` in a manifest (Parquet, CSV or JSONL)."""
    path = Path(path)
    fmt = _format(path)
    if not path.exists():
        raise InvalidInput(f"no such file: {path}")
    values: list[Any]
    if fmt == "parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        if column not in table.column_names:
            raise _no_column(column, table.column_names, path)
        values = table.column(column).to_pylist()
    elif fmt == "csv":
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if column not in (reader.fieldnames or []):
                raise _no_column(column, reader.fieldnames or [], path)
            values = [row[column] for row in reader]
    else:
        values = []
        with path.open(encoding="utf-8") as fh:
            for line_no, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError as exc:
                    raise InvalidInput(f"{path}:{line_no}: not JSON ({exc})") from exc
                if not isinstance(row, dict):
                    raise InvalidInput(f"{path}:{line_no}: each line must be a JSON object")
                if column not in row:
                    raise _no_column(column, list(row), path)
                values.append(row[column])
    return [str(v).strip() for v in values if v is not None and str(v).strip()]


def _no_column(column: str, known: Iterable[str], path: Path) -> InvalidInput:
    known = list(known)
    return InvalidInput(
        f"{path.name} has no column {column!r}",
        hint=f"its columns are: {', '.join(known[:20])}; choose one with --column",
    )


def read_url_list(path: str | Path) -> list[str]:
    """URLs from a text file, one per line (blank lines and ``#`` comments are skipped)."""
    path = Path(path)
    if not path.exists():
        raise InvalidInput(f"no such file: {path}")
    out = []
    for line in path.read_text("utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out


def unique(urls: Iterable[str]) -> list[str]:
    """``urls`` without repeats, first occurrence order kept."""
    return list(dict.fromkeys(urls))


def rows(decisions: Iterable[UrlDecision], checked_at: str) -> Iterator[dict[str, str]]:
    for d in decisions:
        yield {
            "url": d.url,
            "host": urlsplit(d.url).netloc.lower(),
            "decision": d.decision,
            "signal": d.signal,
            "evidence": d.evidence,
            "purpose": d.purpose,
            "user_agent": d.user_agent,
            "error": d.error,
            "checked_at": checked_at,
        }


def write_table(path: str | Path, decisions: Iterable[UrlDecision], *, checked_at: str = "") -> int:
    """Write decisions as a table (format by extension); returns the number of rows."""
    path = Path(path)
    fmt = _format(path)
    stamp = checked_at or datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    data = list(rows(decisions, stamp))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table({c: pa.array([r[c] for r in data], pa.string()) for c in COLUMNS})
        pq.write_table(table, tmp)
    elif fmt == "csv":
        with tmp.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(COLUMNS))
            writer.writeheader()
            writer.writerows(data)
    else:
        with tmp.open("w", encoding="utf-8") as fh:
            for r in data:
                fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    tmp.replace(path)  # no partial table left behind
    return len(data)


def read_table(path: str | Path) -> list[dict[str, str]]:
    """Rows of a table written by :func:`write_table`."""
    path = Path(path)
    fmt = _format(path)
    if not path.exists():
        raise InvalidInput(f"no such signals table: {path}")
    if fmt == "parquet":
        import pyarrow.parquet as pq

        out: list[dict[str, str]] = pq.read_table(path).to_pylist()
    elif fmt == "csv":
        with path.open(newline="", encoding="utf-8") as fh:
            out = list(csv.DictReader(fh))
    else:
        with path.open(encoding="utf-8") as fh:
            out = [json.loads(line) for line in fh if line.strip()]
    if out and not {"url", "decision"} <= set(out[0]):
        raise InvalidInput(
            f"{path.name} is not a signals table",
            hint="write one with: consentry signals check … --out FILE",
        )
    return out


def load_opt_outs(path: str | Path, *, include_unchecked: bool = False) -> set[str]:
    """URLs whose decision is ``deny`` in a signals table.

    With ``include_unchecked``, URLs that could not be checked (decision ``unset`` with an
    error) are included too, for a gate that wants to fail closed.
    """
    out = set()
    for row in read_table(path):
        decision = row.get("decision")
        if decision == DENY or (include_unchecked and decision == UNSET and row.get("error")):
            out.add(str(row["url"]))
    return out


@dataclass(slots=True)
class BulkReport:
    """What a bulk check did."""

    urls: int
    hosts: int
    counts: dict[str, int]
    requests: dict[str, int]
    seconds: float
    out: str = ""
    decisions: list[UrlDecision] = field(default_factory=list)

    @property
    def urls_per_second(self) -> float:
        return self.urls / self.seconds if self.seconds > 0 else 0.0


async def abulk_check(
    urls: Iterable[str],
    *,
    user_agent: str,
    purpose: str,
    out: str | Path | None = None,
    **options: Any,
) -> BulkReport:
    """Check ``urls`` (deduplicated) and write the table to ``out`` when given."""
    if out is not None:
        _format(Path(out))  # a bad extension fails before any fetching
    todo = unique(urls)
    start = time.perf_counter()
    async with SignalChecker(user_agent=user_agent, purpose=purpose, **options) as checker:
        decisions = await checker.check_many(todo)
        requests = dict(checker.requests)
    seconds = time.perf_counter() - start
    counts: dict[str, int] = {}
    for d in decisions:
        counts[d.decision] = counts.get(d.decision, 0) + 1
    report = BulkReport(
        urls=len(todo),
        hosts=len({urlsplit(u).netloc.lower() for u in todo}),
        counts=counts,
        requests=requests,
        seconds=seconds,
        decisions=decisions,
    )
    if out is not None:
        write_table(out, decisions)
        report.out = str(out)
    return report


def bulk_check(
    urls: Iterable[str],
    *,
    user_agent: str,
    purpose: str,
    out: str | Path | None = None,
    **options: Any,
) -> BulkReport:
    """Synchronous :func:`abulk_check` (on uvloop's event loop when it is installed)."""
    return run(abulk_check(urls, user_agent=user_agent, purpose=purpose, out=out, **options))
