"""MLflow: a gated dataset logged as an input of a run, and ``model register --mlflow-run``,
against a real local MLflow tracking store (SQLite in tmp_path)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from consentry import Store
from consentry.cli import app as cli
from consentry.errors import InvalidInput

mlflow = pytest.importorskip("mlflow", reason="MLflow (the [mlflow] extra) is not installed")
from consentry.integrations import mlflow as ml  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
MEETINGS = ROOT / "policies" / "meetings.yaml"


@pytest.fixture
def tracking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    yield uri
    while mlflow.active_run() is not None:
        mlflow.end_run()


@pytest.fixture
def gated(make_store: Any, tmp_path: Path) -> tuple[Store, str]:
    store: Store = make_store(MEETINGS)
    store.give_consent("alice", "ai.training", ["content"])
    manifest = tmp_path / "m.parquet"
    pq.write_table(
        pa.table(
            {
                "item_id": ["i1", "i2"],
                "subject_ids": [["alice"], ["bob"]],
                "category": ["content.audio"] * 2,
                "labels": [[], []],
            }
        ),
        manifest,
    )
    result = store.gate(str(manifest), purpose="ai.training", out=tmp_path / "speech")
    return store, result.dataset_id


def _inputs(run_id: str) -> list[Any]:
    return list(mlflow.tracking.MlflowClient().get_run(run_id).inputs.dataset_inputs)


def test_log_dataset_records_the_gated_dataset_as_a_run_input(
    tracking: str, gated: tuple[Store, str], tmp_path: Path
) -> None:
    store, dataset_id = gated
    info = store.dataset(dataset_id)
    with mlflow.start_run() as run:
        ml.log_dataset(dataset_id, context="training", store=store)
    [given] = _inputs(run.info.run_id)
    digests = info.record.data["digests"]
    assert given.dataset.name == "speech"
    assert given.dataset.digest == digests["output_sha256"][: ml.MLFLOW_DIGEST_CHARS]
    source = json.loads(given.dataset.source)
    assert source["uri"] == (tmp_path / "speech" / "allowed.parquet").resolve().as_uri()
    tags = {t.key: t.value for t in given.tags}
    assert tags["mlflow.data.context"] == "training"
    assert tags["consentry.dataset_id"] == dataset_id
    assert tags["consentry.purpose"] == "ai.training"
    assert tags["consentry.as_of"] == info.as_of
    assert tags["consentry.ledger_seq"] == str(info.ledger_seq)
    assert tags["consentry.output_sha256"] == digests["output_sha256"]
    assert tags["consentry.record_sha256"] == info.record.sha256
    assert tags["consentry.items_allowed"] == "1" and tags["consentry.items_excluded"] == "1"


def test_log_dataset_needs_a_run(tracking: str, gated: tuple[Store, str]) -> None:
    store, dataset_id = gated
    with pytest.raises(InvalidInput, match="no active MLflow run"):
        ml.log_dataset(dataset_id, store=store)


def test_model_register_links_the_model_to_an_mlflow_run(
    tracking: str, gated: tuple[Store, str]
) -> None:
    store, dataset_id = gated
    client = mlflow.tracking.MlflowClient()
    experiment = client.create_experiment("asr")
    run_id = client.create_run(experiment).info.run_id
    db = ["--db", store.url]
    made = CliRunner().invoke(
        cli,
        [*db, "model", "register", "asr", "-d", dataset_id, "--version", "2",
         "--mlflow-run", run_id, "--json"],
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    model = json.loads(made.output)
    assert model["metadata"]["mlflow_run_id"] == run_id
    tags = client.get_run(run_id).data.tags
    assert tags["consentry.model_id"] == model["id"] and tags["consentry.datasets"] == dataset_id
    [given] = _inputs(run_id)
    assert {t.key: t.value for t in given.tags}["consentry.dataset_id"] == dataset_id
    # An MLflow run that does not exist: refused before anything is recorded.
    before = len(store.models())
    bad = CliRunner().invoke(
        cli, [*db, "model", "register", "asr", "-d", dataset_id, "--mlflow-run", "nope"]
    )
    assert bad.exit_code != 0 and "MLflow has no run 'nope'" in bad.output
    assert "Traceback" not in bad.output
    assert len(store.models()) == before
