"""The Spark engine on local[2]: it agrees with DuckDB row for row, and on the lineage."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from gate_support import manifest
from typer.testing import CliRunner

from consentry import Store
from consentry.errors import InvalidInput
from consentry.gate.duck import decide_rows as duck_rows

pytestmark = [pytest.mark.spark, pytest.mark.filterwarnings("ignore::FutureWarning")]

SUBJECTS = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "zed", "yan"]
CATEGORIES = ["content.audio", "content.video", "content.chat", "service_data.telemetry"]


def random_manifest(n: int, seed: int = 7) -> pa.Table:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        k = 1 if rng.random() < 0.7 else rng.randint(2, 4)
        rows.append(
            (
                f"item-{i:04d}",
                rng.sample(SUBJECTS, k),
                rng.choice(CATEGORIES),
                ["health"] if rng.random() < 0.05 else (["minor"] if rng.random() < 0.1 else []),
            )
        )
    urls = [f"https://src.example/{i % 13}" for i in range(n)]
    return manifest(rows, source_url=urls, size=list(range(n)))


def by_item(rows: list[dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    return {
        r["item_id"]: (r["allowed"], r["reason"], r["blocking_subject"], r["event_seq"])
        for r in rows
    }


def test_spark_agrees_with_duckdb_row_for_row(mstore: Store, spark: Any) -> None:
    from consentry.gate.spark import decide_rows

    t = random_manifest(400)
    opt_outs = {"https://src.example/3"}
    want = by_item(duck_rows(mstore, t, purpose="ai.training", signals=opt_outs).to_pylist())
    assert len({v[1] for v in want.values()}) >= 8  # most reasons appear
    df = spark.createDataFrame(t)
    # broadcast join (a small decision table) and shuffle join (forced) agree with DuckDB
    for broadcast_rows in (None, 0):
        rows = decide_rows(
            mstore, df, purpose="ai.training", signals=opt_outs, broadcast_rows=broadcast_rows
        ).collect()
        assert by_item([r.asDict() for r in rows]) == want


def test_gate_dataframe_returns_frames_and_lineage(mstore: Store, spark: Any) -> None:
    from consentry.gate.spark import gate_dataframe

    t = random_manifest(120, seed=3)
    result = gate_dataframe(
        mstore, spark.createDataFrame(t), purpose="ai.training", dataset_name="s"
    )
    duck = duck_rows(mstore, t, purpose="ai.training").to_pylist()
    allowed = sorted(r["item_id"] for r in result.allowed.select("item_id").collect())
    assert allowed == sorted(r["item_id"] for r in duck if r["allowed"])
    assert result.allowed.columns == t.column_names
    from consentry.gate.result import multiset_of

    digests = result.lineage.data["digests"]
    assert digests["output_sha256"] == multiset_of(allowed)
    assert digests["input_sha256"] == multiset_of(t.column("item_id").to_pylist())
    stored = mstore.dataset(result.result.dataset_id)
    assert stored.engine == "spark" and stored.record.sha256 == result.lineage.sha256


def test_cli_engine_spark_matches_duckdb(
    mstore: Store, spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from consentry.cli import app

    monkeypatch.setenv("CONSENTRY_DATABASE_URL", mstore.url)
    path = tmp_path / "m.parquet"
    pq.write_table(random_manifest(200, seed=11), path)
    runner = CliRunner()
    results = {}
    for engine in ("duckdb", "spark"):
        out = tmp_path / engine
        # The same digest method on both (DuckDB's default is the sorted SHA-256).
        r = runner.invoke(app, ["gate", str(path), "--purpose", "ai.training", "--out", str(out),
                                "--engine", engine, "--digest", "multiset", "--json"])  # fmt: skip
        assert r.exit_code == 0, r.output
        results[engine] = json.loads(r.output)
        r = runner.invoke(app, ["gate", "verify", str(out)])
        assert r.exit_code == 0, r.output
    duck, spk = results["duckdb"]["lineage"], results["spark"]["lineage"]
    for key in ("counts", "digests", "subjects", "categories", "ledger", "policy_version"):
        assert duck[key] == spk[key], key
    assert spk["engine"] == "spark"
    allowed = pq.read_table(tmp_path / "spark" / "allowed.parquet")  # a directory of parts
    assert sorted(allowed.column_names) == sorted(pq.read_table(path).column_names)


def test_spark_bad_input(mstore: Store, spark: Any, tmp_path: Path) -> None:
    from consentry.gate.spark import gate_dataframe

    t = manifest(
        [("ok", ["alice"], "content.audio", []), ("bad", ["alice", None], "content.audio", [])]
    )  # type: ignore[list-item]
    with pytest.raises(InvalidInput, match=r"item 'bad'.*'subject_ids' holds a null subject"):
        gate_dataframe(mstore, spark.createDataFrame(t), purpose="ai.training")
    t = manifest([("x", ["alice"], "content.audoi", [])])
    with pytest.raises(InvalidInput, match=r"unknown category 'content\.audoi'"):
        gate_dataframe(mstore, spark.createDataFrame(t), purpose="ai.training")
    assert mstore.datasets() == []


def test_spark_submit_runs_the_gate_as_a_spark_application(mstore: Store, tmp_path: Path) -> None:
    """`spark-submit consentry/gate/spark_submit.py gate ... --engine spark`: the driver that
    spark-submit starts (here on local[2]) runs the CLI, whose gate uses spark-submit's
    session; the output verifies and the store records a Spark dataset."""
    import os
    import subprocess
    import sys

    import pyspark

    import consentry.gate.spark_submit as entry

    path = tmp_path / "m.parquet"
    pq.write_table(random_manifest(120, seed=5), path)
    out = tmp_path / "submitted"
    submit = Path(pyspark.__file__).parent / "bin" / "spark-submit"
    env = {
        **os.environ,
        "CONSENTRY_DATABASE_URL": mstore.url,
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
    }
    env.pop("SPARK_REMOTE", None)
    done = subprocess.run(
        [
            str(submit),
            "--master",
            "local[2]",
            "--conf",
            "spark.ui.enabled=false",
            str(Path(entry.__file__)),
            "gate",
            str(path),
            "--purpose",
            "ai.training",
            "--out",
            str(out),
            "--engine",
            "spark",
            "--json",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # spark-submit's Python runner merges the driver's stderr into its stdout (PySpark's
    # FutureWarning about pandas 3 lands there), so the JSON is the last thing printed.
    assert "{" in done.stdout, (done.stdout[-2000:], done.stderr[-2000:])
    result = json.loads(done.stdout[done.stdout.index("{") :])
    assert result["lineage"]["engine"] == "spark"
    assert result["lineage"]["counts"]["input"] == 120
    assert mstore.verify_dataset(out).ok
    assert mstore.dataset(result["dataset_id"]).engine == "spark"


def test_one_run_two_engines_with_the_default_digest(
    mstore: Store, spark: Any, tmp_path: Path
) -> None:
    """Both engines default to the sorted digest, give one lineage, and verify."""
    from pyspark.sql import functions as F

    from consentry.gate.manifest import Shape
    from consentry.gate.spark import _step_answers
    from consentry.item_order import ITEM_ORDER

    assert list(_step_answers(Shape("subject_ids", True, True), F.lit(False))) == list(ITEM_ORDER)
    path = tmp_path / "m.parquet"
    pq.write_table(random_manifest(150, seed=13), path)
    records = {}
    for engine in ("duckdb", "spark"):
        result = mstore.gate(path, purpose="ai.training", out=tmp_path / engine, engine=engine)
        records[engine] = result.lineage.data
        assert mstore.verify_dataset(tmp_path / engine).ok
    duck, spk = records["duckdb"], records["spark"]
    assert duck["digests"]["method"] == spk["digests"]["method"] == "sorted-sha256-v1"
    for key in ("counts", "digests", "subjects", "categories", "ledger", "policy_version"):
        assert duck[key] == spk[key], key


def test_spark_names_a_csv_row_of_the_wrong_width(
    mstore: Store, spark: Any, tmp_path: Path
) -> None:
    path = tmp_path / "m.csv"
    path.write_text(
        "item_id,subject_id,category\nr1,alice,content.audio\nr2,bob,content.audio,x\n",
        encoding="utf-8",
    )
    with pytest.raises(InvalidInput) as info:
        mstore.gate(path, purpose="ai.training", out=tmp_path / "o", engine="spark")
    assert info.value.message == f"{path}: line 3 (row 2) has 4 fields, but the header has 3"
    assert not (tmp_path / "o").exists()
