"""consentry subject export and Store.export_subject (the HTTP side is in
tests/api/test_api_export.py)."""

from __future__ import annotations

import io
import json
import stat
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from consentry import Store
from consentry.cli import app as cli
from consentry.errors import NotFound
from consentry.ledger.evidence import verify_receipt_offline
from support import FakeClock

HEADER = "subject,purpose,categories,status,captured_at,method,notice_version,source_id\n"


def test_an_imported_choice_is_exported_with_its_captured_at(
    any_store: Store, tmp_path: Path
) -> None:
    file = tmp_path / "c.csv"
    file.write_text(HEADER + "u1,ai.training,content.audio,given,2024-02-01T08:00:00Z,x,ot,r\n")
    any_store.import_consents(file)
    any_store.withdraw_consent("u1", "ai.training", ["content.audio"], language="en")
    with zipfile.ZipFile(io.BytesIO(any_store.export_subject("u1"))) as z:
        events = json.loads(z.read("events.json"))
        rows = z.read("events.csv").decode("utf-8-sig").splitlines()
        checkpoint = z.read("checkpoint.txt").decode()
        keys = json.loads(z.read("public-keys.json"))
        receipts = [json.loads(z.read(n)) for n in z.namelist() if n.startswith("receipts/")]
    assert [e["captured_at"] for e in events] == ["2024-02-01T08:00:00.000000Z", None]
    assert ",2024-02-01T08:00:00.000000Z,consent.given," in rows[1]
    assert len(receipts) == 2
    for receipt in receipts:
        check = verify_receipt_offline(
            receipt,
            receipt_key=keys["receipt_public_key"],
            log_key=keys["log_verifier_key"],
            checkpoint=checkpoint,
        )
        assert check.checkpoint.size == any_store.ledger.count()
    # The receipt's evidence carries the original moment (covered by the event's hash).
    (given,) = [r for r in receipts if r["evidence"]["event"]["kind"] == "consent.given"]
    assert given["evidence"]["event"]["payload"]["captured_at"] == "2024-02-01T08:00:00.000000Z"


def test_an_unknown_subject_is_not_found(any_store: Store) -> None:
    with pytest.raises(NotFound, match="no subject 'ghost'"):
        any_store.export_subject("ghost")


def test_the_command(tmp_path: Path, clock: FakeClock) -> None:
    url = f"sqlite:///{tmp_path}/cli.db"
    with Store(url, clock=clock) as store:
        store.init(policies=[Path(__file__).parent / "data" / "decisions.yaml"])
        store.give_consent("bob", "ai.training", ["content.audio"], language="en")
        store.add_member("bob", "acme")
    runner = CliRunner()
    target = tmp_path / "bob.zip"
    result = runner.invoke(cli, ["--db", url, "subject", "export", "bob", "--out", str(target)])
    assert result.exit_code == 0, result.output
    assert f"wrote {target}" in result.output
    assert stat.S_IMODE(target.stat().st_mode) == 0o600  # personal data: the owner's only
    with zipfile.ZipFile(target) as z:
        assert json.loads(z.read("memberships.json"))["accounts"] == ["acme"]
        assert z.read("README.txt").decode().startswith("Your data in consentry")
    result = runner.invoke(cli, ["--db", url, "subject", "export", "ghost", "--out", "-"])
    assert result.exit_code == 2 and "no subject 'ghost'" in result.output
