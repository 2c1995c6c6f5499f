"""consentry import: consents from another system keep their dates (captured_at), which expiry
and re-consent count from; idempotent per source_id; a file with errors writes nothing."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from consentry import Store
from consentry.canonical import canonical_json
from consentry.cli import app as cli
from consentry.ids import new_id, new_ids
from consentry.imports import STATUS_KINDS, ImportRefused, _Row
from consentry.ledger.events import Kind
from consentry.store import load_state
from support import FakeClock

HEADER = "subject,purpose,categories,status,captured_at,method,notice_version,source_id\n"


def write(tmp_path: Path, text: str, name: str = "consents.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def events(store: Store) -> int:
    return store.ledger.count()


def test_rows_keep_their_captured_at_and_expiry_counts_from_it(
    any_store: Store, clock: FakeClock, tmp_path: Path
) -> None:
    # The test policy's train-content rule: consent, expires after 30 days. Now: 2024-03-01.
    file = write(
        tmp_path,
        HEADER
        + "old,ai.training,content.audio;content.video,given,2024-01-15T09:00:00Z,banner,ot-3,r-1\n"
        + "new,ai.training,content.audio,given,2024-02-20T09:00:00+02:00,app,ot-3,r-2\n",
    )
    before = events(any_store)
    report = any_store.import_consents(file, source="onetrust")
    assert (report.rows, report.recorded, report.already) == (2, 2, 0)
    assert events(any_store) == before + 2
    event = any_store.event(report.first_seq or 0)
    assert event.at == clock()  # ledger time: when it was imported
    assert event.payload == {"captured_at": "2024-01-15T09:00:00.000000Z",
                             "imported_from": "onetrust"}  # fmt: skip
    assert event.idempotency_key == "import:r-1" and event.method == "banner"
    assert event.notice_version == "ot-3" and event.actor == "import"

    # 46 days old: expired, though recorded a moment ago; 10 days old: allowed, for 20 more.
    assert any_store.check("old", "ai.training", "content.audio").reason == "expired"
    assert any_store.check("new", "ai.training", "content.audio").reason == "consent"
    state = any_store.subject_state("new")
    assert state["consents"][0]["at_us"] == int(
        datetime(2024, 2, 20, 7, tzinfo=UTC).timestamp() * 1_000_000
    )
    clock.advance(days=20, hours=6, minutes=59)
    assert any_store.check("new", "ai.training", "content.audio").reason == "consent"
    clock.advance(minutes=1)  # 30 days after 2024-02-20T07:00Z
    assert any_store.check("new", "ai.training", "content.audio").reason == "expired"
    # What the store keeps verifies: the chain, the MACs, the state tables against the events.
    result = any_store.verify()
    assert result.ok and not result.divergences, result


def test_reconsent_counts_from_captured_at(
    any_store: Store, clock: FakeClock, tmp_path: Path
) -> None:
    # v2 (effective 2024-06-01) asks for re-consent: a choice captured before it is stale,
    # even if it was imported after.
    clock.set(datetime(2024, 6, 10, tzinfo=UTC))
    file = write(
        tmp_path,
        HEADER
        + "u1,ai.training,content.audio,given,2024-05-25T00:00:00Z,banner,,r-1\n"
        + "u2,ai.training,content.audio,given,2024-06-05T00:00:00Z,banner,,r-2\n",
    )
    any_store.import_consents(file)
    assert any_store.check("u1", "ai.training", "content.audio").reason == "stale_consent"
    assert any_store.check("u2", "ai.training", "content.audio").reason == "consent"
    assert any_store.stale_consents(any_store.policy("v2")) == {"train-content": 1}


def test_an_import_is_idempotent_per_source_id(any_store: Store, tmp_path: Path) -> None:
    file = write(tmp_path, HEADER + "u1,ai.training,content.audio,given,2024-02-01,x,,r-1\n")
    first = any_store.import_consents(file)
    count = events(any_store)
    again = any_store.import_consents(file)
    assert (again.recorded, again.already) == (0, 1)
    assert again.already_lines == [(2, any_store.event(first.first_seq or 0).id)]
    assert events(any_store) == count
    # More rows later: only the new ones are recorded.
    write(
        tmp_path,
        HEADER
        + "u1,ai.training,content.audio,given,2024-02-01,x,,r-1\n"
        + "u2,ai.training,content.audio,refused,2024-02-02,x,,r-2\n",
    )
    third = any_store.import_consents(file)
    assert (third.recorded, third.already) == (1, 1) and events(any_store) == count + 1
    # The same source id for a different choice is an error of its row; nothing is written.
    write(tmp_path, HEADER + "u1,ai.training,content.audio,withdrawn,2024-02-01,x,,r-1\n")
    with pytest.raises(ImportRefused) as refused:
        any_store.import_consents(file)
    (error,) = refused.value.errors
    assert (error.line, error.field) == (2, "source_id") and "different content" in error.message
    assert events(any_store) == count + 1


def test_a_file_with_errors_writes_nothing_and_names_each_line_and_field(
    any_store: Store, tmp_path: Path
) -> None:
    file = write(
        tmp_path,
        HEADER
        + "ok,ai.training,content.audio,given,2024-02-01T00:00:00Z,x,,r-1\n"
        + "u2,ai.trainning,content.audio,given,2024-02-01T00:00:00Z,x,,r-2\n"
        + "u3,ai.training,content.audio,maybe,2024-02-01T00:00:00Z,x,,r-3\n"
        + "u4,ai.training,content.audio,given,2030-01-01T00:00:00Z,x,,r-4\n"
        + "u5,ai.training,content.audio,given,2024-02-01T00:00:00,x,,r-5\n"
        + "u6,ai.training,,given,2024-02-01T00:00:00Z,x,,r-6\n"
        + ",ai.training,content.audio,given,2024-02-01T00:00:00Z,x,,r-7\n"
        + "u8,ai.training,content.audio,given,2024-02-01T00:00:00Z,x,,r-1\n"
        + "u9,ai.training,content.audio,given,2024-02-01T00:00:00Z,x,\n",
    )
    before = events(any_store)
    with pytest.raises(ImportRefused) as refused:
        any_store.import_consents(file)
    found = [(e.line, e.field) for e in refused.value.errors]
    assert found == [
        (3, "purpose"), (4, "status"), (5, "captured_at"), (6, "captured_at"),
        (7, "categories"), (8, "subject"), (9, "source_id"), (10, "*"),
    ]  # fmt: skip
    messages = {e.line: e.message for e in refused.value.errors}
    assert "ai.training" in messages[3]  # the nearest known purpose is suggested
    assert "future" in messages[5] and "time zone" in messages[6]
    assert "repeats line 2" in messages[9]
    assert events(any_store) == before  # not even the good row
    assert refused.value.to_problem()["errors"][0] == {
        "line": 3, "field": "purpose", "message": messages[3]
    }  # fmt: skip


def test_json_lines_and_a_header_with_unknown_columns(any_store: Store, tmp_path: Path) -> None:
    rows = [
        {"subject": "u1", "purpose": "ai.training", "categories": ["content.audio"],
         "status": "given", "captured_at": "2024-02-01T00:00:00Z", "policy_version": "fides-4",
         "source_id": "f-1", "language": "fr"},
        {"subject": "u2", "purpose": "ai.training", "categories": "content.audio",
         "status": "withdrawn", "captured_at": "2024-02-01T00:00:00Z", "source_id": "f-2"},
    ]  # fmt: skip
    file = write(tmp_path, "\n".join(json.dumps(r) for r in rows) + "\n", "c.jsonl")
    report = any_store.import_consents(file)
    assert report.recorded == 2 and report.format == "jsonl"
    event = any_store.event(report.first_seq or 0)
    assert (event.notice_version, event.language, event.method) == ("fides-4", "fr", "import")
    bad = write(tmp_path, "subject,purpose,cats,status,captured_at,source_id\n", "bad.csv")
    with pytest.raises(ImportRefused) as refused:
        any_store.import_consents(bad)
    assert [(e.line, e.field) for e in refused.value.errors] == [(1, "cats"), (1, "categories")]


def test_a_newer_choice_stands(any_store: Store, tmp_path: Path) -> None:
    """A row older than the subject's record (a choice made here since, or a later row of the
    file) is recorded as history but changes nothing for that category."""
    any_store.withdraw_consent("u1", "ai.training", ["content.audio"])  # now: 2024-03-01
    file = write(
        tmp_path,
        HEADER
        + "u1,ai.training,content.audio;content.video,given,2024-02-20T00:00:00Z,x,,r-1\n"
        + "u2,ai.training,content.audio,refused,2024-02-25T00:00:00Z,x,,r-2\n"
        + "u2,ai.training,content.audio,given,2024-02-21T00:00:00Z,x,,r-3\n",
    )
    report = any_store.import_consents(file)
    assert (report.recorded, report.superseded) == (3, 2)
    assert any_store.check("u1", "ai.training", "content.audio").reason == "withdrawn"
    assert any_store.check("u1", "ai.training", "content.video").reason == "consent"
    assert any_store.check("u2", "ai.training", "content.audio").reason == "refused"
    assert any_store.event(report.first_seq or 0).payload["superseded"] == ["content.audio"]
    result = any_store.verify()
    assert result.ok and not result.divergences
    # Rebuilding the state from the chain gives the same answer (the rule is in the event).
    assert not any_store.rebuild_state().changed


def test_dry_run_writes_nothing(any_store: Store, tmp_path: Path) -> None:
    file = write(tmp_path, HEADER + "u1,ai.training,content.audio,given,2024-02-01,x,,r-1\n")
    before = events(any_store)
    report = any_store.import_consents(file, dry_run=True)
    assert (report.pending, report.recorded) == (1, 0) and events(any_store) == before


def test_the_command(tmp_path: Path, clock: FakeClock) -> None:
    url = f"sqlite:///{tmp_path}/cli.db"
    store = Store(url, clock=clock)
    store.init(policies=[Path(__file__).parent / "data" / "decisions.yaml"])
    store.close()
    runner = CliRunner()
    good = write(tmp_path, HEADER + "u1,ai.training,content.audio,given,2024-02-01,x,,r-1\n")
    result = runner.invoke(cli, ["--db", url, "import", str(good), "--source", "onetrust"])
    assert result.exit_code == 0, result.output
    assert "1 row(s): recorded 1, already imported 0" in result.output
    # (Without --source this time: the label is not part of what a source id names.)
    result = runner.invoke(cli, ["--db", url, "import", str(good), "--json"])
    assert json.loads(result.output)["already"] == 1
    bad = write(tmp_path, HEADER + "u1,ai.training,content.audio,nope,2024-02-01,x,,r-2\n", "b.csv")
    result = runner.invoke(cli, ["--db", url, "import", str(bad)])
    assert result.exit_code == 2
    assert "line 2, status: 'nope' is not one of given, refused, withdrawn" in result.output
    assert "nothing was imported" in result.output


def test_progress_is_reported_per_batch(store: Store, tmp_path: Path) -> None:
    lines = [f"u{i},ai.training,content.audio,given,2024-02-01,x,,r-{i}\n" for i in range(7)]
    file = write(tmp_path, HEADER + "".join(lines))
    seen: list[tuple[int, int]] = []
    report = store.import_consents(file, batch_size=3, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(0, 7), (3, 7), (6, 7), (7, 7)]
    # Three transactions, the events in the order of the file.
    assert report.recorded == 7 and report.last_seq == (report.first_seq or 0) + 6


TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=8)


@settings(max_examples=200, deadline=None)
@given(
    subject=TEXT,
    purpose=TEXT,
    categories=st.lists(TEXT, max_size=3).map(tuple),
    captured=TEXT,
    method=TEXT,
    notice=st.one_of(st.none(), TEXT),
    language=st.one_of(st.none(), TEXT),
    kind=st.sampled_from(sorted(STATUS_KINDS.values())),
)
def test_the_asked_template_is_the_canonical_json(
    subject: str,
    purpose: str,
    categories: tuple[str, ...],
    captured: str,
    method: str,
    notice: str | None,
    language: str | None,
    kind: Kind,
) -> None:
    # The bulk path spells a row's request from a template: byte for byte what the sorted
    # dump gives, whatever the text (quotes, backslashes, control characters, non-ASCII).
    row = _Row(1, subject, purpose, categories, kind, captured, 0, method, notice, language, "s")
    assert row.asked_json() == canonical_json(row.asked())


def test_new_ids_are_uuid7_increasing_with_the_single_ones() -> None:
    made = [new_id(), *new_ids(9_000), new_id(), *new_ids(1), new_id()]
    assert made == sorted(made) and len(set(made)) == len(made)
    assert all(uuid.UUID(i).version == 7 and str(uuid.UUID(i)) == i for i in made)
    assert new_ids(0) == []


def test_a_bulk_import_verifies_and_matches_single_writes(any_store: Store, tmp_path: Path) -> None:
    # One transaction of many events (ids, salts, the chain drawn in bulk): the chain, the
    # MACs and the state audit all verify, seq has no gap, and the state is the replay's.
    lines = ["subject,purpose,categories,status,captured_at,source_id"]
    lines += [
        f"b{i % 7},ai.training,content.audio;content.video,{('given', 'refused')[i % 2]},"
        f"2023-0{1 + i % 9}-01T00:00:0{i % 10}Z,bulk-{i}"
        for i in range(300)
    ]
    path = tmp_path / "bulk.csv"
    path.write_text("\n".join(lines) + "\n")
    head = any_store.ledger.head()[0]
    report = any_store.import_consents(path, batch_size=128)
    assert report.recorded == 300
    seqs = [e.seq for e in any_store.ledger.events(after_seq=head)]
    assert seqs == list(range(head + 1, head + 301))
    result = any_store.verify()
    assert result.ok and not result.divergences, result
    assert any_store.audit_state().ok
    assert any_store.state().consents == load_state(any_store.ledger).consents
