"""The CLI's first hour: `log`, `--as-of` forms and bounds, missing stores, readable `state`
and `account show`, `keys create` without a name, `datasets list` at 80 columns, receipt exit
codes, `policy diff` in words, and objections the policy ignores."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

import consentry
from consentry import Store
from consentry.cli import app
from consentry.errors import AsOfOutOfRange, ObjectionIgnored
from support import MEETINGS, MUSIC, ROOT, FakeClock

runner = CliRunner()
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path}/cli.db"
    monkeypatch.setenv("CONSENTRY_DATABASE_URL", url)
    assert run("init", "--policy", str(MEETINGS))[0] == 0
    assert run("member", "add", "alice", "acme")[0] == 0  # event #4
    assert run("member", "add", "bob", "acme")[0] == 0  # event #5
    assert run("consent", "give", "alice", "ai.training", "-c", "content.audio")[0] == 0  # #6
    assert run("account", "set", "acme", "ai.training", "off")[0] == 0  # #7
    return url


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    assert "Traceback" not in result.output
    return result.exit_code, result.output


# -- log ---------------------------------------------------------------------------------------


def test_log_lists_events_to_pick_ids_from(db: str) -> None:
    code, out = run("log")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["seq", "time", "kind", "subject/account", "id"]
    assert [ln.split()[0] for ln in lines[1:]] == ["1", "2", "3", "4", "5", "6", "7"]
    assert all(UUID.search(ln) for ln in lines[1:])  # whole ids, to copy
    code, out = run("log", "--subject", "alice")
    assert [ln.split()[2] for ln in out.splitlines()[1:]] == ["member.added", "consent.given"]
    code, out = run("log", "--account", "acme", "--subject", "bob")
    assert [ln.split()[0] for ln in out.splitlines()[1:]] == ["5"]
    code, out = run("log", "--limit", "2", "--json")
    events = json.loads(out)
    assert [e["seq"] for e in events] == [6, 7] and "payload" not in events[0]
    assert run("log", "--subject", "nobody")[1].strip() == "no events match"
    code, out = run("receipt", "show", "6")  # an event's number works as its id
    assert code == 0 and json.loads(out)["receipt"]["record_id"] == events[0]["id"]


# -- --as-of ---------------------------------------------------------------------------------


def test_as_of_an_event(db: str) -> None:
    code, out = run("check", "ai.training", "content.audio", "-s", "alice", "--as-of", "event:6")
    assert code == 0 and out.startswith("allow (consent)")
    code, out = run("check", "ai.training", "content.audio", "-s", "alice", "--as-of", "event:7")
    assert code == 1 and out.startswith("deny (account_off)")
    code, out = run("state", "alice", "--as-of", "event:5")
    assert code == 0 and "consents: none" in out
    code, out = run("check", "ai.training", "content.audio", "-s", "a", "--as-of", "event:99")
    assert code == 2 and "no event '99'" in out


@pytest.mark.parametrize(
    ("as_of", "message"),
    [
        ("2020-01-01T00:00:00Z", "before the first policy version took effect"),
        ("2999-01-01T00:00:00Z", "is in the future"),
        ("yesterday", "is not a time consentry understands"),
        ("-5x", "is not a time consentry understands"),
    ],
)
def test_as_of_with_no_answer_is_an_error_that_says_why(db: str, as_of: str, message: str) -> None:
    for args in (
        ("check", "ai.training", "content.audio", "-s", "alice", "--as-of", as_of),
        ("state", "alice", "--as-of", as_of),
    ):
        code, out = run(*args)
        assert code == 2 and message in out and "Hint:" in out


def test_relative_as_of_and_its_bounds_in_the_library(make_store, clock: FakeClock) -> None:  # type: ignore[no-untyped-def]
    store: Store = make_store(MEETINGS)  # published at the clock's time
    store.give_consent("alice", "ai.training", ["content.audio"])
    clock.advance(hours=3)
    assert store.resolve_as_of("-2h") == clock.now - timedelta(hours=2)
    assert store.resolve_as_of("-1h30m") == clock.now - timedelta(minutes=90)
    assert store.resolve_as_of(" -0s ") == clock.now
    with pytest.raises(AsOfOutOfRange, match="before the first policy version"):
        store.resolve_as_of("-4h")  # before the store published anything
    with pytest.raises(AsOfOutOfRange, match="in the future"):
        store.resolve_as_of(clock.now + timedelta(seconds=1))
    assert store.check("alice", "ai.training", "content.audio", as_of="-1h").allowed
    with pytest.raises(AsOfOutOfRange):
        store.check("alice", "ai.training", "content.audio", as_of="-1d")


def test_the_gate_refuses_an_as_of_with_no_answer(db: str, tmp_path: Path) -> None:
    manifest = ROOT / "examples" / "calls.csv"
    code, out = run(
        "gate", str(manifest), "--purpose", "ai.training", "--out", str(tmp_path / "old"),
        "--as-of", "2020-01-01T00:00:00Z",
    )  # fmt: skip
    assert code == 2 and "before the first policy version took effect" in out
    assert not (tmp_path / "old").exists()
    assert json.loads(run("datasets", "list", "--json")[1]) == []  # nothing recorded
    code, out = run(
        "gate", str(manifest), "--purpose", "ai.training", "--out", str(tmp_path / "ok"),
        "--as-of", "event:6",
    )  # fmt: skip
    assert code == 0 and "1 allowed, 2 excluded" in out


# -- stores that do not exist -----------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("check", "ai.training", "content.audio", "-s", "a"),
        ("state", "alice"),
        ("log",),
        ("account", "show", "acme"),
        ("member", "add", "a", "acme"),
        ("ledger", "verify"),
        ("receipt", "show", "1"),
        ("keys", "create", "--role", "service"),
        ("keys", "list"),
        ("datasets", "list"),
        ("impact", "alice"),
        ("policy", "publish", str(MEETINGS)),
    ],
)
def test_a_missing_store_is_refused_and_not_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...]
) -> None:
    monkeypatch.delenv("CONSENTRY_DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)  # the default store is ./consentry.db
    code, out = run(*args)
    assert code == 2 and "there is no store at sqlite:///consentry.db" in out, out
    assert "consentry init" in out
    assert list(tmp_path.iterdir()) == []


def test_keys_need_an_initialised_store(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()  # a file, but not a store
    code, out = run("--db", f"sqlite:///{empty}", "keys", "create", "--role", "service")
    assert code == 2 and "is not a consentry store yet" in out


def test_keys_create_names_a_key_by_its_role(db: str) -> None:
    code, out = run("keys", "create", "--role", "service")
    assert code == 0
    name = re.search(r"\((service-[0-9a-f]{6})\)", out)
    assert name, out
    assert out.strip().splitlines()[-1].startswith("csk_")
    listed = json.loads(run("keys", "list", "--json")[1])
    assert [k["name"] for k in listed] == [name[1]]


# -- readable output ---------------------------------------------------------------------------


def test_state_and_account_show_print_text_and_json_on_request(db: str) -> None:
    code, out = run("state", "alice")
    assert code == 0 and not out.lstrip().startswith("{")
    assert "accounts: acme" in out and "ai.training on content.audio: given (event #6)" in out
    assert json.loads(run("state", "alice", "--json")[1])["accounts"] == ["acme"]
    code, out = run("account", "show", "acme")
    assert code == 0 and not out.lstrip().startswith("{")
    assert "2 member(s): alice, bob" in out and "ai.training: off" in out
    assert json.loads(run("account", "show", "acme", "--json")[1])["members"] == ["alice", "bob"]
    assert "nothing recorded" in run("state", "nobody")[1]


def test_datasets_list_at_80_columns_shows_whole_ids(db: str, tmp_path: Path) -> None:
    manifest = ROOT / "examples" / "calls.csv"
    for name in ("calls-a", "calls-b"):
        assert run("gate", str(manifest), "-p", "ai.training", "-o", str(tmp_path / name))[0] == 0
    ids = [d["id"] for d in json.loads(run("datasets", "list", "--json")[1])]
    env = dict(os.environ, COLUMNS="80", PYTHONPATH=str(Path(consentry.__file__).parents[1]))
    done = subprocess.run(
        [sys.executable, "-c", "from consentry.cli import app; app()", "datasets", "list"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    for dataset_id in ids:  # whole, on one line each: told apart and copied
        assert sum(dataset_id in line for line in lines) == 1, done.stdout


# -- receipts: 1 invalid, 2 unreadable -------------------------------------------------------------


def test_receipt_verify_exit_codes(db: str, tmp_path: Path) -> None:
    code, out = run("receipt", "show", "6")
    receipt = json.loads(out)
    good = tmp_path / "good.json"
    good.write_text(out)
    assert run("receipt", "verify", str(good))[0] == 0
    altered = json.loads(out)
    altered["receipt"]["pii_principal_id"] = "mallory"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(altered))
    code, out = run("receipt", "verify", str(bad))
    assert code == 1 and "altered" in out
    keys = tmp_path / "keys.json"
    assert run("ledger", "public-keys", "--out", str(keys))[0] == 0
    code, out = run("receipt", "verify", str(bad), "--public-key", str(keys))
    assert code == 1
    for broken, why in (
        (tmp_path / "missing.json", "cannot read"),
        (tmp_path / "garbage.json", "cannot read"),
        (tmp_path / "other.json", "not a consentry receipt"),
    ):
        if broken.name == "garbage.json":
            broken.write_text("{not json")
        elif broken.name == "other.json":
            broken.write_text(json.dumps({"jws": receipt["jws"]}))
        code, out = run("receipt", "verify", str(broken))
        assert code == 2 and why in out, out


# -- policy diff in words ----------------------------------------------------------------------


def test_policy_diff_says_what_the_rules_say_in_words(db: str) -> None:
    code, out = run("policy", "diff", "2023-07", "2023-08")
    assert code == 0
    assert "improvement on service_data: yes, and the person cannot object individually" in out
    assert "every person in an item must now agree, not only its owner" in out
    assert not re.search(r"True|False|->|\[|\]\s*->", out.split("Rules:")[1].split(":", 1)[0])
    for word in ("True", "False", " -> ", "account_consent", "parties:"):
        assert word not in out, word
    for lang, phrase in (
        ("fr", "la personne ne peut pas s'y opposer individuellement"),
        ("id", "tidak dapat mengajukan keberatan secara perorangan"),
    ):
        code, out = run("policy", "diff", "2023-07", "2023-08", "--lang", lang)
        assert code == 0 and phrase in out and "True" not in out and "->" not in out
    data = json.loads(run("policy", "diff", "2023-07", "2023-08", "--json")[1])
    shift = next(
        s
        for s in data["tighter"]
        if (s["purpose"], s["category"]) == ("improvement", "service_data")
    )
    assert shift["now"] == "legitimate_interest"
    assert shift["now_answer"] == "legitimate_interest_no_objection"
    rule = next(r for r in data["rules"] if r["rule"] == "train-on-content")
    assert {"field": "parties", "before": "owner", "after": "all"} in rule["fields"]


# -- objections the policy ignores -------------------------------------------------------------


def test_the_cli_refuses_an_objection_the_policy_ignores(db: str) -> None:
    code, out = run("object", "bob", "improvement", "--category", "service_data")
    assert code == 2
    assert "would change nothing under policy 2023-08" in out
    assert "you cannot object to this individually" in out
    code, out = run("object", "bob", "ai.training", "-c", "content.audio")
    assert code == 2 and "only with opt-in consent" in out and "withdraw" in out
    code, out = run("object", "bob", "ai.training.third_party")
    assert code == 2 and "prohibits it" in out
    assert "objection" not in run("log", "--subject", "bob")[1]  # nothing recorded
    code, out = run("object", "bob", "improvement", "--lift")  # lifting is always accepted
    assert code == 0 and "objection.lifted" in out


def test_the_library_refuses_it_with_a_typed_error(make_store) -> None:  # type: ignore[no-untyped-def]
    music: Store = make_store(MUSIC)
    event = music.object("bob", "improvement", ["service_data"])  # objection: true
    assert event.kind == "objection.raised"
    assert music.check("bob", "improvement", "service_data.usage").reason == "objection"
    music.object("bob", "improvement")  # every category: some can be objected to
    with pytest.raises(ObjectionIgnored, match="which an objection cannot stop") as refused:
        music.object("bob", "ai.training", ["content.audio"])
    assert refused.value.status == 422 and refused.value.code == "objection-ignored"


def test_serve_on_a_busy_port_exits_2_saying_so(db: str) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, out = run("serve", "--port", str(port))
    assert code == 2 and f"cannot listen on 127.0.0.1:{port}" in out and "--port" in out


def test_subject_report_is_the_apis_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`consentry subject report` prints the library's transparency report (Store.
    transparency_report, which the API serves): the CLI and the library can make it too."""
    url = f"sqlite:///{tmp_path}/r.db"
    with Store(url) as store:
        store.init(policies=[MEETINGS])
        store.add_member("bob", "acme")
        store.give_consent("bob", "ai.training", ["content.audio"])
        expected = store.transparency_report("bob", language="fr")
    result = CliRunner().invoke(app, ["--db", url, "subject", "report", "bob", "--language", "fr"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["language"] == "fr" and report["accounts"] == ["acme"]

    def timeless(data: dict[str, object]) -> dict[str, object]:
        """Without the two moments the report was made at (each run its own)."""
        data = json.loads(json.dumps(data, default=str))
        data.pop("generated_at")
        data["impact"].pop("checked_at")  # type: ignore[attr-defined]
        return data

    assert timeless(report) == timeless(expected)
    assert [e["kind"] for e in report["history"]] == ["member.added", "consent.given"]
    result = CliRunner().invoke(app, ["--db", url, "subject", "report", "x" * 600])
    assert result.exit_code == 2 and "Error:" in result.output
