"""OpenLineage run events for gate runs and model registrations, sent by the real
``openlineage-python`` client to an endpoint shaped like Marquez's ``POST /api/v1/lineage``
on loopback (or written by its file transport), and read back with the client's own models."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from consentry import Store

openlineage = pytest.importorskip(
    "openlineage.client", reason="openlineage-python (the [openlineage] extra) is not installed"
)
from openlineage.client.event_v2 import (  # noqa: E402
    InputDataset,
    Job,
    OutputDataset,
    Run,
    RunEvent,
    RunState,
)
from openlineage.client.serde import Serde  # noqa: E402

from consentry.integrations.openlineage import FACET_SCHEMA, PRODUCER  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
MEETINGS = ROOT / "policies" / "meetings.yaml"
RUN_EVENT_SCHEMA = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"


class Marquez:
    """A loopback endpoint that accepts what Marquez's ``POST /api/v1/lineage`` accepts (a
    JSON run event with an event type, time, run id and job) with 201, anything else 400."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.refused = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                ok = self.path == "/api/v1/lineage"
                try:
                    event = json.loads(body)
                    ok = ok and event["eventType"] in {s.value for s in RunState}
                    ok = ok and bool(event["eventTime"] and event["run"]["runId"])
                    ok = ok and bool(event["job"]["namespace"] and event["job"]["name"])
                except (ValueError, KeyError, TypeError):
                    ok = False
                if ok:
                    owner.events.append(event)
                else:
                    owner.refused += 1
                self.send_response(201 if ok else 400)
                self.send_header("content-length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def marquez(monkeypatch: pytest.MonkeyPatch) -> Iterator[Marquez]:
    server = Marquez()
    for name in ("OPENLINEAGE_CONFIG", "OPENLINEAGE__TRANSPORT__TYPE", "CONSENTRY_OPENLINEAGE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENLINEAGE_URL", server.url)
    monkeypatch.setenv("OPENLINEAGE_NAMESPACE", "consentry-test")
    yield server
    server.close()


def _manifest(tmp_path: Path) -> Path:
    path = tmp_path / "manifest.parquet"
    pq.write_table(
        pa.table(
            {
                "item_id": ["i1", "i2", "i3"],
                "subject_ids": [["alice"], ["bob"], ["alice"]],
                "category": ["content.audio"] * 3,
                "labels": [[], [], []],
            }
        ),
        path,
    )
    return path


def _rebuilt(event: dict[str, Any]) -> dict[str, Any]:
    """The event's core rebuilt with the client's own models (their validators run), as the
    client would serialise it."""
    model = RunEvent(
        eventType=RunState(event["eventType"]),
        eventTime=event["eventTime"],
        run=Run(runId=event["run"]["runId"]),
        job=Job(namespace=event["job"]["namespace"], name=event["job"]["name"]),
        inputs=[InputDataset(namespace=d["namespace"], name=d["name"]) for d in event["inputs"]],
        outputs=[OutputDataset(namespace=d["namespace"], name=d["name"]) for d in event["outputs"]],
        producer=event["producer"],
    )
    return dict(Serde.to_dict(model))


def _check_with_the_client_models(event: dict[str, Any]) -> None:
    core = _rebuilt(event)
    for key in ("eventType", "eventTime", "producer", "schemaURL"):
        assert core[key] == event[key], key
    assert core["run"]["runId"] == event["run"]["runId"]
    assert event["schemaURL"] == RUN_EVENT_SCHEMA
    for facet in event["run"].get("facets", {}).values():
        assert facet["_producer"] and facet["_schemaURL"]


def test_a_gate_run_emits_start_then_complete_with_its_datasets_and_consent_facet(
    make_store: Any, tmp_path: Path, marquez: Marquez
) -> None:
    store: Store = make_store(MEETINGS)
    store.give_consent("alice", "ai.training", ["content"])
    manifest = _manifest(tmp_path)
    result = store.gate(str(manifest), purpose="ai.training", out=tmp_path / "train")
    assert marquez.refused == 0
    assert [e["eventType"] for e in marquez.events] == ["START", "COMPLETE"]
    start, done = marquez.events
    for event in (start, done):
        _check_with_the_client_models(event)
        assert event["run"]["runId"] == result.dataset_id
        job = (event["job"]["namespace"], event["job"]["name"])
        assert job == ("consentry-test", "consentry.gate.train")
    [source] = done["inputs"]
    assert source["namespace"] == "file" and source["name"] == str(manifest.resolve())
    digests = result.lineage.data["digests"]
    assert source["facets"]["version"]["datasetVersion"] == digests["input_sha256"]
    assert source["inputFacets"]["inputStatistics"]["rowCount"] == 3
    outputs = {Path(d["name"]).name: d for d in done["outputs"]}
    assert set(outputs) == {"allowed.parquet", "excluded.parquet"}
    allowed, excluded = outputs["allowed.parquet"], outputs["excluded.parquet"]
    assert allowed["outputFacets"]["outputStatistics"]["rowCount"] == result.allowed == 2
    assert excluded["outputFacets"]["outputStatistics"]["rowCount"] == result.excluded == 1
    assert allowed["facets"]["version"]["datasetVersion"] == digests["output_sha256"]
    assert excluded["facets"]["version"]["datasetVersion"] == digests["excluded_sha256"]
    fields = [f["name"] for f in allowed["facets"]["schema"]["fields"]]
    assert "item_id" in fields and "subject_ids" in fields
    facet = done["run"]["facets"]["consentry"]
    assert facet["_producer"] == PRODUCER and facet["_schemaURL"] == FACET_SCHEMA
    assert facet["purpose"] == "ai.training" and facet["asOf"] == result.as_of
    assert facet["policyVersion"] == result.policy_version
    assert facet["ledgerSeq"] == result.ledger_seq
    assert facet["counts"]["excludedByReason"] == result.excluded_by_reason
    assert facet["digests"] == digests
    assert facet["recordSha256"] == result.lineage.sha256


def test_a_failing_gate_run_emits_fail(make_store: Any, tmp_path: Path, marquez: Marquez) -> None:
    store: Store = make_store(MEETINGS)
    bad = tmp_path / "manifest.csv"
    bad.write_text("item_id,subject_ids,category\ni1,alice\n")  # a row of the wrong width
    with pytest.raises(Exception):  # noqa: B017 (the gate's own typed error)
        store.gate(str(bad), purpose="ai.training", out=tmp_path / "out")
    assert [e["eventType"] for e in marquez.events] == ["START", "FAIL"]
    failed = marquez.events[1]
    _check_with_the_client_models(failed)
    assert "line" in failed["run"]["facets"]["errorMessage"]["message"]
    assert failed["run"]["facets"]["errorMessage"]["programmingLanguage"] == "python"


def test_model_register_emits_a_run_from_its_datasets_to_the_model(
    make_store: Any, tmp_path: Path, marquez: Marquez
) -> None:
    store: Store = make_store(MEETINGS)
    store.give_consent("alice", "ai.training", ["content"])
    result = store.gate(str(_manifest(tmp_path)), purpose="ai.training", out=tmp_path / "train")
    model = store.register_model("asr", [result.dataset_id], version="3")
    event = marquez.events[-1]
    _check_with_the_client_models(event)
    assert event["eventType"] == "COMPLETE" and event["run"]["runId"] == model.id
    assert event["job"]["name"] == "consentry.model.asr"
    # Its input is the gate run's output, by name: the two runs join up in Marquez.
    gate_allowed = next(
        d["name"] for d in marquez.events[1]["outputs"] if d["name"].endswith("allowed.parquet")
    )
    assert [(d["namespace"], d["name"]) for d in event["inputs"]] == [("file", gate_allowed)]
    [output] = event["outputs"]
    assert output["name"] == "models/asr" and output["facets"]["version"]["datasetVersion"] == "3"
    assert event["run"]["facets"]["consentry"]["models"][0]["id"] == model.id


def test_off_by_default(
    make_store: Any, tmp_path: Path, marquez: Marquez, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENLINEAGE_URL")
    store: Store = make_store(MEETINGS)
    store.gate(str(_manifest(tmp_path)), purpose="ai.training", out=tmp_path / "a")
    monkeypatch.setenv("OPENLINEAGE_URL", marquez.url)
    monkeypatch.setenv("CONSENTRY_OPENLINEAGE", "off")  # set, but switched off
    store.gate(str(_manifest(tmp_path)), purpose="ai.training", out=tmp_path / "b")
    assert marquez.events == []


def test_the_file_transport_and_a_failing_transport(
    make_store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENLINEAGE_URL", raising=False)
    log = tmp_path / "lineage.jsonl"
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__TYPE", "file")
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__LOG_FILE_PATH", str(log))
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__APPEND", "true")
    store: Store = make_store(MEETINGS)
    store.gate(str(_manifest(tmp_path)), purpose="ai.training", out=tmp_path / "a")
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    for event in events:
        _check_with_the_client_models(event)
    # A transport that cannot write does not fail the run: lineage is reported, not transacted.
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__LOG_FILE_PATH", str(tmp_path / "no" / "x.jsonl"))
    again = store.gate(str(_manifest(tmp_path)), purpose="ai.training", out=tmp_path / "b")
    assert again.input_items == 3
