"""The CLI: a tour of the commands, exit codes, and errors without tracebacks."""

from __future__ import annotations

import json
from pathlib import Path

import jwt
import pytest
from typer.testing import CliRunner

from consentry.cli import app
from support import MEETINGS, allow_tampering

runner = CliRunner()


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path}/cli.db"
    monkeypatch.setenv("CONSENTRY_DATABASE_URL", url)
    result = runner.invoke(app, ["init", "--policy", str(MEETINGS)])
    assert result.exit_code == 0, result.output
    assert "2023-08: published" in result.output
    return url


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_tour(db: str, tmp_path: Path) -> None:
    assert run("member", "add", "alice", "acme")[0] == 0
    assert run("member", "add", "bob", "acme")[0] == 0
    code, out = run(
        "consent",
        "give",
        "alice",
        "ai.training",
        "-c",
        "content.audio",
        "--lang",
        "id",
        "--method",
        "web",
        "--json",
    )
    assert code == 0
    event = json.loads(out)
    assert event["kind"] == "consent.given" and event["language"] == "id"

    code, out = run("check", "ai.training", "content.audio", "--subject", "alice")
    assert code == 0 and "allow (consent)" in out
    code, out = run(
        "check", "ai.training", "content.audio", "-s", "alice", "-s", "bob", "--explain"
    )
    assert code == 1 and "deny (no_consent)" in out and "decided by subject: bob" in out
    code, out = run(
        "check", "ai.training", "content.audio", "-s", "alice", "--label", "health", "--json"
    )
    assert code == 1 and json.loads(out)["reason"] == "protected_label"

    assert run("account", "set", "acme", "ai.training", "off")[0] == 0
    code, out = run("check", "ai.training", "content.audio", "-s", "alice")
    assert code == 1 and "account_off" in out
    code, out = run("check", "ai.training", "content.audio", "-s", "alice", "--as-of", event["at"])
    assert code == 0, out

    assert run("account", "feature", "acme", "ai.feature.meeting_summary", "on")[0] == 0
    code, out = run("check", "ai.feature.meeting_summary", "content.transcript", "-s", "bob")
    assert code == 0 and "contract" in out
    # Under 2023-08 nothing in meetings.yaml lets a person object: refused, saying why.
    code, out = run("object", "bob", "improvement", "--category", "service_data")
    assert code == 2 and "you cannot object to this individually" in out

    code, out = run("receipt", "show", event["id"])
    assert code == 0 and json.loads(out)["receipt"]["record_id"] == event["id"]
    path = tmp_path / "receipt.json"
    path.write_text(out)
    code, out = run("receipt", "verify", str(path))
    assert code == 0 and "valid" in out

    code, out = run("ledger", "verify")
    assert code == 0 and out.startswith("ok")
    code, out = run("policy", "diff", "2023-07", "2023-08", "--lang", "fr")
    assert code == 0 and "Ce qui change" in out
    code, out = run("policy", "show", "--lang", "id", "--json")
    assert code == 0 and json.loads(out)["notice"]["machine_translated"] is True
    code, out = run("state", "alice", "--json")
    assert code == 0 and json.loads(out)["accounts"] == ["acme"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("check", "ai.trainig", "content.audio", "-s", "a"), "did you mean 'ai.training'?"),
        (
            ("check", "ai.training", "content.audio", "-s", "a", "--as-of", "yesterday"),
            "not a time consentry understands",
        ),
        (("consent", "give", "a", "ai.training"), "at least one data category"),
        (("account", "set", "acme", "ai.training", "maybe"), "is not one of"),
        (("account", "feature", "acme", "ai.feature", "sometimes"), "not 'on' or 'off'"),
        (("member", "remove", "a", "acme"), "not a member"),
        (("receipt", "show", "no-such-event"), "no event"),
        (("policy", "publish", "missing.yaml"), "does not exist"),
        (("policy", "show", "--version", "2023-09"), "did you mean"),
    ],
)
def test_errors_exit_2_with_a_message_and_no_traceback(
    db: str, args: tuple[str, ...], message: str
) -> None:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_uninitialised_store_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONSENTRY_DATABASE_URL", f"sqlite:///{tmp_path}/none.db")
    code, out = run("check", "ai.training", "content.audio", "-s", "a")
    assert code == 2 and "consentry init" in out
    assert not (tmp_path / "none.db").exists()  # said so, and created nothing


def test_tampered_ledger_exits_1_and_names_the_event(db: str) -> None:
    from sqlalchemy import create_engine, text

    run("member", "add", "alice", "acme")
    with create_engine(db).begin() as conn:
        allow_tampering(conn)  # as someone holding the database file can
        conn.execute(text("UPDATE events SET subject = 'mallory' WHERE seq = 3"))
    code, out = run("ledger", "verify")
    assert code == 1 and "#3" in out and "was changed" in out


def test_receipts_signed_with_a_key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`receipt keygen`, then a store made with `--signing-key` signs with that key; without
    it, receipts still verify but cannot be issued, with a message saying what to set."""
    monkeypatch.setenv("CONSENTRY_DATABASE_URL", f"sqlite:///{tmp_path}/keyed.db")
    # set, then removed: monkeypatch then restores it after the test, whatever the CLI set
    monkeypatch.setenv("CONSENTRY_SIGNING_KEY_FILE", "")
    monkeypatch.delenv("CONSENTRY_SIGNING_KEY_FILE")
    key = tmp_path / "receipts.pem"
    code, out = run("receipt", "keygen", str(key))
    assert code == 0 and "mode 600" in out
    kid = out.split()[2]
    code, out = run("receipt", "keygen", str(key))
    assert code == 2 and "already exists" in out
    assert run("--signing-key", str(key), "init", "--policy", str(MEETINGS))[0] == 0
    code, out = run("consent", "give", "alice", "ai.training", "-c", "content.audio", "--json")
    event = json.loads(out)
    code, out = run("--signing-key", str(key), "receipt", "show", event["id"])
    assert code == 0 and jwt.get_unverified_header(json.loads(out)["jws"])["kid"] == kid
    receipt = tmp_path / "receipt.json"
    receipt.write_text(out)
    monkeypatch.delenv("CONSENTRY_SIGNING_KEY_FILE")  # the callback set it for the process
    code, out = run("receipt", "verify", str(receipt))
    assert code == 0 and f"signed by key {kid}" in out
    code, out = run("receipt", "show", event["id"])
    assert code == 2 and "outside the database" in out and "Traceback" not in out
    code, out = run("--signing-key", str(tmp_path / "nope.pem"), "receipt", "show", event["id"])
    assert code == 2 and "does not exist" in out


def test_a_database_that_cannot_be_read_is_a_clear_error(tmp_path: Path) -> None:
    """Not a traceback and exit 1 (which means "no"): what went wrong, a hint, exit 3."""
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a SQLite database, just some text. " * 200)
    for args in (
        ("check", "ai.training", "content.audio", "-s", "alice"),
        ("log",),
        ("consent", "give", "alice", "ai.training", "-c", "content.audio"),
        ("keys", "list"),
    ):
        code, out = run("--db", f"sqlite:///{junk}", *args)
        assert code == 3, (args, out)
        assert "Error: the store could not be read or written: file is not a database" in out
        assert "is not a consentry store" in out and "Traceback" not in out
    # A PostgreSQL server that does not answer (nothing listens on port 1).
    code, out = run("--db", "postgresql://postgres@127.0.0.1:1/test", "log")
    assert code == 3 and "the store could not be read or written" in out, out
    assert "database server is running" in out and "Traceback" not in out


def test_a_locked_database_says_to_try_again(tmp_path: Path) -> None:
    """SQLite's "database is locked" (another process holds the write lock longer than the
    busy timeout) is told as such, with what to do."""
    import sqlite3

    from consentry.cli_common import EXIT_UNAVAILABLE, database_problem

    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    reader = sqlite3.connect(path, timeout=0)
    try:
        with pytest.raises(sqlite3.OperationalError) as locked:
            reader.execute("SELECT * FROM t").fetchall()
    finally:
        reader.close()
        holder.close()
    problem = database_problem(locked.value)
    assert problem is not None and EXIT_UNAVAILABLE == 3
    assert problem.message == "the store could not be read or written: database is locked"
    assert problem.hint and "try again" in problem.hint
    assert database_problem(ValueError("database is locked")) is None  # only a driver's error


def test_check_takes_the_items_account_and_names_the_deciding_one(db: str) -> None:
    """Issue 12: ``--account`` is the account the item belongs to; ``--explain`` names the
    account whose setting decided, with its event."""
    run("member", "add", "alice", "acme")
    run("member", "add", "zed", "globex")
    assert run("account", "set", "acme", "ai.training", "off")[0] == 0
    code, out = run(
        "check", "ai.training", "content.audio", "-s", "alice", "--account", "acme", "--explain"
    )
    assert code == 1 and "deny (account_off)" in out
    assert "decided by account acme (setting off, event #" in out
    assert "item of account: acme" in out
    # A guest in Acme's meeting: Acme's off caps its own members only.
    code, out = run("check", "ai.training", "content.audio", "-s", "zed", "-a", "acme")
    assert code == 1 and "deny (no_consent)" in out
    code, out = run("check", "ai.training", "content.audio", "-s", "zed", "-a", "acmee")
    assert code == 2 and "unknown account 'acmee'" in out and "Traceback" not in out
