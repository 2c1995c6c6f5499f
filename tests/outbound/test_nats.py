"""The NATS JetStream sink against the server on 127.0.0.1:4222 (skipped, saying so, when
it does not answer): subjects, ``Nats-Msg-Id`` de-duplication of a retried publish, and the
delivery worker publishing every event."""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from outbound_support import deliverer, pump, settled

from consentry import Store
from consentry.outbound.messages import render
from consentry.outbound.sinks import Message, NatsSink, nats_subject

NATS_URL = "nats://127.0.0.1:4222"


def _answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 4222), timeout=2) as sock:
            sock.settimeout(2)
            return sock.recv(4).startswith(b"INFO")
    except OSError:
        return False


pytestmark = pytest.mark.skipif(
    not _answers(), reason="no NATS server answers on 127.0.0.1:4222 (JetStream tests skipped)"
)


async def _stream_messages(stream: str) -> list[Any]:
    import nats

    nc = await nats.connect(NATS_URL, connect_timeout=5)
    try:
        js = nc.jetstream(timeout=5)
        info = await js.stream_info(stream)
        out = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            out.append(await js.get_msg(stream, seq))
        return out
    finally:
        await nc.close()


async def _delete(stream: str) -> None:
    import nats

    nc = await nats.connect(NATS_URL, connect_timeout=5)
    try:
        await nc.jetstream(timeout=5).delete_stream(stream)
    except Exception:
        pass
    finally:
        await nc.close()


@pytest.fixture
def stream() -> Iterator[str]:
    name = f"CONSENTRY_TEST_{secrets.token_hex(4).upper()}"
    yield name
    asyncio.run(asyncio.wait_for(_delete(name), 20))


def _read(stream: str) -> list[Any]:
    return asyncio.run(asyncio.wait_for(_stream_messages(stream), 30))


def test_a_retried_publish_is_stored_once(store: Store, stream: str) -> None:
    events = [
        store.give_consent("u1", "ai.training", ["content.audio"]),
        store.set_account("acme.eu", "ai.training", "off"),
    ]
    messages = [
        Message(e.seq, e.id, str(e.kind), e.account, "k", render(e, "urn:consentry:test"))
        for e in events
    ]
    sink = NatsSink(NATS_URL, stream, timeout_s=5)
    try:
        first = sink.send(messages)
        again = sink.send(messages)  # as after a crash between publish and settle
    finally:
        sink.close()
    assert all(o is not None and o.ok and o.error is None for o in first)
    assert all(o is not None and o.ok and o.error == "duplicate" for o in again)
    stored = _read(stream)
    assert [m.headers["Nats-Msg-Id"] for m in stored] == [e.id for e in events]
    assert [m.subject for m in stored] == [
        "consentry.consent.given._",
        "consentry.account.setting.acme_eu",
    ]
    assert json.loads(stored[0].data)["id"] == events[0].id


def test_the_worker_publishes_every_event_to_jetstream(store: Store, stream: str) -> None:
    d = deliverer(store, nats_url=NATS_URL, nats_stream=stream)
    d.run_once()  # makes the sink's subscription at the ledger's head
    ids = [
        store.give_consent("u1", "ai.training", ["content.audio"]).id,
        store.withdraw_consent("u1", "ai.training", ["content.audio"]).id,
        store.add_member("u2", "acme").id,
    ]
    sub_id = f"nats_{stream}"
    pump(d, settled(store, sub_id, len(ids)))
    d.stop()
    stored = _read(stream)
    assert [m.headers["Nats-Msg-Id"] for m in stored] == ids
    assert [m.subject for m in stored] == [
        "consentry.consent.given._",
        "consentry.consent.withdrawn._",
        "consentry.member.added.acme",
    ]
    assert "impact" in json.loads(stored[1].data)["data"]


def test_subject_names() -> None:
    assert nats_subject("consent.withdrawn", None) == "consentry.consent.withdrawn._"
    assert nats_subject("member.added", "a.b*c>") == "consentry.member.added.a_b_c_"
