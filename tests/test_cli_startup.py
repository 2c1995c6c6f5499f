"""`consentry --help` and `consentry check` start without the heavy libraries.

A module-presence check, not a timing: which modules a fresh interpreter has loaded after
running the command (the CPU figures are in docs/performance.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import consentry
from consentry import cli, store
from support import MEETINGS

SRC = str(Path(consentry.__file__).resolve().parent.parent)
HEAVY = ("duckdb", "pyarrow", "fastapi", "pyspark", "starlette", "uvicorn", "polars", "numpy")

PROBE = """
import json, sys
sys.argv = ["consentry", *json.loads(sys.argv[1])]
from consentry.cli import app
try:
    app()
except SystemExit:
    pass
print("\\nMODULES " + json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""


def loaded_after(args: list[str], env: dict[str, str] | None = None) -> tuple[set[str], str]:
    """Run the command in a fresh interpreter; the top-level modules it loaded, its output."""
    environ = dict(os.environ, **(env or {}))
    environ["PYTHONPATH"] = os.pathsep.join([SRC, environ.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args)],
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,  # a deadline on the wait, generous for a loaded machine
    )
    head, _, modules = done.stdout.rpartition("\nMODULES ")
    assert modules, done.stderr[-2000:]
    return set(json.loads(modules)), head + done.stderr


def test_help_loads_no_heavy_module() -> None:
    modules, output = loaded_after(["--help"])
    assert "Commands:" in output and "gate" in output and "serve" in output
    assert not modules & set(HEAVY), modules & set(HEAVY)
    # Nor the database layer: --help needs no store.
    assert "sqlalchemy" not in modules and "pydantic" not in modules


def test_check_loads_no_web_or_dataframe_module(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    with store.Store(url) as s:
        s.init(policies=[MEETINGS])
        s.give_consent("alice", "ai.training", ["content.audio"])
    modules, output = loaded_after(
        ["check", "ai.training", "content.audio", "-s", "alice"],
        env={"CONSENTRY_DATABASE_URL": url},
    )
    assert "allow (consent)" in output
    assert not modules & set(HEAVY), modules & set(HEAVY)


@pytest.mark.parametrize("name", sorted(cli.LAZY_COMMANDS))
def test_a_lazy_command_loads_with_the_help_the_listing_shows(name: str) -> None:
    command = cli.load_lazy_command(name)
    assert command.name == name
    listed = cli.LAZY_COMMANDS[name][1]
    real = (command.help or "").strip().split("\n\n")[0].replace("\n", " ")
    assert real.startswith(listed), (listed, real)


def test_the_key_file_variables_are_the_stores() -> None:
    assert cli.SIGNING_KEY_FILE_ENV == store.SIGNING_KEY_FILE_ENV
    assert cli.LOG_KEY_FILE_ENV == store.LOG_KEY_FILE_ENV


ENTRY_PROBE = """
import json, sys
sys.argv = ["consentry", *json.loads(sys.argv[1])]
from consentry.cli_entry import main
try:
    main()
except SystemExit as exit:
    code = exit.code
else:
    code = 0
print("\\nMODULES " + json.dumps([code, sorted({m.split(".")[0] for m in sys.modules})]))
"""


def run_entry(args: list[str], env: dict[str, str]) -> tuple[int, str, set[str]]:
    """``consentry ARGS`` through the installed entry point, in a fresh interpreter: its exit
    code, its output, the top-level modules it loaded."""
    environ = dict(os.environ, **env)
    environ["PYTHONPATH"] = os.pathsep.join([SRC, environ.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-c", ENTRY_PROBE, json.dumps(args)],
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,  # a deadline on the wait, generous for a loaded machine
    )
    head, _, tail = done.stdout.rpartition("\nMODULES ")
    assert tail, done.stderr[-2000:]
    code, modules = json.loads(tail)
    return code, head + done.stderr, set(modules)


def test_a_plain_check_starts_without_typer_or_the_database_layer(tmp_path: Path) -> None:
    """``consentry check P C -s S`` (the form scripts run in loops) is answered before Typer,
    pydantic or SQLAlchemy is imported, with the Typer command's output and exit code; every
    other form goes to the Typer command."""
    from typer.testing import CliRunner

    url = f"sqlite:///{tmp_path}/s.db"
    with store.Store(url) as s:
        s.init(policies=[MEETINGS])
        s.give_consent("alice", "ai.training", ["content.audio"])
        s.add_member("bob", "acme")
    env = {"CONSENTRY_DATABASE_URL": url}
    plain = [
        ["check", "ai.training", "content.audio", "-s", "alice"],
        ["check", "ai.training", "content.audio", "--subject", "alice", "-s", "bob"],
        ["check", "ai.training", "content.audio", "--subject=alice", "--label", "health"],
        ["--db", url, "check", "ai.training", "content.audio", "-s", "nobody"],
    ]
    other = [
        ["check", "ai.training", "content.audio", "-s", "alice", "--json"],
        ["check", "ai.trainng", "content.audio", "-s", "alice"],  # the Store says why
        ["check", "ai.training", "-s", "alice"],  # Typer's usage error
    ]
    runner = CliRunner()
    for args in plain + other:
        code, output, modules = run_entry(args, env)
        typer_run = runner.invoke(cli.app, args, env=env)
        assert code == typer_run.exit_code, (args, output, typer_run.output)
        if args in plain:
            assert output == typer_run.output, args
            assert not modules & {"typer", "click", "pydantic", "sqlalchemy", "rich"}, modules
        else:
            assert "typer" in modules, args
    from consentry.cli_entry import parse_plain_check

    assert parse_plain_check(["check", "p", "c", "-s"]) is None
    assert parse_plain_check(["--signing-key", "k", "check", "p", "c", "-s", "a"]) is None
    assert parse_plain_check(["check", "p", "c", "-sa"]) is None
    assert parse_plain_check(["--db=x", "check", "p", "c", "-l", "y", "-s", "a"]) == (
        "x",
        "p",
        "c",
        ["a"],
        ["y"],
    )
