"""Manifests in every format, outputs in every format, bad input, atomic outputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from gate_support import leftovers, manifest
from sqlalchemy import func, select

from consentry import Store
from consentry.errors import InvalidInput, NotFound
from consentry.gate import read_manifest, write_manifest
from consentry.gate.duck import decide_rows
from consentry.ledger import schema

ROWS = [
    ("r1", ["alice"], "content.audio", []),
    ("r2", ["alice", "carol"], "content.video", []),
    ("r3", ["bob", "erin"], "content.chat", []),
    ("r4", ["bob"], "content.audio", ["health"]),
    ("r5", ["zed"], "content.audio", []),
    ("r6", ["erin", "alice"], "content.transcript", ["minor"]),
]
WANT = {
    "r1": "consent",
    "r2": "refused",
    "r3": "consent",
    "r4": "protected_label",
    "r5": "unknown_subject",
    "r6": "account_consent",
}


def table() -> pa.Table:
    return manifest(ROWS, duration=[1.5, 2.0, 3.0, 4.0, 5.0, 6.0], note=list("abcdef"))


def datasets(store: Store) -> int:
    with store.ledger.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(schema.datasets)).scalar_one())


def reasons(store: Store, source: Any, **kw: Any) -> dict[str, str]:
    rows = decide_rows(store, source, purpose="ai.training", **kw).to_pylist()
    return {r["item_id"]: r["reason"] for r in rows}


# -- reading every format -----------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl", "arrow"])
def test_files_of_every_format(mstore: Store, tmp_path: Path, fmt: str) -> None:
    path = write_manifest(table(), tmp_path / f"m.{ {'arrow': 'arrow'}.get(fmt, fmt) }")
    assert reasons(mstore, path) == WANT
    back = read_manifest(path)
    assert back.column("item_id").to_pylist() == [r[0] for r in ROWS]
    assert back.column("subject_ids").to_pylist() == [r[1] for r in ROWS]


def test_directories_and_globs(mstore: Store, tmp_path: Path) -> None:
    t = table()
    (tmp_path / "d").mkdir()
    pq.write_table(t.slice(0, 3), tmp_path / "d" / "part-0.parquet")
    pq.write_table(t.slice(3), tmp_path / "d" / "part-1.parquet")
    (tmp_path / "d" / "_SUCCESS").write_text("")
    assert reasons(mstore, tmp_path / "d") == WANT
    assert reasons(mstore, str(tmp_path / "d" / "part-*.parquet")) == WANT


def test_in_memory_tables(mstore: Store) -> None:
    pd = pytest.importorskip("pandas")
    pl = pytest.importorskip("polars")
    t = table()
    assert reasons(mstore, t) == WANT
    assert reasons(mstore, t.to_pandas()) == WANT
    assert reasons(mstore, pl.from_arrow(t)) == WANT
    assert reasons(mstore, pd.DataFrame(t.to_pylist())) == WANT


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl", "arrow"])
def test_outputs_in_every_format_verify(mstore: Store, tmp_path: Path, fmt: str) -> None:
    result = mstore.gate(table(), purpose="ai.training", out=tmp_path / "o", format=fmt)
    assert (result.allowed, result.excluded) == (3, 3)
    assert result.paths["allowed"].name == f"allowed.{fmt}"
    report = mstore.verify_dataset(tmp_path / "o")
    assert report.ok, report.problems
    # The allowed output is itself a manifest: every column, untouched.
    back = read_manifest(result.paths["allowed"])
    assert back.column_names == table().column_names
    assert sorted(back.column("note").to_pylist()) == ["a", "c", "f"]
    assert sorted(back.column("subject_ids").to_pylist()) == sorted(
        [["alice"], ["bob", "erin"], ["erin", "alice"]]
    )


def test_passthrough_types_survive(mstore: Store, tmp_path: Path) -> None:
    t = table().append_column("meta", pa.array([{"k": i, "v": str(i)} for i in range(6)]))
    result = mstore.gate(t, purpose="ai.training", out=tmp_path / "o")
    allowed = pq.read_table(result.paths["allowed"])
    assert allowed.schema.field("meta").type == t.schema.field("meta").type
    assert allowed.schema.field("duration").type == pa.float64()


def test_report_names_what_was_decided(mstore: Store, tmp_path: Path) -> None:
    result = mstore.gate(table(), purpose="ai.training", out=tmp_path / "o", dataset_name="asr")
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["dataset_id"] == result.dataset_id
    assert report["name"] == "asr" and report["purpose"] == "ai.training"
    assert report["policy_version"] == "2023-08"
    assert report["ledger"]["seq"] == mstore.state().seq
    assert report["counts"] == {
        "input": 6,
        "allowed": 3,
        "excluded": 3,
        "allowed_by_reason": {"account_consent": 1, "consent": 2},
        "excluded_by_reason": {"protected_label": 1, "refused": 1, "unknown_subject": 1},
    }
    assert report["categories"]["content.audio"] == {
        "rule": "train-on-content", "parties": "all", "fixed": None,
    }  # fmt: skip
    excluded = pq.read_table(result.paths["excluded"]).to_pylist()
    assert {r["item_id"]: r["blocking_subject"] for r in excluded} == {
        "r2": "carol", "r4": "bob", "r5": "zed",
    }  # fmt: skip


# -- bad input: one clear error, nothing written -------------------------------------------------


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


CSV_HEAD = "item_id,subject_ids,category,labels\n"
BAD_CSV = {
    "missing column": (
        "item_id,category\na,content.audio\n",
        ["has no 'subject_id' or 'subject_ids' column", "m.csv"],
    ),
    "null subject": (
        CSV_HEAD + 'a,"[""alice""]",content.audio,[]\nb,,content.audio,[]\n',
        ["row 2 of", "m.csv", "(line 3)", "'subject_ids' is empty (null)", "'b'"],
    ),
    "null in list": (
        CSV_HEAD + 'a,"[""alice"",null]",content.audio,[]\n',
        ["row 1 of", "'subject_ids' holds a null subject"],
    ),
    "empty list": (CSV_HEAD + "a,[],content.audio,[]\n", ["'subject_ids' is an empty list"]),
    "unknown category": (
        CSV_HEAD + 'a,"[""alice""]",content.audio,[]\nb,"[""alice""]",content.audoi,[]\n',
        ["row 2 of", "unknown category 'content.audoi'", "'category'"],
    ),
    "null category": (
        CSV_HEAD + 'a,"[""alice""]",,[]\n',
        ["row 1 of", "'category' is empty"],
    ),
    "unknown label": (
        CSV_HEAD + 'a,"[""alice""]",content.audio,"[""helth""]"\n',
        ["row 1 of", "unknown label 'helth'", "'labels'"],
    ),
    "not a JSON list": (
        CSV_HEAD + "a,alice,content.audio,[]\n",
        ["'subject_ids' in row 1 (line 2) is not a JSON array", "m.csv"],
    ),
    "both subject columns": (
        "item_id,subject_id,subject_ids,category\na,x,[],content.audio\n",
        ["both 'subject_id' and 'subject_ids'"],
    ),
    "null item id": (
        CSV_HEAD + ',"[""alice""]",content.audio,[]\n',
        ["row 1 of", "'item_id' is empty (null)"],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CSV))
def test_bad_csv_gives_one_clear_error_and_writes_nothing(
    mstore: Store, tmp_path: Path, case: str
) -> None:
    text, needles = BAD_CSV[case]
    path = _write(tmp_path, "m.csv", text)
    out = tmp_path / "out" / "run"
    with pytest.raises(InvalidInput) as info:
        mstore.gate(path, purpose="ai.training", out=out)
    message = str(info.value)
    for needle in needles:
        assert needle in message, (needle, message)
    assert not (tmp_path / "out").exists()  # not even the parent it would have made
    assert leftovers(tmp_path) == []
    assert datasets(mstore) == 0


def test_mistyped_column(mstore: Store, tmp_path: Path) -> None:
    t = pa.table(
        {"item_id": [1, 2], "subject_id": ["alice", "bob"], "category": ["content.audio"] * 2}
    )
    with pytest.raises(InvalidInput, match=r"column 'item_id' .* is BIGINT, not a string"):
        mstore.gate(t, purpose="ai.training", out=tmp_path / "o")
    t = pa.table({"item_id": ["1"], "subject_ids": ["alice"], "category": ["content.audio"]})
    with pytest.raises(InvalidInput, match=r"'subject_ids' .* not a list of strings"):
        mstore.gate(t, purpose="ai.training", out=tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_parquet_bad_rows_name_file_and_row(mstore: Store, tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    pq.write_table(table(), tmp_path / "d" / "a.parquet")
    bad = manifest(
        [("ok", ["alice"], "content.audio", []), ("x", ["alice", ""], "content.audio", [])],
        duration=[1.0, 2.0],
        note=["g", "h"],
    ).cast(table().schema)
    pq.write_table(bad, tmp_path / "d" / "b.parquet")
    with pytest.raises(InvalidInput) as info:
        mstore.gate(tmp_path / "d", purpose="ai.training", out=tmp_path / "o")
    assert "row 2 of" in str(info.value) and "b.parquet" in str(info.value)
    assert "empty subject id" in str(info.value)
    assert info.value.details["row"] == 2


def test_files_of_one_manifest_share_a_schema(mstore: Store, tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    pq.write_table(table(), tmp_path / "d" / "a.parquet")
    pq.write_table(table().drop(["note"]), tmp_path / "d" / "b.parquet")
    with pytest.raises(
        InvalidInput, match=r"b\.parquet does not have the columns .* \(differs in note\)"
    ):
        mstore.gate(tmp_path / "d", purpose="ai.training", out=tmp_path / "o")


def test_missing_and_unparseable_files(mstore: Store, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="does not exist"):
        mstore.gate(tmp_path / "none.parquet", purpose="ai.training", out=tmp_path / "o")
    with pytest.raises(InvalidInput, match="no manifest files match"):
        mstore.gate(str(tmp_path / "*.parquet"), purpose="ai.training", out=tmp_path / "o")
    garbage = _write(tmp_path, "g.parquet", "this is not parquet")
    with pytest.raises(InvalidInput, match=r"cannot read .*g\.parquet as Parquet"):
        mstore.gate(garbage, purpose="ai.training", out=tmp_path / "o")
    broken = _write(tmp_path, "b.jsonl", '{"item_id": "a", "subject_ids": ["x"]\n')
    with pytest.raises(InvalidInput, match=r"cannot parse .*b\.jsonl as JSON Lines"):
        mstore.gate(broken, purpose="ai.training", out=tmp_path / "o")
    arrow = _write(tmp_path, "x.arrow", "nope")
    with pytest.raises(InvalidInput, match="as an Arrow IPC file"):
        mstore.gate(arrow, purpose="ai.training", out=tmp_path / "o")
    unknown_ext = _write(tmp_path, "m.txt", "x")
    with pytest.raises(InvalidInput, match="cannot tell the format"):
        mstore.gate(unknown_ext, purpose="ai.training", out=tmp_path / "o")
    assert not (tmp_path / "o").exists() and leftovers(tmp_path) == []


def test_unknown_purpose(mstore: Store, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"unknown purpose 'ai\.trainig'") as info:
        mstore.gate(table(), purpose="ai.trainig", out=tmp_path / "o")
    assert "ai.training" in (info.value.hint or "")


def test_existing_output_needs_overwrite(mstore: Store, tmp_path: Path) -> None:
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(InvalidInput, match="already exists") as info:
        mstore.gate(table(), purpose="ai.training", out=out)
    assert "--overwrite" in (info.value.hint or "")
    assert (out / "keep.txt").read_text() == "mine" and datasets(mstore) == 0
    result = mstore.gate(table(), purpose="ai.training", out=out, overwrite=True)
    assert not (out / "keep.txt").exists() and result.paths["allowed"].exists()
    assert leftovers(tmp_path) == []


# -- atomic outputs -----------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["writer", "measure", "report", "database"])
def test_a_failure_leaves_nothing(
    mstore: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    from consentry import lineage
    from consentry.gate import duck, stream

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("injected failure")

    if where == "writer":
        # The allowed rows' writer fails on its thread, after the file was opened.
        real_opener = stream.parquet_opener

        def opener(path: Path, **kw: Any) -> Any:
            open_writer = real_opener(path, **kw)

            def failing(first: Any) -> Any:
                writer = open_writer(first)
                writer.write_batch = boom
                return writer

            return failing if path.name.startswith("allowed") else open_writer

        monkeypatch.setattr(stream, "parquet_opener", opener)
    elif where == "measure":
        monkeypatch.setattr(duck, "index_digest", boom)
    elif where == "report":
        from consentry.gate.run import OutputFolder

        monkeypatch.setattr(OutputFolder, "write_report", boom)
    else:
        real = lineage.save_dataset

        def save(*args: Any, **kwargs: Any) -> None:
            move = kwargs["before_commit"]

            def then_fail() -> None:
                move()  # the outputs are renamed into place ...
                raise RuntimeError("injected failure")  # ... and the commit fails

            kwargs["before_commit"] = then_fail
            real(*args, **kwargs)

        monkeypatch.setattr(lineage, "save_dataset", save)
    out = tmp_path / "o"
    with pytest.raises(RuntimeError, match="injected"):
        mstore.gate(table(), purpose="ai.training", out=out)
    assert not out.exists()
    assert leftovers(tmp_path) == []
    assert datasets(mstore) == 0


def test_a_failed_overwrite_keeps_the_old_output(
    mstore: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from consentry.gate import duck

    out = tmp_path / "o"
    first = mstore.gate(table(), purpose="ai.training", out=out)
    monkeypatch.setattr(
        duck, "index_digest", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("x"))
    )
    with pytest.raises(RuntimeError):
        mstore.gate(table(), purpose="ai.training", out=out, overwrite=True)
    report = json.loads((out / "report.json").read_text())
    assert report["dataset_id"] == first.dataset_id and leftovers(tmp_path) == []


def test_verify_needs_a_report(tmp_path: Path) -> None:
    from consentry.gate import verify_output

    with pytest.raises(NotFound):
        verify_output(tmp_path)
