"""Fixtures for the events-out tests: loopback webhook receivers and a fast retry schedule."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from webhook_receiver import Receiver


@pytest.fixture
def make_receiver() -> Iterator[Callable[[], Receiver]]:
    made: list[Receiver] = []

    def make() -> Receiver:
        receiver = Receiver()
        made.append(receiver)
        return receiver

    yield make
    for receiver in made:
        receiver.close()


@pytest.fixture
def receiver(make_receiver: Callable[[], Receiver]) -> Receiver:
    return make_receiver()


@pytest.fixture(autouse=True)
def _loopback_targets(monkeypatch: pytest.MonkeyPatch) -> None:
    """The receivers here listen on 127.0.0.1, which a webhook may reach only when the
    operator allows it (consentry.outbound.targets): these tests are that operator."""
    monkeypatch.setenv("CONSENTRY_WEBHOOK_ALLOW_NETWORKS", "127.0.0.0/8")
