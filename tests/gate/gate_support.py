"""Helpers for the gate tests (a module of its own: `conftest` names are ambiguous)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from consentry import Store

ROOT = Path(__file__).resolve().parents[2]
MEETINGS = ROOT / "policies" / "meetings.yaml"
TEST_POLICY = ROOT / "tests" / "data" / "decisions.yaml"


def manifest(
    rows: Sequence[tuple[str, Sequence[str], str, Sequence[str]]], **extra: Sequence[Any]
) -> pa.Table:
    """A manifest table from (item_id, subject_ids, category, labels) rows."""
    data: dict[str, Any] = {
        "item_id": [r[0] for r in rows],
        "subject_ids": [list(r[1]) for r in rows],
        "category": [r[2] for r in rows],
        "labels": [list(r[3]) for r in rows],
    }
    data.update({k: list(v) for k, v in extra.items()})
    return pa.table(data)


def meetings_store(make_store: Callable[..., Store]) -> Store:
    """The meetings policy with a small, varied ledger:

    alice, bob: opted in to training on content; carol: refused; dave: opted in, then withdrew;
    erin: member of acme, whose account consents for its members; frank: member of beta,
    whose account switched training off; grace: only a member (no choice: no_consent)."""
    s = make_store(MEETINGS)
    s.give_consent("alice", "ai.training", ["content"])
    s.give_consent("bob", "ai.training", ["content"])
    s.refuse_consent("carol", "ai.training", ["content"])
    s.give_consent("dave", "ai.training", ["content"])
    s.withdraw_consent("dave", "ai.training", ["content"])
    s.add_member("erin", "acme")
    s.set_account("acme", "ai.training", "on")
    s.add_member("frank", "beta")
    s.set_account("beta", "ai.training", "off")
    s.add_member("grace", "gamma")
    return s


def leftovers(parent: Path) -> list[str]:
    """Temporary gate directories left in ``parent``."""
    return [p.name for p in parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name]
