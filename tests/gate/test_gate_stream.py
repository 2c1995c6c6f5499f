"""The DuckDB engine's single pass (:mod:`consentry.gate.stream`): many batches, every output
format, empty outputs, the hashed subject lookup and the Parquet encodings."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from gate_support import leftovers, manifest

from consentry import Store
from consentry.errors import InvalidInput
from consentry.gate import read_manifest, stream
from consentry.gate.decisions import CategoryPlan, DecisionTable
from consentry.gate.duck import decide_rows
from consentry.gate.manifest import Shape

PEOPLE = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "zed"]
CATEGORIES = ["content.audio", "content.video", "content.chat", "content.transcript"]


def big_manifest(n: int, seed: int = 7) -> pa.Table:
    """``n`` varied rows over the meetings store's subjects (``zed`` is unknown)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        k = rng.choice([1, 1, 1, 2, 3])
        subjects = rng.sample(PEOPLE, k)
        labels = ["health"] if rng.random() < 0.05 else (["minor"] if rng.random() < 0.05 else [])
        rows.append((f"item-{i}", subjects, rng.choice(CATEGORIES), labels))
    return manifest(
        rows,
        payload=[rng.random() for _ in range(n)],
        meta=[{"k": i, "v": str(i % 3)} for i in range(n)],
    )


def expected(store: Store, table: pa.Table) -> tuple[list[str], list[tuple[Any, ...]]]:
    rows = decide_rows(store, table, purpose="ai.training").to_pylist()
    allowed = sorted(r["item_id"] for r in rows if r["allowed"])
    excluded = sorted(
        (r["item_id"], r["reason"], r["blocking_subject"], r["event_seq"])
        for r in rows
        if not r["allowed"]
    )
    return allowed, excluded


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl", "arrow"])
def test_many_small_batches_give_the_same_outputs(
    mstore: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    table = big_manifest(500)
    want_allowed, want_excluded = expected(mstore, table)
    monkeypatch.setattr(stream, "BATCH_ROWS", 37)  # 14 batches, queues full most of the time
    monkeypatch.setattr(stream, "QUEUE_DEPTH", 1)
    result = mstore.gate(table, purpose="ai.training", out=tmp_path / "o", format=fmt)
    allowed = read_manifest(result.paths["allowed"])
    assert allowed.column_names == table.column_names
    assert sorted(allowed.column("item_id").to_pylist()) == want_allowed
    # Every column passes through, row for row.
    by_id = {r["item_id"]: r for r in table.to_pylist()}
    for row in allowed.to_pylist():
        if isinstance(row["meta"], str):  # CSV has no structs: written as JSON text
            row["meta"] = json.loads(row["meta"])
        assert row == by_id[row["item_id"]]
    excluded = _read_excluded(result.paths["excluded"], fmt)
    got = sorted(
        (r["item_id"], r["reason"], r["blocking_subject"], r["event_seq"]) for r in excluded
    )
    assert got == want_excluded
    assert (result.allowed, result.excluded) == (len(want_allowed), len(want_excluded))
    report = mstore.verify_dataset(tmp_path / "o")
    assert report.ok, report.problems


def _read_excluded(path: Path, fmt: str) -> list[dict[str, Any]]:
    import duckdb

    reader = {
        "parquet": "read_parquet",
        "csv": "read_csv",
        "jsonl": "read_json",
    }.get(fmt)
    if reader is None:
        return pa.ipc.open_file(pa.memory_map(str(path))).read_all().to_pylist()
    con = duckdb.connect()
    rows = con.sql(
        f"SELECT item_id, reason, blocking_subject, event_seq::BIGINT AS event_seq "
        f"FROM {reader}('{path}')"
    ).fetchall()
    names = ["item_id", "reason", "blocking_subject", "event_seq"]
    return [dict(zip(names, r, strict=True)) for r in rows]


def test_excluded_parquet_reads_back_as_plain_strings(mstore: Store, tmp_path: Path) -> None:
    result = mstore.gate(big_manifest(50), purpose="ai.training", out=tmp_path / "o")
    schema = pq.read_table(result.paths["excluded"]).schema
    assert schema == stream.EXCLUDED_SCHEMA


def test_the_subject_index_matches_the_files_over_many_batches(
    mstore: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from consentry import lineage

    monkeypatch.setattr(stream, "BATCH_ROWS", 16)
    table = big_manifest(300, seed=3)
    result = mstore.gate(table, purpose="ai.training", out=tmp_path / "o")
    index = {s: json.loads(c) for s, _, c in lineage.dataset_index(mstore, result.dataset_id)}
    # Recount from the allowed rows by hand.
    want: dict[str, dict[str, list[int]]] = {}
    for row in pq.read_table(result.paths["allowed"]).to_pylist():
        for pos, subject in enumerate(row["subject_ids"]):
            cell = want.setdefault(subject, {}).setdefault(row["category"], [0, 0])
            cell[0] += 1
            # Every participant's answer decides content under the meetings policy's rule.
            cell[1] += 1 if pos == 0 or row["category"] in _parties_all(result) else 0
    assert index == want


def _parties_all(result: Any) -> set[str]:
    cats = result.lineage.data["categories"]
    return {c for c, p in cats.items() if p["parties"] == "all"}


def test_everything_excluded_or_everything_allowed(mstore: Store, tmp_path: Path) -> None:
    nobody = manifest([("a", ["zed"], "content.audio", []), ("b", ["carol"], "content.chat", [])])
    result = mstore.gate(nobody, purpose="ai.training", out=tmp_path / "none")
    allowed = pq.read_table(result.paths["allowed"])
    assert allowed.num_rows == 0 and allowed.column_names == nobody.column_names
    assert mstore.verify_dataset(tmp_path / "none").ok
    everyone = manifest([("a", ["alice"], "content.audio", []), ("b", ["bob"], "content.chat", [])])
    result = mstore.gate(everyone, purpose="ai.training", out=tmp_path / "all", format="csv")
    assert result.excluded == 0
    assert (tmp_path / "all" / "excluded.csv").read_text().startswith("item_id,reason")
    assert mstore.verify_dataset(tmp_path / "all").ok


def test_a_bad_row_in_a_later_batch_names_it_and_writes_nothing(
    mstore: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stream, "BATCH_ROWS", 10)
    rows = [(f"i{n}", ["alice"], "content.audio", []) for n in range(100)]
    rows[73] = ("i73", ["alice", ""], "content.audio", [])
    pq.write_table(manifest(rows), tmp_path / "m.parquet")
    with pytest.raises(InvalidInput) as info:
        mstore.gate(tmp_path / "m.parquet", purpose="ai.training", out=tmp_path / "o")
    assert "row 74 of" in str(info.value) and "empty subject id" in str(info.value)
    assert not (tmp_path / "o").exists() and leftovers(tmp_path) == []


# -- the hashed lookup of the other subjects -----------------------------------------------------


def _decider(subjects: list[str], codes: list[int]) -> stream.BatchDecider:
    plan = CategoryPlan("content.audio", 0, None, True, (), "r")
    table = pa.table(
        {
            "g": pa.array([0] * len(subjects), pa.uint16()),
            "subject": pa.array(subjects, pa.string()),
            "code": pa.array(codes, pa.uint8()),
            "seq": pa.array([None] * len(subjects), pa.int64()),
        }
    )
    decision = DecisionTable({"content.audio": plan}, 1, subjects, table)
    return stream.BatchDecider(decision, Shape("subject_ids", False, False), opt_outs=False,
                               labels=False)  # fmt: skip


def test_a_shared_hash_never_makes_an_unknown_subject_known() -> None:
    d = _decider(["ann", "ben", "cid"], [1, 1, 1])
    # ann and ben share a hash (ambiguous: looked up by name); cid's is its own.
    d.set_hashes(np.array([5, 5, 9], dtype=np.uint64))
    names = pa.array(["ben", "ann", "cid", "eve", "fay"])
    hashes = np.array([5, 5, 9, 9, 7], dtype=np.uint64)  # eve collides with cid; fay hits none
    assert d.positions(names, hashes).tolist() == [1, 0, 2, 3, 3]


def test_other_subjects_decide_in_list_order() -> None:
    from consentry.gate.decisions import CODES

    consent, refused, withdrawn = CODES["consent"], CODES["refused"], CODES["withdrawn"]
    d = _decider(["ann", "ben", "cid"], [consent, refused, withdrawn])
    d.set_hashes(np.array([11, 12, 13], dtype=np.uint64))
    batch = pa.RecordBatch.from_pydict(
        {
            "subject_ids": [["ann", "cid", "ben"], ["ann"], ["ann", "zed"], ["ben", "ann"]],
            stream.CATEGORY_POS: pa.array([0, 0, 0, 0], pa.uint16()),
            stream.OWNER_POS: pa.array([0, 0, 0, 1], pa.uint32()),
            stream.SUBJECT_HASHES: [[11, 13, 12], None, [11, 99], [12, 11]],
        }
    )
    decided = d.decide(batch)
    assert decided.code.tolist() == [withdrawn, consent, CODES["unknown_subject"], refused]
    assert decided.blocked.tolist() == [0, 2]
    mask = ~decided.allowed
    assert d.blocking(batch, decided, mask).to_pylist() == ["cid", "zed", "ben"]


# -- Parquet encodings ---------------------------------------------------------------------------


def test_dictionary_only_for_repetitive_columns() -> None:
    n = 1000
    batch = pa.RecordBatch.from_pydict(
        {
            "item_id": [f"i{i}" for i in range(n)],
            "category": ["content.audio", "content.chat"] * (n // 2),
            "labels": [["health"] if i % 10 == 0 else [] for i in range(n)],
            "subject_ids": [[f"s{i}", f"t{i}"] for i in range(n)],
            "score": [float(i) for i in range(n)],
            "bucket": [i % 7 for i in range(n)],
            "meta": [{"k": i} for i in range(n)],
        }
    )
    chosen = stream.dictionary_columns(batch)
    assert chosen == ["category", "labels.list.element", "bucket", "meta.k"]


# -- the lineage insert on every backend ---------------------------------------------------------


def test_the_subject_index_on_every_backend(
    backend_url: str, clock: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite inserts the index with executemany, PostgreSQL with COPY: both in the
    transaction that records the dataset (a failed commit leaves none of it)."""
    from gate_support import meetings_store
    from sqlalchemy import func, select

    from consentry import lineage
    from consentry.ledger import schema

    stores: list[Store] = []

    def make(*policies: Path) -> Store:
        s = Store(backend_url, clock=clock)
        s.init(policies=list(policies))
        stores.append(s)
        return s

    store = meetings_store(make)
    try:
        table = big_manifest(300, seed=11)
        result = store.gate(table, purpose="ai.training", out=tmp_path / "o")
        report = store.verify_dataset(tmp_path / "o")  # the stored index's digest included
        assert report.ok, report.problems
        assert report.checks["store subject index"][0]
        rows = list(lineage.dataset_index(store, result.dataset_id))
        assert len(rows) == result.lineage.data["subjects"]["count"] > 0
        real = lineage.save_dataset

        def save(*args: Any, **kwargs: Any) -> None:
            def fail() -> None:
                raise RuntimeError("injected failure")

            kwargs["before_commit"] = fail
            real(*args, **kwargs)

        monkeypatch.setattr(lineage, "save_dataset", save)
        with pytest.raises(RuntimeError, match="injected"):
            store.gate(table, purpose="ai.training", out=tmp_path / "p")
        with store.ledger.engine.connect() as conn:
            count = select(func.count()).select_from(schema.dataset_subjects)
            assert conn.execute(count).scalar_one() == len(rows)
    finally:
        for s in stores:
            s.close()


# -- bad rows: each batch is checked before anything is decided ----------------------------------


BAD_ROWS = {
    "empty item id": ({"item_id": ["a", ""]}, "'item_id' is an empty string"),
    "null item id": ({"item_id": ["a", None]}, "'item_id' is empty (null)"),
    "null subject": ({"subject_id": ["alice", None]}, "'subject_id' is empty (null)"),
    "empty subject": ({"subject_id": ["alice", ""]}, "'subject_id' is an empty string"),
    "null label": ({"labels": [[], [None]]}, "'labels' holds a null label"),
    "unknown label": ({"labels": [[], ["helth"]]}, "unknown label 'helth'"),
    "null subject list": ({"subject_ids": [["alice"], None]}, "'subject_ids' is empty (null)"),
    "empty subject list": ({"subject_ids": [["alice"], []]}, "'subject_ids' is an empty list"),
    "null in a list": (
        {"subject_ids": [["alice"], ["bob", None]]},
        "'subject_ids' holds a null subject",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_every_bad_row_is_caught_in_the_scan(
    mstore: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    change, message = BAD_ROWS[case]
    columns: dict[str, Any] = {
        "item_id": ["a", "b"],
        "category": ["content.audio", "content.audio"],
        "labels": [[], []],
    }
    columns.update(change)
    if "subject_ids" not in columns:
        columns.setdefault("subject_id", ["alice", "bob"])
    table = pa.table(columns)
    monkeypatch.setattr(stream, "BATCH_ROWS", 1)  # the bad row comes in the second batch
    with pytest.raises(InvalidInput) as info:
        mstore.gate(table, purpose="ai.training", out=tmp_path / "o")
    assert message in str(info.value) and "row 2 of" in str(info.value)
    assert not (tmp_path / "o").exists() and leftovers(tmp_path) == []
    with pytest.raises(InvalidInput, match="row 2 of"):
        decide_rows(mstore, table, purpose="ai.training")


def test_unknown_participants_of_an_owner_only_rule_are_indexed(
    mstore: Store, tmp_path: Path
) -> None:
    """Under an owner-only rule a participant the store has never seen does not block the
    item, and still appears in the subject index (counted by name, not by position)."""
    from consentry import lineage

    table = manifest(
        [
            ("a", ["alice", "zed"], "service_data.telemetry", []),
            ("b", ["zed", "alice"], "service_data.telemetry", []),
            ("c", ["bob", "zed", "yan"], "service_data.telemetry", []),
        ]
    )
    result = mstore.gate(table, purpose="improvement", out=tmp_path / "o")
    assert (result.allowed, result.excluded) == (2, 1)
    index = list(lineage.dataset_index(mstore, result.dataset_id))
    assert index == [
        ("alice", 1, '{"service_data.telemetry":[1,1]}'),
        ("bob", 1, '{"service_data.telemetry":[1,1]}'),
        ("yan", 1, '{"service_data.telemetry":[1,0]}'),
        ("zed", 2, '{"service_data.telemetry":[2,0]}'),
    ]
    report = mstore.verify_dataset(tmp_path / "o")
    assert report.ok, report.problems
