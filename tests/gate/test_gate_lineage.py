"""Lineage records, models, withdrawal impact, verification, digests, signals and the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from gate_support import manifest
from typer.testing import CliRunner

from consentry import Store
from consentry.errors import IdempotencyConflict, InvalidInput, NotFound
from consentry.gate.result import md5_value, multiset_digest, multiset_of, sorted_digest

ROWS = [
    ("m1", ["alice"], "content.audio", []),
    ("m2", ["alice", "bob"], "content.video", []),
    ("m3", ["bob"], "content.chat", []),
    ("m4", ["carol"], "content.audio", []),
]


def gate(store: Store, out: Path, **kw: Any) -> Any:
    return store.gate(manifest(ROWS), purpose="ai.training", out=out, **kw)


# -- lineage and impact ------------------------------------------------------------------------


def test_lineage_record_and_subject_index(mstore: Store, tmp_path: Path) -> None:
    result = gate(mstore, tmp_path / "o", dataset_name="asr-v1")
    info = mstore.dataset(result.dataset_id)
    assert info.name == "asr-v1" and info.purpose == "ai.training"
    assert (info.input_items, info.output_items, info.subjects) == (4, 3, 2)
    assert info.record.sha256 == result.lineage.sha256
    assert info.ledger_seq == mstore.state().seq
    assert mstore.dataset("asr-v1").id == result.dataset_id  # by name: the latest
    from consentry import lineage

    index = {s: json.loads(c) for s, _, c in lineage.dataset_index(mstore, result.dataset_id)}
    assert index == {
        "alice": {"content.audio": [1, 1], "content.video": [1, 1]},
        "bob": {"content.chat": [1, 1], "content.video": [1, 1]},
    }
    assert [d.id for d in mstore.datasets()] == [result.dataset_id]
    assert mstore.datasets(purpose="improvement") == []
    with pytest.raises(NotFound):
        mstore.dataset("nope")


def test_a_withdrawal_shows_what_to_retrain(mstore: Store, tmp_path: Path) -> None:
    first = gate(mstore, tmp_path / "a")
    second = mstore.gate(
        manifest([("x", ["bob"], "content.audio", [])]), purpose="ai.training", out=tmp_path / "b"
    )
    model = mstore.register_model("whisper-ft", [first.dataset_id], version="3")
    other = mstore.register_model("bob-only", [second.dataset_id])
    impact = mstore.impact("alice")
    assert [d.dataset.id for d in impact.datasets] == [first.dataset_id]
    assert not impact.affected_datasets and [m.id for m in impact.models] == [model.id]

    withdrawal = mstore.withdraw_consent("alice", "ai.training", ["content"])
    impact = mstore.impact("alice")
    (d,) = impact.affected_datasets
    assert d.dataset.id == first.dataset_id and d.changed_since
    assert {c.category: (c.reason_now, c.event_seq) for c in d.categories} == {
        "content.audio": ("withdrawn", withdrawal.seq),
        "content.video": ("withdrawn", withdrawal.seq),
    }
    assert [m.id for m in impact.affected_models] == [model.id]
    data = impact.to_dict()
    assert data["summary"] == {
        "datasets": 1, "datasets_needing_action": 1, "models": 1, "models_needing_action": 1,
    }  # fmt: skip
    # bob's datasets are untouched by alice's withdrawal
    assert not mstore.impact("bob").affected_datasets
    assert {m.id for m in mstore.impact("bob").models} == {model.id, other.id}
    assert mstore.impact("nobody").datasets == ()


def test_a_non_deciding_participant_is_reported_but_needs_no_retraining(
    make_store: Any, tmp_path: Path
) -> None:
    from gate_support import TEST_POLICY

    s = make_store(TEST_POLICY)  # generative-audio: parties: owner
    s.give_consent("owner", "ai.training.generative", ["content.audio"])
    s.give_consent("guest", "ai.training.generative", ["content.audio"])
    t = manifest([("r", ["owner", "guest"], "content.audio", [])])
    s.gate(t, purpose="ai.training.generative", out=tmp_path / "o")
    s.withdraw_consent("guest", "ai.training.generative", ["content.audio"])
    (d,) = s.impact("guest").datasets
    (c,) = d.categories
    assert (c.items, c.decided, c.allowed_now) == (1, 0, False)
    assert d.still_allowed and not d.needs_action


def test_models_and_idempotency(mstore: Store, tmp_path: Path) -> None:
    result = gate(mstore, tmp_path / "o", idempotency_key="nightly-1")
    again = gate(mstore, tmp_path / "elsewhere", idempotency_key="nightly-1")
    assert again.replayed and again.dataset_id == result.dataset_id
    assert not (tmp_path / "elsewhere").exists()
    assert again.paths["allowed"] == result.paths["allowed"].resolve()  # where it was written
    m1 = mstore.register_model("m", [result.dataset_id], idempotency_key="k")
    m2 = mstore.register_model("m", [result.dataset_id], idempotency_key="k")
    assert m1.id == m2.id and len(mstore.models()) == 1
    with pytest.raises(IdempotencyConflict):
        mstore.register_model("other", [result.dataset_id], idempotency_key="k")
    with pytest.raises(NotFound):
        mstore.register_model("m", ["no-such-dataset"])
    with pytest.raises(InvalidInput):
        mstore.register_model("m", [])
    assert mstore.model(m1.id).datasets == (result.dataset_id,)
    assert [m.name for m in mstore.dataset(result.dataset_id).models] == ["m"]


# -- verification and digests ------------------------------------------------------------------


def test_verify_catches_changed_outputs(mstore: Store, tmp_path: Path) -> None:
    out = tmp_path / "o"
    result = gate(mstore, out)
    assert mstore.verify_dataset(out).ok
    allowed = pq.read_table(result.paths["allowed"])
    pq.write_table(allowed.slice(1), result.paths["allowed"])  # drop an item
    report = mstore.verify_dataset(out)
    assert not report.ok
    failed = {p.split(":")[0] for p in report.problems}
    assert {"allowed items", "output digest", "input digest"} <= failed


def test_verify_catches_a_changed_report_and_record(mstore: Store, tmp_path: Path) -> None:
    out = tmp_path / "o"
    result = gate(mstore, out)
    path = out / "report.json"
    data = json.loads(path.read_text())
    data["counts"]["allowed"] = 99
    path.write_text(json.dumps(data))
    report = mstore.verify_dataset(out)
    assert {p.split(":")[0] for p in report.problems} >= {"report", "allowed items", "store record"}
    from consentry.gate import verify_output

    assert not verify_output(out).ok  # without a store too
    other = Store(f"sqlite:///{tmp_path}/other.db")
    other.init()
    data["counts"]["allowed"] = 3
    path.write_text(json.dumps(data))
    assert "store record" in " ".join(other.verify_dataset(out).problems)
    assert result.dataset_id in " ".join(other.verify_dataset(out).problems)


def test_multiset_digest_is_the_documented_formula(mstore: Store, tmp_path: Path) -> None:
    result = gate(mstore, tmp_path / "o", digest="multiset")
    digests = result.lineage.data["digests"]
    ids = [r[0] for r in ROWS]
    assert digests["input_sha256"] == multiset_of(ids)
    assert digests["output_sha256"] == multiset_of(["m1", "m2", "m3"])
    total = sum(md5_value(i) for i in ids)
    assert multiset_of(ids) == multiset_digest(4, total)
    # order-free: the same ids in another order give the same digest
    assert multiset_of(reversed(ids)) == multiset_of(ids)


def test_sorted_digest_is_sha256_of_sorted_ids(mstore: Store, tmp_path: Path) -> None:
    """The DuckDB engine's default: what `LC_ALL=C sort ids | sha256sum` prints."""
    import hashlib

    result = gate(mstore, tmp_path / "o")
    d = result.lineage.data["digests"]
    assert d["method"] == "sorted-sha256-v1"
    assert d["input_sha256"] == hashlib.sha256(b"m1\nm2\nm3\nm4\n").hexdigest()
    assert d["output_sha256"] == sorted_digest(["m3", "m1", "m2"])
    assert mstore.verify_dataset(tmp_path / "o").ok


# -- signals ------------------------------------------------------------------------------------


def test_source_opt_outs_are_excluded(mstore: Store, tmp_path: Path) -> None:
    t = manifest(ROWS, source_url=["https://a.example/1", "https://b.example/2", None, "x"])
    result = mstore.gate(
        t, purpose="ai.training", out=tmp_path / "o", signals={"https://a.example/1"}
    )
    excluded = {
        r["item_id"]: r["reason"] for r in pq.read_table(result.paths["excluded"]).to_pylist()
    }
    assert excluded == {"m1": "source_opt_out", "m4": "refused"}
    assert result.lineage.data["signals"] == {"file": None, "opted_out_urls": 1}
    with pytest.raises(InvalidInput, match="no 'source_url' column"):
        mstore.gate(manifest(ROWS), purpose="ai.training", out=tmp_path / "p", signals={"x"})


def test_signals_table_file(mstore: Store, tmp_path: Path) -> None:
    pytest.importorskip("consentry.signals")
    signals = tmp_path / "signals.csv"
    signals.write_text(
        "url,host,decision,signal,evidence,purpose,user_agent,error,checked_at\n"
        "https://b.example/2,b.example,deny,robots,,train-ai,bot,,2024-01-01\n"
        "https://a.example/1,a.example,allow,robots,,train-ai,bot,,2024-01-01\n",
        encoding="utf-8",
    )
    t = manifest(ROWS, source_url=["https://a.example/1", "https://b.example/2", None, "x"])
    result = mstore.gate(t, purpose="ai.training", out=tmp_path / "o", signals=signals)
    assert result.excluded_by_reason == {"refused": 1, "source_opt_out": 1}


# -- the CLI ------------------------------------------------------------------------------------

runner = CliRunner()


@pytest.fixture
def cli_db(mstore: Store, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("CONSENTRY_DATABASE_URL", mstore.url)
    return mstore.url


def run(*args: str) -> tuple[int, str]:
    from consentry.cli import app

    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_cli_tour(cli_db: str, tmp_path: Path) -> None:
    path = tmp_path / "m.parquet"
    pq.write_table(manifest(ROWS), path)
    out = tmp_path / "run-1"
    code, text = run("gate", str(path), "--purpose", "ai.training", "--out", str(out))
    assert code == 0, text
    assert "4 items: 3 allowed, 1 excluded" in text and "refused" in text
    code, text = run("gate", str(path), "--purpose", "ai.training", "--out", str(out))
    assert code == 2 and "already exists" in text and "--overwrite" in text
    code, text = run("gate", str(path), "-p", "ai.training", "-o", str(out), "--overwrite",
                     "--json", "--format", "csv", "--dataset-name", "asr")  # fmt: skip
    assert code == 0, text
    data = json.loads(text)
    assert data["counts"]["allowed"] == 3 and data["name"] == "asr"
    assert data["paths"]["allowed"].endswith("allowed.csv")
    dataset_id = data["dataset_id"]
    code, text = run("gate", "verify", str(out))
    assert code == 0 and "verified" in text, text
    code, text = run("datasets", "list", "--json")
    assert code == 0 and dataset_id in [d["id"] for d in json.loads(text)]
    code, text = run("datasets", "show", dataset_id)
    assert code == 0 and "input_sha256" in text
    code, text = run("model", "register", "asr-model", "--dataset", dataset_id, "--meta", "r=1")
    assert code == 0 and "asr-model" in text
    code, text = run("impact", "alice", "--json")
    assert code == 0 and json.loads(text)["summary"]["datasets_needing_action"] == 0
    assert run("consent", "withdraw", "alice", "ai.training", "-c", "content")[0] == 0
    code, text = run("impact", "alice")
    assert code == 1 and "2 of 2 dataset(s) and 1 of 1 model(s) need retraining" in text
    code, text = run("impact", "alice", "--json")
    assert [m["name"] for m in json.loads(text)["models"] if m["needs_action"]] == ["asr-model"]
    code, text = run("gate", str(path), "--purpose", "ai.training", "--out", str(tmp_path / "x"),
                     "--as-of", data["as_of"], "--json")  # fmt: skip
    assert code == 0 and json.loads(text)["counts"]["allowed"] == 3  # as it was


def test_cli_errors_are_one_clear_message(cli_db: str, tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("item_id,subject_ids,category\na,,content.audio\n", encoding="utf-8")
    code, text = run("gate", str(path), "--purpose", "ai.training", "--out", str(tmp_path / "o"))
    assert code == 2
    assert "Error:" in text and "m.csv" in text and "row 1" in text and "Traceback" not in text
    assert not (tmp_path / "o").exists()
    code, text = run("gate", "verify", str(tmp_path))
    assert code == 2 and "report.json" in text


def test_cli_verify_fails_on_a_changed_output(cli_db: str, tmp_path: Path) -> None:
    path = tmp_path / "m.parquet"
    pq.write_table(manifest(ROWS), path)
    out = tmp_path / "o"
    assert run("gate", str(path), "--purpose", "ai.training", "--out", str(out))[0] == 0
    pq.write_table(pa.table({"item_id": ["zzz"], "reason": ["refused"],
                             "blocking_subject": ["x"], "event_seq": [1]}),
                   out / "excluded.parquet")  # fmt: skip
    code, text = run("gate", "verify", str(out), "--json")
    assert code == 1
    assert not json.loads(text)["ok"]


def test_sorted_digests_split_one_sorted_run_three_ways() -> None:
    """One sort of both outputs' ids gives the input, output and excluded digests, each what
    `LC_ALL=C sort | sha256sum` gives for its ids (bytewise order: "é" after "z")."""
    import hashlib

    import duckdb
    import pyarrow as pa

    from consentry.gate.measure import _data, _lines, sorted_digests

    con = duckdb.connect()
    con.execute("CREATE TABLE al AS SELECT * FROM (VALUES ('m3'), ('é1'), ('m1')) t(item_id)")
    con.execute("CREATE TABLE ex AS SELECT * FROM (VALUES ('z'), ('m2')) t(item_id)")
    n, inp, out, excl = sorted_digests(con, "al", "ex")
    assert n == 3
    assert inp == hashlib.sha256("m1\nm2\nm3\nz\né1\n".encode()).hexdigest()
    assert out == hashlib.sha256("m1\nm3\né1\n".encode()).hexdigest()
    assert excl == hashlib.sha256(b"m2\nz\n").hexdigest()
    # Whatever string layout the Arrow batches come in, sliced or not.
    for kind in (pa.string(), pa.large_string(), pa.string_view()):
        ids = pa.array(["x", "é", "a"], kind).slice(1)
        assert bytes(_data(_lines(ids))) == "é\na\n".encode()
        assert bytes(_data(_lines(ids).filter(pa.array([False, True])))) == b"a\n"
