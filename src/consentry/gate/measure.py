"""Measure a gate's outputs: counts, item-id digests and the subject index.

The gate measures what it wrote, and ``gate verify`` measures it again: both run this code
over the output files, so a lineage record always describes the files as they are.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidInput
from .manifest import Shape, Source, sql_str
from .result import MASK64, MULTISET, SORTED, multiset_digest

#: SQL for ``v(x)`` of the multiset digest (see :mod:`consentry.gate.result`).
V_SQL = "(md5_number({0}) & 18446744073709551615::UHUGEINT)::UBIGINT"


def v_sql(expr: str) -> str:
    return V_SQL.format(expr)


@dataclass
class Measured:
    allowed: int
    excluded: int
    excluded_by_reason: dict[str, int]
    input_sha256: str
    output_sha256: str
    excluded_sha256: str
    subjects: int = 0
    subjects_sha256: str = ""
    #: The subject index when it was asked for: a pyarrow.Table (subject, items, categories),
    #: or (Spark) an iterator of such rows, as ``lineage.save_dataset`` takes it.
    index: Any = None
    #: Allowed items per allow reason (a gate run knows it; ``gate verify`` does not).
    allowed_by_reason: dict[str, int] = field(default_factory=dict)

    @property
    def input_items(self) -> int:
        return self.allowed + self.excluded


def index_line_sql(alias: str = "") -> str:
    """The text each subject-index row is digested as: subject TAB items TAB categories."""
    p = f"{alias}." if alias else ""
    return f"({p}subject || chr(9) || {p}items::VARCHAR || chr(9) || {p}categories)"


def measure(
    con: Any,
    allowed: Source,
    excluded: Source,
    shape: Shape,
    parties_all: Iterable[str],
    method: str,
    *,
    with_index: bool = True,
) -> Measured:
    a_rel, e_rel = allowed.relation(), excluded.relation()
    by_reason: dict[str, int] = {}
    if method == MULTISET:
        ((n_a, s_a),) = con.execute(
            f"SELECT count(*), coalesce(sum({v_sql('item_id')}), 0) FROM {a_rel}"
        ).fetchall()
        n_e = s_e = 0
        for reason, n, s in con.execute(
            f"SELECT reason, count(*), coalesce(sum({v_sql('item_id')}), 0) FROM {e_rel} "
            "GROUP BY reason ORDER BY reason"
        ).fetchall():
            by_reason[str(reason)] = int(n)
            n_e += int(n)
            s_e += int(s)
        output = multiset_digest(int(n_a), int(s_a))
        excl = multiset_digest(n_e, s_e)
        inp = multiset_digest(int(n_a) + n_e, (int(s_a) + s_e) & MASK64)
        n_allowed = int(n_a)
    elif method == SORTED:
        for reason, n in con.execute(
            f"SELECT reason, count(*) FROM {e_rel} GROUP BY reason ORDER BY reason"
        ).fetchall():
            by_reason[str(reason)] = int(n)
        n_e = sum(by_reason.values())
        for rel in (a_rel, e_rel):
            ((bad,),) = con.execute(
                f"SELECT count(*) FROM {rel} WHERE contains(item_id, chr(10))"
            ).fetchall()
            if bad:
                raise InvalidInput(
                    "an item id holds a newline: the sorted digest cannot name it",
                    hint="use the multiset digest",
                    field="item_id",
                )
        n_allowed, inp, output, excl = sorted_digests(con, a_rel, e_rel)
    else:  # pragma: no cover - digest_method() checked it
        raise ValueError(method)
    result = Measured(n_allowed, n_e, by_reason, inp, output, excl)
    if with_index:
        result.index = subject_index(con, allowed, shape, parties_all)
        result.subjects, result.subjects_sha256 = index_digest(con)
    return result


def subject_index(con: Any, allowed: Source, shape: Shape, parties_all: Iterable[str]) -> Any:
    """Create temp table ``__index`` (subject, items, categories) from the allowed rows and
    return it as a PyArrow table. ``categories`` is JSON: {category: [items, decided]}, where
    ``decided`` counts the items whose decision this subject's answer took part in (the
    owner's always; every subject's where the rule needs all parties)."""
    every = "[" + ", ".join(sql_str(c) for c in sorted(set(parties_all))) + "]::VARCHAR[]"
    if shape.is_list:
        units = (
            "SELECT unnest(subject_ids) AS subject, generate_subscripts(subject_ids, 1) AS pos, "
            f"category FROM {allowed.relation()}"
        )
    else:
        units = f"SELECT subject_id AS subject, 1 AS pos, category FROM {allowed.relation()}"
    return index_from_units(
        con,
        f"""
        SELECT subject, category, count(*) AS items,
               count(*) FILTER (WHERE pos = 1 OR list_contains({every}, category)) AS decided
        FROM ({units}) GROUP BY subject, category
        """,
    )


def index_from_units(con: Any, units: str) -> Any:
    """Create temp table ``__index`` from ``units`` (subject, category, items, decided; a
    (subject, category) may come in several rows, which are added up) and return it as a
    PyArrow table in subject order. The text of ``categories`` is what the digest covers:
    ``gate verify`` rebuilds it from the files with :func:`subject_index`, the gate from the
    counts it kept while writing them, and the two must agree byte for byte."""
    con.execute("DROP TABLE IF EXISTS __index").fetchall()
    con.execute(
        f"""
        CREATE TEMP TABLE __index AS
        SELECT subject, sum(items)::BIGINT AS items,
               '{{' || string_agg('"' || category || '":[' || items::VARCHAR || ','
                                  || decided::VARCHAR || ']', ',' ORDER BY category) || '}}'
                 AS categories
        FROM (
            SELECT subject, category, sum(items)::BIGINT AS items,
                   sum(decided)::BIGINT AS decided
            FROM ({units}) GROUP BY subject, category
        ) GROUP BY subject
        """
    )
    # In subject order: the store inserts it into an index keyed by subject, fastest in order.
    return con.sql(
        "SELECT subject, items, categories FROM __index ORDER BY subject"
    ).to_arrow_table()


def index_digest(con: Any, relation: str = "__index") -> tuple[int, str]:
    """(rows, multiset digest) of a subject index (temp table ``__index`` by default)."""
    ((n, s),) = con.execute(
        f"SELECT count(*), coalesce(sum({v_sql(index_line_sql())}), 0) FROM {relation}"
    ).fetchall()
    return int(n), multiset_digest(int(n), int(s))


def sorted_digests(con: Any, allowed: str, excluded: str) -> tuple[int, str, str, str]:
    """(allowed rows, input, output and excluded ``sorted-sha256-v1`` digests) of two
    relations of item ids, from one sort of all of them: the input is their union, and the
    sorted run, split by where each id came from, is the sorted run of each."""
    import pyarrow.compute as pc

    hashes = {"input": hashlib.sha256(), "output": hashlib.sha256(), "excluded": hashlib.sha256()}
    n_allowed = 0
    reader = con.sql(
        f"SELECT item_id, true AS a FROM {allowed} UNION ALL "
        f"SELECT item_id, false AS a FROM {excluded} ORDER BY item_id"  # bytewise: binary collation
    ).to_arrow_reader(1 << 20)
    for batch in reader:
        kept = batch.column(1)
        n_allowed += pc.sum(kept).as_py() or 0
        lines = _lines(batch.column(0))  # "id\n" per row; the outputs' runs are subsets of it
        hashes["input"].update(_data(lines))
        hashes["output"].update(_data(lines.filter(kept)))
        hashes["excluded"].update(_data(lines.filter(pc.invert(kept))))
    return (
        int(n_allowed),
        hashes["input"].hexdigest(),
        hashes["output"].hexdigest(),
        hashes["excluded"].hexdigest(),
    )


def _lines(ids: Any) -> Any:
    """Each id followed by a newline, as an Arrow string array (no Python strings)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not (pa.types.is_string(ids.type) or pa.types.is_large_string(ids.type)):
        ids = ids.cast(pa.large_string())  # a string view, say: one data buffer is needed
    return pc.binary_join_element_wise(ids, pa.scalar("\n", ids.type), pa.scalar("", ids.type))


def _data(lines: Any) -> memoryview | bytes:
    """The bytes of an Arrow string array's values, back to back."""
    import pyarrow as pa

    if len(lines) == 0:
        return b""
    width = np.int64 if pa.types.is_large_string(lines.type) else np.int32
    offsets = np.frombuffer(
        lines.buffers()[1],
        dtype=width,
        count=len(lines) + 1,
        offset=lines.offset * np.dtype(width).itemsize,
    )
    return memoryview(lines.buffers()[2])[int(offsets[0]) : int(offsets[-1])]


def output_digests(
    con: Any, folder: Path, files: dict[str, str], fmt: str, shape: Shape, method: str
) -> Measured:
    """Counts and digests of a gate's two output files in ``folder`` (no subject index):
    how the ``sorted`` digest is computed after a pass, for either engine, by the code
    ``gate verify`` runs."""
    from . import manifest as mf

    work = folder / ".work" / "measure"
    allowed = mf.open_source(con, folder / files["allowed"], work / "a", input_format=fmt)
    excluded = mf.open_source(con, folder / files["excluded"], work / "e", input_format=fmt)
    return measure(con, allowed, excluded, shape, [], method, with_index=False)
