"""Notice-served evidence: ``notice.served`` events, consents that name them, and the two
traces of the Kantara ANCR draft (level B: controller identification -> notice ->
authorisation -> enforcement)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from consentry import Store
from consentry.cli import app as cli
from consentry.errors import InvalidInput, UnknownName
from consentry.ledger.events import NOTICE_SERVED, Kind
from consentry.ledger.evidence import verify_receipt_offline
from support import MEETINGS, FakeClock, allow_tampering


@pytest.fixture
def meetings(make_store: Any) -> Store:
    return make_store(MEETINGS)  # the clock says 2024-03-01: version 2023-08 is in effect


def _cli(url: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--db", url, *args])
    return result.exit_code, result.output


def test_a_served_notice_is_recorded_with_the_digest_of_its_exact_text(meetings: Store) -> None:
    event, recorded = meetings.serve_notice("u1", language="fr", method="signup-form")
    policy = meetings.policy("2023-08")
    assert recorded and event.kind is Kind.NOTICE_SERVED
    assert (event.subject, event.notice_version, event.language) == ("u1", "2023-08", "fr")
    assert event.payload == {"notice_sha256": policy.notices["fr"].digest()}
    # The digest is of the text served in that language, not of the authoritative one.
    assert policy.notices["fr"].digest() != policy.notices["en"].digest()
    assert meetings.verify().ok and meetings.audit_state().ok


def test_serving_is_rate_limited_per_subject_version_and_language(
    meetings: Store, clock: FakeClock
) -> None:
    first, recorded = meetings.serve_notice("u1", language="en")
    again, recorded_again = meetings.serve_notice("u1", language="en")
    assert recorded and not recorded_again and again.id == first.id  # a reload: nothing new
    assert meetings.serve_notice("u1", language="fr")[1]  # another language counts
    assert meetings.serve_notice("u2", language="en")[1]  # another person too
    assert meetings.serve_notice("u1", notice_version="2023-07", language="en")[1]
    clock.advance(hours=25)
    later, recorded_later = meetings.serve_notice("u1", language="en")
    assert recorded_later and later.id != first.id  # a day later it is recorded again
    served = [e for e in meetings.log(subject="u1") if e.kind is Kind.NOTICE_SERVED]
    assert len(served) == 4


def test_bad_notice_requests_are_refused(meetings: Store, make_store: Any, tmp_path: Path) -> None:
    with pytest.raises(UnknownName, match="language"):
        meetings.serve_notice("u1", language="de")
    with pytest.raises(UnknownName, match="policy version"):
        meetings.serve_notice("u1", notice_version="2031-01")
    bare = tmp_path / "bare.yaml"
    text = MEETINGS.read_text().split("\n---\n")[1]
    bare.write_text(text.split("\nnotices:")[0] + "\n")
    with pytest.raises(InvalidInput, match="no notice to serve"):
        make_store(bare).serve_notice("u1")


def test_ancr_happy_path_controller_notice_authorisation_enforcement(
    meetings: Store, clock: FakeClock
) -> None:
    """Trace 1: the controller is identified, the notice is shown, the person consents, and
    the decision relies on that consent; the receipt binds the notice and the consent, and
    verifies with no flag."""
    served, _ = meetings.serve_notice("u1", language="id", method="app-dialog")
    clock.advance(minutes=2)
    consent = meetings.give_consent(
        "u1", "ai.training", ["content.chat"], language="id", method="app-dialog"
    )
    assert consent.payload == {NOTICE_SERVED: served.id}  # in the hashed chain
    decision = meetings.check("u1", "ai.training.feature", "content.chat")
    assert decision.allowed and consent.seq in decision.evidence
    doc = meetings.receipt(consent.id)
    record = doc["receipt"]
    assert record["pii_controllers"][0]["name"] == "Example Meetings Inc."
    assert record["notice"]["served_event"] == {
        "id": served.id,
        "seq": served.seq,
        "at": served.at_text,
        "hash": served.hash,
    }
    assert record["notice"]["notice_sha256"] == served.payload["notice_sha256"]
    check = meetings.verify_receipt(doc)
    assert check.notice_problem is None
    keys = meetings.public_keys()
    offline = verify_receipt_offline(
        doc, receipt_key=keys["receipt_public_keys"], log_key=keys["log_verifier_key"]
    )
    assert offline.notice_problem is None
    assert meetings.consents_without_notice() == []
    assert meetings.verify().ok and meetings.audit_state().ok


def test_ancr_consent_without_a_notice_is_flagged(meetings: Store) -> None:
    """Trace 2: a consent recorded with no earlier notice for its version and language is
    still a valid record, but `receipt verify` flags it and `audit notices` lists it."""
    meetings.serve_notice("u1", language="en")  # shown in English...
    unseen = meetings.give_consent("u1", "ai.training", ["content.chat"], language="fr")
    never = meetings.give_consent("u2", "improvement", ["content.chat"])  # ...and never
    for event in (unseen, never):
        assert NOTICE_SERVED not in event.payload
        doc = meetings.receipt(event.id)
        assert doc["receipt"]["notice"]["served_event"] is None
        check = meetings.verify_receipt(doc)
        assert check.notice_problem is not None and "no notice" in check.notice_problem
    assert [e.id for e in meetings.consents_without_notice()] == [unseen.id, never.id]
    assert [e.id for e in meetings.consents_without_notice(limit=1)] == [unseen.id]


def test_the_commands_flag_and_list_consents_without_a_notice(
    meetings: Store, tmp_path: Path
) -> None:
    url = meetings.url
    meetings.serve_notice("u1")
    good = meetings.give_consent("u1", "ai.training", ["content.chat"])
    bad = meetings.give_consent("u2", "ai.training", ["content.chat"])
    for event, flagged in ((good, False), (bad, True)):
        path = tmp_path / f"{event.id}.json"
        path.write_text(json.dumps(meetings.receipt(event.id)))
        code, out = _cli(url, "receipt", "verify", str(path))
        assert code == 0 and "valid" in out
        assert ("flag" in out and "no notice was recorded" in out) is flagged, out
    code, out = _cli(url, "audit", "notices")
    assert code == 1 and "1 consent(s)" in out and bad.id in out and good.id not in out
    code, out = _cli(url, "audit", "notices", "--json")
    data = json.loads(out)
    assert code == 1 and data["count"] == 1 and data["consents"][0]["id"] == bad.id
    meetings.serve_notice("u2")
    meetings.give_consent("u2", "ai.training", ["content.chat"])  # the newer one is fine...
    code, out = _cli(url, "audit", "notices")
    assert code == 1 and bad.id in out  # ...the old one still lacks its notice


def test_audit_notices_passes_when_every_consent_followed_its_notice(meetings: Store) -> None:
    meetings.serve_notice("u1")
    meetings.give_consent("u1", "ai.training", ["content.chat"])
    code, out = _cli(meetings.url, "audit", "notices")
    assert code == 0 and "every consent followed" in out


def test_an_erased_subject_is_not_listed(meetings: Store) -> None:
    meetings.give_consent("u1", "ai.training", ["content.chat"])
    with meetings.ledger.engine.begin() as conn:  # as erasure leaves it
        allow_tampering(conn)
        conn.exec_driver_sql("UPDATE events SET subject = NULL, nonce = NULL")
    assert meetings.consents_without_notice() == []


def test_notice_evidence_and_key_rotation_on_each_backend(
    backend_url: str, clock: FakeClock
) -> None:
    """The same on SQLite and PostgreSQL: the lookup a consent makes, the audit's query, a
    rotated key kept in `meta` (insert-only there), and `ledger verify` over all of it."""
    with Store(backend_url, clock=clock) as store:
        store.init(policies=[MEETINGS])
        served, _ = store.serve_notice("u1", language="fr")
        good = store.give_consent("u1", "ai.training", ["content.chat"], language="fr")
        bad = store.give_consent("u2", "ai.training", ["content.chat"])
        assert good.payload == {NOTICE_SERVED: served.id}
        assert [e.id for e in store.consents_without_notice()] == [bad.id]
        old = store.receipt(good.id)
        store.rotate_receipt_key()
        assert store.verify_receipt(old).notice_problem is None
        new = store.receipt(bad.id)
        assert store.verify_receipt(new).notice_problem is not None
        assert len(store.jwks()["keys"]) == 2
        result = store.verify()
        assert result.ok, result.problem
        assert store.audit_state().ok
