"""Bad input found while probing (issue 9, section 5): the library and the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from consentry import Store
from consentry.cli import app
from consentry.errors import IdempotencyConflict, InvalidInput
from support import MEETINGS, FakeClock

T, AUDIO = "ai.training", "content.audio"
NUL, SURROGATE = "\x00", "\udcff"  # (what Python makes of the byte 0xff in argv)


@pytest.mark.parametrize("bad", [NUL, SURROGATE], ids=["nul", "surrogate"])
@pytest.mark.parametrize(
    ("field", "call"),
    [
        ("subject", lambda s, x: s.give_consent(f"u{x}", T, [AUDIO])),
        ("method", lambda s, x: s.give_consent("u1", T, [AUDIO], method=f"web{x}")),
        ("actor", lambda s, x: s.give_consent("u1", T, [AUDIO], actor=f"ops{x}")),
        ("idempotency_key", lambda s, x: s.give_consent("u1", T, [AUDIO], idempotency_key=x)),
        ("account", lambda s, x: s.add_member("u1", f"acme{x}")),
        ("subject", lambda s, x: s.subject_state(f"u{x}")),
        ("event", lambda s, x: s.event(f"e{x}")),
    ],
)
def test_text_the_store_cannot_keep_is_refused_naming_the_field(
    any_store: Store, field: str, call: Any, bad: str
) -> None:
    """A NUL or a lone surrogate in any string is a typed InvalidInput naming the field, on
    both backends (PostgreSQL used to fail deep in the driver), and nothing is written."""
    before = any_store.ledger.head()
    with pytest.raises(InvalidInput) as caught:
        call(any_store, bad)
    assert caught.value.details["field"] == field
    assert caught.value.message.startswith(field)
    assert any_store.ledger.head() == before
    any_store.give_consent("u1", T, [AUDIO])  # the store (its connection) still works
    assert any_store.verify().ok


def test_a_nul_in_a_purpose_or_category_is_refused(any_store: Store) -> None:
    for call in (
        lambda: any_store.give_consent("u1", f"ai.train{NUL}ing", [AUDIO]),
        lambda: any_store.give_consent("u1", T, [AUDIO, f"content{NUL}"]),
        lambda: any_store.set_account("acme", f"ai{NUL}", "on"),
    ):
        with pytest.raises(InvalidInput):
            call()
    assert any_store.ledger.count() == 0 or any_store.verify().ok


def test_an_identical_retry_after_a_new_policy_version_returns_the_original_event(
    any_store: Store, clock: FakeClock
) -> None:
    """The request hash covers what the caller sent, not the versions the store filled in:
    a retry after v2 took effect returns the v1 event; a different request under the key is
    still refused."""
    first = any_store.give_consent("u1", T, [AUDIO], idempotency_key="k1")
    assert first.policy_version == "v1" and first.notice_version == "v1"
    clock.advance(days=200)  # v2 is in effect now (2024-06-01)
    again = any_store.give_consent("u1", T, [AUDIO], idempotency_key="k1")
    assert again.id == first.id and again.seq == first.seq
    assert any_store.ledger.count() == first.seq
    with pytest.raises(IdempotencyConflict):
        any_store.give_consent("u1", T, [AUDIO], method="web", idempotency_key="k1")
    with pytest.raises(IdempotencyConflict):  # the notice the caller names is what it sent
        any_store.give_consent("u1", T, [AUDIO], notice_version="v2", idempotency_key="k1")
    # A request that named the notice explicitly matches only itself.
    named = any_store.give_consent("u2", T, [AUDIO], notice_version="v1", idempotency_key="k2")
    assert (
        any_store.give_consent("u2", T, [AUDIO], notice_version="v1", idempotency_key="k2").id
        == named.id
    )


# -- the CLI ------------------------------------------------------------------------------------

runner = CliRunner()


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path}/cli.db"
    monkeypatch.setenv("CONSENTRY_DATABASE_URL", url)
    assert runner.invoke(app, ["init", "--policy", str(MEETINGS)]).exit_code == 0
    return url


def test_publishing_a_policy_file_that_is_not_utf8_is_one_clear_error(
    db: str, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"id: x\nname: caf\xe9\n")
    result = runner.invoke(app, ["policy", "publish", str(bad)])
    assert result.exit_code == 2, result.output
    assert "not UTF-8" in result.output and "line 2" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["consent", "give", f"u{SURROGATE}", T, "-c", AUDIO],
        ["consent", "give", "u1", T, "-c", AUDIO, "--idempotency-key", f"k{SURROGATE}"],
        ["member", "add", "u1", f"acme{SURROGATE}"],
        ["account", "set", f"acme{SURROGATE}", T, "on"],
        ["consent", "give", f"u{NUL}", T, "-c", AUDIO],
        ["impact", f"u{SURROGATE}"],
        ["datasets", "show", f"d{SURROGATE}"],
        ["receipt", "show", f"e{SURROGATE}"],
    ],
)
def test_cli_arguments_that_cannot_be_stored_exit_2(db: str, args: list[str]) -> None:
    """An argument that was not UTF-8 (Python hands it over as lone surrogates) or holds a
    NUL ends with a clear error and exit code 2, not a traceback."""
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "Error:" in result.output and "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
