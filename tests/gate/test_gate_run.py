"""One gate run, two engines: the options both take, the errors both give in the same words,
the per-item order both follow, and CSV rows of the wrong width named by their line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from gate_support import manifest

from consentry import Store
from consentry.errors import InvalidInput
from consentry.gate.options import DEFAULT_DIGEST, GateOptions
from consentry.gate.result import SORTED
from consentry.item_order import ITEM_ORDER

ROWS = [
    ("m1", ["alice"], "content.audio", []),
    ("m2", ["carol"], "content.audio", []),
]

ENGINES = ["duckdb", "spark"]


def gate(store: Store, out: Path, engine: str, **options: Any) -> Any:
    return store.gate(manifest(ROWS), purpose="ai.training", out=out, engine=engine, **options)


# -- options -----------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_an_unknown_option_is_refused_by_both_engines(
    mstore: Store, tmp_path: Path, engine: str
) -> None:
    with pytest.raises(InvalidInput, match="unknown gate option 'thread'") as info:
        gate(mstore, tmp_path / "o", engine, thread=4)
    assert info.value.details["field"] == "thread"
    assert "threads" in (info.value.hint or "")
    assert not (tmp_path / "o").exists() and mstore.datasets() == []


@pytest.mark.parametrize(
    ("engine", "option", "value", "owner"),
    [
        ("spark", "threads", 4, "duckdb"),
        ("spark", "memory_limit", "3GB", "duckdb"),
        ("duckdb", "master", "local[2]", "spark"),
        ("duckdb", "broadcast_rows", 10, "spark"),
    ],
)
def test_an_option_of_the_other_engine_is_refused_not_dropped(
    mstore: Store, tmp_path: Path, engine: str, option: str, value: Any, owner: str
) -> None:
    """`Store.gate(engine="spark", threads=4)` used to drop `threads` without a word."""
    with pytest.raises(InvalidInput, match=f"the {engine} engine does not take '{option}'") as e:
        gate(mstore, tmp_path / "o", engine, **{option: value})
    assert e.value.details["field"] == option
    assert f"a {owner} option" in e.value.message and e.value.hint


def test_options_are_one_dataclass_with_one_default_digest() -> None:
    duck = GateOptions.parse(engine="duckdb", formats=("parquet",), purpose="p", out="o")
    spark = GateOptions.parse(engine="spark", formats=("parquet",), purpose="p", out="o")
    assert DEFAULT_DIGEST == "sorted"
    assert duck.method == spark.method == SORTED
    assert duck.out == Path("o")
    with pytest.raises(InvalidInput, match="unknown digest method"):
        GateOptions.parse(engine="duckdb", formats=("parquet",), purpose="p", out="o", digest="x")


def test_the_spark_engine_refuses_arrow_output(mstore: Store, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="spark engine writes parquet, csv, jsonl, not arrow"):
        gate(mstore, tmp_path / "o", "spark", format="arrow")


@pytest.mark.parametrize("engine", ENGINES)
def test_a_missing_signals_file_is_one_error_with_its_hint(
    mstore: Store, tmp_path: Path, engine: str
) -> None:
    with pytest.raises(InvalidInput, match=r"signals file .*nope\.csv does not exist") as info:
        gate(mstore, tmp_path / "o", engine, signals=tmp_path / "nope.csv")
    assert info.value.hint == "write one with `consentry signals check ... --out FILE`"
    assert not (tmp_path / "o").exists()


def test_unknown_engine(mstore: Store, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="unknown engine 'polars'"):
        gate(mstore, tmp_path / "o", "polars")


def test_a_dataset_made_with_the_other_digest_still_verifies(mstore: Store, tmp_path: Path) -> None:
    """The recorded method, not today's default, is what `gate verify` recomputes."""
    old = gate(mstore, tmp_path / "old", "duckdb", digest="multiset")
    new = gate(mstore, tmp_path / "new", "duckdb")
    assert old.lineage.data["digests"]["method"] == "multiset-md5-v1"
    assert new.lineage.data["digests"]["method"] == "sorted-sha256-v1"
    assert mstore.verify_dataset(tmp_path / "old").ok
    assert mstore.verify_dataset(tmp_path / "new").ok


# -- the per-item order --------------------------------------------------------------------------


def test_every_engine_translates_every_step_of_the_item_order() -> None:
    from consentry import lineage
    from consentry.gate.stream import BatchDecider

    assert list(BatchDecider.STEPS) == list(ITEM_ORDER)
    assert list(lineage._STEPS) == list(ITEM_ORDER)


def test_lineage_answers_a_fixed_answer_before_an_unknown_subject(mstore: Store) -> None:
    """As the gate does: a category nobody may consent to answers so for every subject."""
    from consentry import lineage
    from consentry.decide import Reason
    from consentry.gate.duck import decide_rows
    from consentry.times import to_us

    state = mstore.state()
    now = to_us(mstore.clock())
    code, _ = lineage._answer(state, False, "zed", "ai.training", "content.audio", now)
    assert lineage._REASONS[code] == Reason.UNKNOWN_SUBJECT
    fixed = next(
        c
        for c in ("service_data.telemetry", "service_data.diagnostics", "account.profile")
        if _fixed(mstore, c)
    )
    code, _ = lineage._answer(state, False, "zed", "ai.training", fixed, now)
    rows = decide_rows(mstore, manifest([("z", ["zed"], fixed, [])]), purpose="ai.training")
    assert lineage._REASONS[code] == rows.column("reason")[0].as_py()


def _fixed(store: Store, category: str) -> bool:
    from consentry.decide import compile_plan
    from consentry.errors import UnknownName
    from consentry.times import to_us

    try:
        plan = compile_plan(store.state(), "ai.training", category, to_us(store.clock()))
    except UnknownName:
        return False
    return plan.fixed >= 0


# -- CSV rows of the wrong width ------------------------------------------------------------------

HEADER = "item_id,subject_ids,category,labels\n"
GOOD = 'r1,"[""alice""]",content.audio,[]\n'


@pytest.mark.parametrize(
    ("row", "found"),
    [
        ('r2,"[""bob""]",content.audio\n', 3),  # short
        ('r2,"[""bob""]",content.audio,[],extra\n', 5),  # long: DuckDB took it for the header
    ],
)
def test_a_csv_row_of_the_wrong_width_is_named_by_its_line(
    mstore: Store, tmp_path: Path, row: str, found: int
) -> None:
    path = tmp_path / "m.csv"
    path.write_text(HEADER + GOOD + row + GOOD.replace("r1", "r3"), encoding="utf-8")
    with pytest.raises(InvalidInput) as info:
        mstore.gate(path, purpose="ai.training", out=tmp_path / "o")
    message = info.value.message
    assert f"{path}: line 3 (row 2) has {found} fields, but the header has 4" == message
    assert "columns found" not in message and "no 'item_id'" not in message
    assert info.value.details["row"] == 2 and "one field per column" in (info.value.hint or "")


def test_the_cli_refuses_threads_for_spark(
    mstore: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyarrow.parquet as pq
    from typer.testing import CliRunner

    from consentry.cli import app

    monkeypatch.setenv("CONSENTRY_DATABASE_URL", mstore.url)
    path = tmp_path / "m.parquet"
    pq.write_table(manifest(ROWS), path)
    args = ["gate", str(path), "--purpose", "ai.training", "--out", str(tmp_path / "o")]
    r = CliRunner().invoke(app, [*args, "--engine", "spark", "--threads", "4"])
    assert r.exit_code == 2, r.output
    assert "the spark engine does not take 'threads'" in r.output
    assert not (tmp_path / "o").exists()
