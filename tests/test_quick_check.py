"""``consentry check``'s read path without the database layer (consentry.quick_check) gives
the Store's answer, and hands everything else to the Store."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest

from consentry import quick_check
from consentry.errors import ConsentryError
from consentry.ledger.engine import DEFAULT_URL
from consentry.store import Store
from support import MEETINGS, MUSIC, FakeClock

PEOPLE = ["alice", "bob", "carol", "dan", "erin", "nobody"]


def _try(call: object, *args: object, **kwargs: object) -> None:
    """Record what the policy lets us record; the rest is refused, as it would be."""
    with contextlib.suppress(ConsentryError):
        call(*args, **kwargs)  # type: ignore[operator]


def _populate(store: Store, clock: FakeClock) -> None:
    """Members of two accounts and of none, account settings and features, consents given,
    refused and withdrawn, objections raised and lifted."""
    for subject, account in [("alice", "acme"), ("bob", "acme"), ("carol", "globex")]:
        store.add_member(subject, account)
    policy = store.policy()
    purposes = sorted({p for r in policy.rules for p in r.purposes})
    categories = sorted({c for r in policy.rules for c in r.categories})
    for i, purpose in enumerate(purposes):
        clock.advance(minutes=1)
        _try(store.set_account, "acme", purpose, ("off", "members_choose", "on")[i % 3])
        _try(store.set_feature, "globex", purpose, i % 2 == 0)
        for j, subject in enumerate(PEOPLE[:5]):
            category = categories[(i + j) % len(categories)]
            action = ("give", "refuse", "withdraw", "give", "object")[(i + j) % 5]
            if action == "object":
                _try(store.object, subject, purpose, [category])
            else:
                _try(store.record_consent, action, subject, purpose, [category])
    _try(store.object, "dan", purposes[0], [], lift=True)


@pytest.mark.parametrize("policy", [MEETINGS, MUSIC], ids=["meetings", "music"])
def test_the_quick_path_answers_as_the_store(tmp_path: Path, policy: Path) -> None:
    clock = FakeClock()
    url = f"sqlite:///{tmp_path}/q.db"
    with Store(url, clock=clock) as store:
        store.init(policies=[policy])
        _populate(store, clock)
        clock.advance(days=400)  # past any consent's expiry (music.yaml: P365D)
        current = store.policy()
        pairs = sorted({(p, c) for r in current.rules for p in r.purposes for c in r.categories})
        labels = sorted({label for p in current.protected for label in p.labels})[:1]
        groups = [[s] for s in PEOPLE] + [["alice", "bob"], ["carol", "alice", "nobody"]]
        compared = 0
        for purpose, category in pairs:
            for group in groups:
                for item_labels in ([], labels):
                    expected = store.check(group, purpose, category, item_labels)
                    got = quick_check.check(url, group, purpose, category, item_labels, clock)
                    assert got is not None
                    assert (got.allowed, got.reason, got.subject, got.rule) == (
                        expected.allowed,
                        expected.reason,
                        expected.subject,
                        expected.rule,
                    ), (purpose, category, group, item_labels)
                    compared += 1
        assert compared > 100
        assert {str(store.check([s], *pairs[0]).reason) for s in PEOPLE} != {"no_basis"}


def test_what_it_cannot_answer_goes_to_the_store(tmp_path: Path) -> None:
    """None (ask the Store, which says what is wrong) for another database, a file that is
    not there or not a store, a name or an id the Store would refuse."""
    url = f"sqlite:///{tmp_path}/s.db"
    with Store(url) as store:
        store.init(policies=[MEETINGS])
    ask = quick_check.check
    assert ask(url, ["alice"], "ai.training", "content.audio") is not None
    assert ask("postgresql://postgres@127.0.0.1/test", ["a"], "ai.training", "content") is None
    assert ask(f"sqlite:///{tmp_path}/missing.db", ["a"], "ai.training", "content") is None
    assert not (tmp_path / "missing.db").exists()  # and it created nothing
    assert ask(url, ["alice"], "ai.trainng", "content.audio") is None  # unknown purpose
    assert ask(url, ["bad\x00id"], "ai.training", "content.audio") is None
    assert ask(url, [], "ai.training", "content.audio") is None
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database " * 100)
    assert ask(f"sqlite:///{junk}", ["a"], "ai.training", "content") is None
    sqlite3.connect(tmp_path / "empty.db").close()
    assert ask(f"sqlite:///{tmp_path}/empty.db", ["a"], "ai.training", "content") is None
    assert quick_check.DEFAULT_URL == DEFAULT_URL


def test_a_person_with_aliases_goes_to_the_store(tmp_path: Path) -> None:
    """An id linked to another (issue 16 §3) is decided by the person's merged records, which
    only the Store reads: the quick path hands both ids to it, and answers others as before."""
    url = f"sqlite:///{tmp_path}/a.db"
    with Store(url) as store:
        store.init(policies=[MEETINGS])
        store.record_consent("give", "alice", "ai.training", ["content.audio"])
        store.link_subject("alice", "alice@example.com")
        assert str(store.check(["alice@example.com"], "ai.training", "content.audio").reason) == (
            str(store.check(["alice"], "ai.training", "content.audio").reason)
        )
    ask = quick_check.check
    assert ask(url, ["alice@example.com"], "ai.training", "content.audio") is None
    assert ask(url, ["alice"], "ai.training", "content.audio") is None
    assert ask(url, ["bob", "alice"], "ai.training", "content.audio") is None
    assert ask(url, ["bob"], "ai.training", "content.audio") is not None


def test_an_account_context_is_the_stores_to_answer(tmp_path: Path) -> None:
    """``check --account A`` (issue 12) decides in the item's account context, which the quick
    path does not read: the command must give the Store's answer, not the no-account one."""
    from typer.testing import CliRunner

    from consentry import cli

    url = f"sqlite:///{tmp_path}/c.db"
    with Store(url) as store:
        store.init(policies=[MEETINGS])
        store.add_member("bob", "acme")
        store.set_feature("acme", "ai.feature.meeting_summary", True)
        store.add_member("zoe", "globex")
    args = ["--db", url, "check", "ai.feature.meeting_summary", "content.transcript", "-s", "zoe"]
    runner = CliRunner()
    guest = runner.invoke(cli.app, [*args, "--account", "acme"])
    assert (guest.exit_code, guest.output.strip()) == (0, "allow (contract)")
    alone = runner.invoke(cli.app, args)
    assert (alone.exit_code, alone.output.strip()) == (1, "deny (not_enabled)")
