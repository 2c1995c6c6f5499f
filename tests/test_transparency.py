"""The transparency log: RFC 9162 proofs, signed checkpoints, and every way an attacker with
the database could rewrite history — each caught by `ledger verify` or `ledger verify --since`,
naming the place."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from typer.testing import CliRunner

from consentry import Store
from consentry.cli import app
from consentry.errors import InvalidInput, SignatureInvalid
from consentry.ledger.checkpoint import NoteSigner, NoteVerifier, parse_checkpoint, read_checkpoint
from consentry.ledger.events import chain_hash, event_body, event_mac, personal_commitment
from consentry.ledger.evidence import verify_receipt_offline
from consentry.ledger.merkle import (
    ProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_from_inclusion,
    root_of,
    subtree_from_list,
    verify_consistency,
)
from consentry.ledger.receipts import new_private_key_pem, write_key_file
from consentry.store import LOG_KEY, LOG_VERIFIER_KEY, SIGNING_KEY, SIGNING_PUBLIC_KEY
from support import MEETINGS, TEST_POLICY, FakeClock, sqlite_store_url

T, AUDIO = "ai.training", "content.audio"
runner = CliRunner()


# -- the Merkle tree, against the RFC's recursive definitions ----------------------------------


def _mth(leaves: list[bytes]) -> bytes:
    """MTH(D[n]) exactly as RFC 9162 §2.1.1 defines it."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node_hash(_mth(leaves[:k]), _mth(leaves[k:]))


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 80), data=st.data())
def test_proofs_match_the_rfc_definitions(n: int, data: st.DataObject) -> None:
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]
    root = _mth(leaves)
    subtree = subtree_from_list(leaves)
    assert root_of(leaves) == root == subtree(0, n)
    index = data.draw(st.integers(0, n - 1))
    path = inclusion_proof(index, n, subtree)
    assert root_from_inclusion(index, n, leaves[index], path) == root
    old = data.draw(st.integers(1, n))
    proof = consistency_proof(old, n, subtree)
    verify_consistency(old, _mth(leaves[:old]), n, root, proof)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 40), data=st.data())
def test_a_rewritten_prefix_fails_consistency(n: int, data: st.DataObject) -> None:
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]
    old = data.draw(st.integers(1, n - 1))
    changed = data.draw(st.integers(0, old - 1))
    forged = list(leaves)
    forged[changed] = leaf_hash(b"forged")
    proof = consistency_proof(old, n, subtree_from_list(forged))
    with pytest.raises(ProofError):
        verify_consistency(old, _mth(leaves[:old]), n, _mth(forged), proof)
    wrong = inclusion_proof(changed, n, subtree_from_list(forged))
    assert root_from_inclusion(changed, n, leaves[changed], wrong) != _mth(forged)


def test_leaves_and_nodes_are_domain_separated() -> None:
    a, b = leaf_hash(b"a"), leaf_hash(b"b")
    assert a == hashlib.sha256(b"\x00a").digest()
    assert node_hash(a, b) == hashlib.sha256(b"\x01" + a + b).digest()


# -- signed notes --------------------------------------------------------------------------------


def test_checkpoint_is_a_c2sp_signed_note() -> None:
    signer = NoteSigner("example.com/log", new_private_key_pem())
    note = signer.sign("example.com/log\n3\n" + base64.b64encode(b"\x01" * 32).decode() + "\n")
    _text_part, _, sig_line = note.rpartition("\n\n")
    assert sig_line.startswith("— example.com/log ")
    raw = base64.b64decode(sig_line.split(" ")[2])
    expected_id = hashlib.sha256(b"example.com/log\n\x01" + signer.public_raw).digest()[:4]
    assert raw[:4] == expected_id and len(raw) == 68
    verifier = NoteVerifier.parse(signer.vkey())
    checkpoint = read_checkpoint(note, verifier)
    assert checkpoint.size == 3 and checkpoint.root == b"\x01" * 32
    with pytest.raises(SignatureInvalid, match="altered"):
        verifier.verify(note.replace("\n3\n", "\n4\n"))
    other = NoteSigner("example.com/log", new_private_key_pem())
    with pytest.raises(SignatureInvalid, match="not signed by the pinned log key"):
        verifier.verify(other.sign("example.com/log\n3\n" + "A" * 43 + "=\n"))
    with pytest.raises(InvalidInput, match="key id"):
        name, _key_id, key = signer.vkey().split("+", 2)
        NoteVerifier.parse(f"{name}+00000000+{key}")


# -- checkpoints of a store -----------------------------------------------------------------------


def _consents(store: Store, n: int, prefix: str = "u") -> None:
    for i in range(n):
        store.give_consent(f"{prefix}{i}", T, [AUDIO])


def test_checkpoints_grow_append_only(any_store: Store, tmp_path: Path) -> None:
    any_store.checkpoint_dir = tmp_path / "witness"
    _consents(any_store, 3)
    first = any_store.checkpoint()
    assert first.size == any_store.ledger.head()[0]
    assert any_store.checkpoint() == first  # nothing new: the same checkpoint
    _consents(any_store, 4, "v")
    second = any_store.checkpoint()
    assert second.size == first.size + 4
    proof = [bytes.fromhex(h) for h in any_store.consistency_proof(first.size, second.size)]
    verify_consistency(first.size, first.root, second.size, second.root, proof)
    result = any_store.verify(since=first.note)
    assert result.ok and result.since is not None and result.since["ok"], result.problem
    files = sorted(p.name for p in (tmp_path / "witness").iterdir())
    assert files == [
        f"checkpoint-{first.size:012d}.txt",
        f"checkpoint-{second.size:012d}.txt",
        f"leaves-{0:012d}-{first.size:012d}.bin",
        f"leaves-{first.size:012d}-{second.size:012d}.bin",
    ]
    assert (tmp_path / "witness" / files[0]).read_text() == first.note


# -- the attacks ---------------------------------------------------------------------------------


def _attack(store: Store, *statements: str) -> None:
    """Run SQL as someone with the database: append-only triggers are dropped or disabled
    first, as the owner of the file or of the table can."""
    with store.ledger.engine.begin() as conn:
        if store.ledger.backend == "sqlite":
            names = conn.execute(
                text(
                    "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'events'"
                )
            ).scalars()
            for name in list(names):
                conn.execute(text(f'DROP TRIGGER "{name}"'))
        else:
            conn.execute(text("ALTER TABLE events DISABLE TRIGGER USER"))
        for sql in statements:
            conn.execute(text(sql))
        if store.ledger.backend == "postgresql":
            conn.execute(text("ALTER TABLE events ENABLE TRIGGER USER"))


def _rehash_from(store: Store, first_seq: int, mac_key: bytes | None) -> None:
    """Re-hash every event from ``first_seq`` on (and its MAC when the attacker has the key),
    then point the head at the new last event: a rewrite an honest chain check cannot see."""
    events = list(store.ledger.events())
    prev = events[first_seq - 2].hash if first_seq > 1 else "0" * 64
    statements = []
    for event in events[first_seq - 1 :]:
        commitment = personal_commitment(event.nonce or "00" * 16, event.personal())
        body = event_body(event.content(), commitment, event.seq, event.id, event.at_text)
        new_hash = chain_hash(prev, body)
        mac = f"'{event_mac(mac_key, new_hash)}'" if mac_key else "NULL"
        statements.append(
            f"UPDATE events SET prev_hash = '{prev}', hash = '{new_hash}', "
            f"commitment = '{commitment}', mac = {mac} WHERE seq = {event.seq}"
        )
        prev = new_hash
    statements.append(
        f"UPDATE ledger_head SET seq = {events[-1].seq}, hash = '{prev}' WHERE id = 1"
    )
    _attack(store, *statements)


def _make_state_agree(store: Store) -> None:
    """The careful attacker also makes the current-state tables say what the forged chain
    implies (consentry's own rebuild does it for them)."""
    with Store(store.url) as attacker:
        attacker.rebuild_state()


def _meta_mac_key(store: Store) -> bytes:
    """What an attacker who reads the log key out of the database derives (the demo set-up)."""
    return store.log_signer().event_key()


def test_rewrite_and_rehash_is_caught_by_the_checkpoint(any_store: Store, tmp_path: Path) -> None:
    any_store.checkpoint_dir = tmp_path / "witness"
    _consents(any_store, 3)
    any_store.withdraw_consent("u1", T, [AUDIO])
    checkpoint = any_store.checkpoint()
    _consents(any_store, 2, "later")
    target = next(e for e in any_store.ledger.events() if e.kind == "consent.withdrawn")
    # The strongest database attacker: edits the withdrawal into a consent, re-hashes the rest,
    # recomputes every MAC with the key read from the database, moves the head.
    _attack(any_store, f"UPDATE events SET kind = 'consent.given' WHERE seq = {target.seq}")
    _rehash_from(any_store, target.seq, _meta_mac_key(any_store))
    _make_state_agree(any_store)
    assert any_store.verify().ok  # the chain, the MACs and the state alone cannot tell
    result = any_store.verify(since=checkpoint.note)
    assert not result.ok
    assert result.seq == target.seq and result.event_id == target.id, result.problem
    assert "rewritten" in (result.problem or "")
    # Without the witness copy, the stored tree (which the attacker left alone) still names it.
    any_store.checkpoint_dir = None
    assert any_store.verify(since=checkpoint.note).seq == target.seq


def test_a_forged_event_inserted_before_the_checkpoint_is_caught(
    any_store: Store, tmp_path: Path
) -> None:
    """Insert a correctly hashed consent in the middle of the covered history: shift the
    events after it, re-hash and re-MAC everything, move the head, fix the state tables."""
    any_store.checkpoint_dir = tmp_path / "witness"
    _consents(any_store, 3)
    checkpoint = any_store.checkpoint()
    _consents(any_store, 1, "later")
    victim = any_store.event(checkpoint.size - 1)
    at = victim.seq
    head = any_store.ledger.head()[0]
    _attack(
        any_store,
        f"UPDATE events SET seq = seq + 1000 WHERE seq >= {at}",
        f"UPDATE events SET seq = seq - 999 WHERE seq >= {at + 1000}",
        "INSERT INTO events (seq, id, at, at_us, kind, actor, subject, purpose, categories, "
        "status, policy_version, notice_version, language, method, payload, prev_hash, hash, "
        f"nonce, commitment) SELECT {at}, 'inserted', at, at_us, kind, 'mallory', 'mallory', "
        "purpose, categories, status, policy_version, notice_version, language, method, "
        f"payload, prev_hash, hash, nonce, commitment FROM events WHERE seq = {at + 1}",
    )
    _rehash_from(any_store, at, _meta_mac_key(any_store))
    _make_state_agree(any_store)
    assert any_store.ledger.head()[0] == head + 1 and any_store.verify().ok
    result = any_store.verify(since=checkpoint.note)
    assert not result.ok and result.seq == at and result.event_id == "inserted", result.problem


def test_a_full_rewrite_of_the_tree_too_is_still_caught(any_store: Store, tmp_path: Path) -> None:
    """The attacker also rewrites the stored tree: only the witness's leaf files name the
    event, and without them the audit still fails (it says it cannot name it)."""
    witness = tmp_path / "witness"
    any_store.checkpoint_dir = witness
    _consents(any_store, 4)
    checkpoint = any_store.checkpoint()
    _attack(any_store, "UPDATE events SET subject = 'mallory', nonce = NULL WHERE seq = 3")
    _rehash_from(any_store, 3, _meta_mac_key(any_store))
    _attack(any_store, "DELETE FROM tlog_nodes", "DELETE FROM checkpoints")
    any_store.checkpoint_dir = None
    any_store.checkpoint()  # the tree is rebuilt from the rewritten events
    result = any_store.verify(since=checkpoint.note)
    assert not result.ok and result.seq is None and "rewritten" in (result.problem or "")
    any_store.checkpoint_dir = witness
    result = any_store.verify(since=checkpoint.note)
    assert not result.ok and result.seq == 3


def test_truncation_with_the_head_moved_back_is_caught(any_store: Store) -> None:
    _consents(any_store, 5)
    checkpoint = any_store.checkpoint()
    head = any_store.ledger.head()[0]
    keep = head - 2
    last = any_store.event(keep)
    _attack(
        any_store,
        f"DELETE FROM events WHERE seq > {keep}",
        f"UPDATE ledger_head SET seq = {keep}, hash = '{last.hash}' WHERE id = 1",
    )
    _make_state_agree(any_store)
    assert any_store.verify().ok  # a shorter chain is still a chain
    result = any_store.verify(since=checkpoint.note)
    assert not result.ok and result.seq == keep + 1
    assert "removed" in (result.problem or "")


def test_a_forged_append_is_caught_by_its_mac(backend_url: str, tmp_path: Path) -> None:
    """With the log key outside the database, an event appended by someone with database
    access — correctly hashed, chained, head moved — has no valid MAC."""
    key_file = tmp_path / "log.pem"
    write_key_file(key_file)
    store = Store(backend_url, clock=FakeClock(), log_key_file=key_file)
    store.init(policies=[TEST_POLICY])
    store.give_consent("u0", T, [AUDIO])
    withdrawn = store.withdraw_consent("u0", T, [AUDIO])
    forged_key = os.urandom(32)  # the attacker has no log key: any MAC they make is wrong
    nonce = os.urandom(16).hex()
    seq = withdrawn.seq + 1
    content = dict(withdrawn.content(), kind="consent.given")
    commitment = personal_commitment(nonce, withdrawn.personal())
    body = event_body(content, commitment, seq, "forged-id", withdrawn.at_text)
    forged_hash = chain_hash(withdrawn.hash, body)
    _attack(
        store,
        "INSERT INTO events (seq, id, at, at_us, kind, actor, subject, purpose, categories, "
        "status, policy_version, notice_version, language, method, payload, prev_hash, hash, "
        f"nonce, commitment, mac) SELECT {seq}, 'forged-id', at, at_us, 'consent.given', actor, "
        "subject, purpose, categories, status, policy_version, notice_version, language, "
        f"method, payload, hash, '{forged_hash}', '{nonce}', '{commitment}', "
        f"'{event_mac(forged_key, forged_hash)}' FROM events WHERE seq = {withdrawn.seq}",
        f"UPDATE ledger_head SET seq = {seq}, hash = '{forged_hash}' WHERE id = 1",
    )
    result = store.verify()
    assert not result.ok and result.seq == seq and result.event_id == "forged-id"
    assert "MAC" in (result.problem or "")
    store.close()


def test_an_appended_row_is_not_called_deleted(any_store: Store) -> None:
    _consents(any_store, 2)
    last = any_store.event(any_store.ledger.head()[0])
    _attack(
        any_store,
        "INSERT INTO events (seq, id, at, at_us, kind, subject, purpose, categories, payload, "
        f"prev_hash, hash, commitment) SELECT seq + 1, 'extra', at, at_us, kind, subject, purpose, "
        f"categories, payload, hash, hash, commitment FROM events WHERE seq = {last.seq}",
    )
    result = any_store.verify()
    assert not result.ok and result.seq == last.seq + 1
    assert "deleted" not in (result.problem or "")


def test_a_head_that_disagrees_with_the_last_event_says_so(any_store: Store) -> None:
    _consents(any_store, 2)
    _attack(any_store, "UPDATE ledger_head SET hash = '" + "ab" * 32 + "' WHERE id = 1")
    result = any_store.verify()
    assert not result.ok and "head" in (result.problem or "")


@pytest.mark.parametrize("which", [SIGNING_KEY, LOG_KEY])
def test_a_key_swapped_in_the_database_is_detected(any_store: Store, which: str) -> None:
    _consents(any_store, 1)
    pem = new_private_key_pem()
    statements = [f"UPDATE meta SET value = '{pem}' WHERE key = '{which}'"]
    if which == SIGNING_KEY:  # a careful attacker swaps the public half too
        from consentry.ledger.receipts import ReceiptSigner

        public = ReceiptSigner(pem).public_key_b64()
        statements.append(f"UPDATE meta SET value = '{public}' WHERE key = '{SIGNING_PUBLIC_KEY}'")
    else:
        origin = any_store.log_verifier().name
        vkey = NoteSigner(origin, pem).vkey()
        statements.append(f"UPDATE meta SET value = '{vkey}' WHERE key = '{LOG_VERIFIER_KEY}'")
    _attack(any_store, *statements)
    fresh = Store(any_store.url)
    result = fresh.verify()
    assert not result.ok and "replaced outside the ledger" in (result.problem or "")
    fresh.close()


# -- receipts checked offline -------------------------------------------------------------------


@pytest.fixture
def issued(store: Store) -> tuple[Store, dict[str, Any], dict[str, str], str]:
    event = store.give_consent("u1", T, [AUDIO], method="web")
    document = store.receipt(event.id)
    checkpoint = document["evidence"]["proof"]["checkpoint"]
    return store, document, store.public_keys(), checkpoint


def test_a_receipt_verifies_offline(issued: Any) -> None:
    store, document, keys, checkpoint = issued
    check = verify_receipt_offline(
        document,
        receipt_key=keys["receipt_public_key"],
        log_key=keys["log_verifier_key"],
        checkpoint=checkpoint,
    )
    assert check.record_id == document["receipt"]["record_id"]
    # A later checkpoint: the store proves the same event against it.
    store.give_consent("u2", T, [AUDIO])
    later = store.checkpoint()
    again = store.receipt(check.record_id, checkpoint=later.note)
    assert (
        verify_receipt_offline(
            again,
            receipt_key=keys["receipt_public_key"],
            log_key=keys["log_verifier_key"],
            checkpoint=later.note,
        ).checkpoint.size
        == later.size
    )


@pytest.mark.parametrize(
    ("forge", "words"),
    [
        (lambda d: d["evidence"]["event"].update(kind="consent.withdrawn"), "hash"),
        (lambda d: d["evidence"]["event"].update(subject="mallory"), "commitment"),
        (lambda d: d["evidence"]["proof"]["inclusion"].reverse(), "inclusion"),
        (lambda d: d["evidence"]["proof"].update(leaf_index=0), "another leaf"),
        (lambda d: d["receipt"].update(status="withdrawn"), "altered"),
    ],
)
def test_a_forged_receipt_fails_offline(issued: Any, forge: Any, words: str) -> None:
    _, document, keys, checkpoint = issued
    forged = copy.deepcopy(document)
    forge(forged)
    if len(forged["evidence"]["proof"]["inclusion"]) < 2 and words == "inclusion":
        forged["evidence"]["proof"]["inclusion"] = [base64.b64encode(b"\x00" * 32).decode()]
    with pytest.raises(SignatureInvalid, match=words):
        verify_receipt_offline(
            forged,
            receipt_key=keys["receipt_public_key"],
            log_key=keys["log_verifier_key"],
            checkpoint=checkpoint,
        )


def test_a_receipt_signed_by_another_key_is_refused(issued: Any) -> None:
    store, document, keys, checkpoint = issued
    from consentry.ledger.receipts import ReceiptSigner

    forged = ReceiptSigner(new_private_key_pem()).sign(document["receipt"])
    forged["evidence"] = document["evidence"]
    with pytest.raises(SignatureInvalid, match="does not hold"):
        verify_receipt_offline(
            forged, receipt_key=keys["receipt_public_key"], log_key=keys["log_verifier_key"]
        )
    # A checkpoint signed by another log key is refused too.
    other = NoteSigner(store.log_verifier().name, new_private_key_pem())
    cp = parse_checkpoint(checkpoint.split("\n\n")[0] + "\n")
    bad = copy.deepcopy(document)
    bad["evidence"]["proof"]["checkpoint"] = other.sign(cp.text())
    with pytest.raises(SignatureInvalid, match="pinned log key"):
        verify_receipt_offline(
            bad, receipt_key=keys["receipt_public_key"], log_key=keys["log_verifier_key"]
        )


def test_with_a_store_the_receipt_names_the_field_the_ledger_changed(issued: Any) -> None:
    store, document, _, _ = issued
    seq = document["receipt"]["ledger"]["seq"]
    _attack(store, f"UPDATE events SET method = 'api' WHERE seq = {seq}")
    with pytest.raises(SignatureInvalid, match="method is 'web' in the receipt but 'api'"):
        store.verify_receipt(document)


def test_receipt_verify_cli_needs_no_store(
    issued: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _store, document, keys, checkpoint = issued
    (tmp_path / "r.json").write_text(json.dumps(document))
    (tmp_path / "keys.json").write_text(json.dumps(keys))
    (tmp_path / "cp.txt").write_text(checkpoint)
    monkeypatch.chdir(tmp_path)  # no consentry.db here
    args = ["receipt", "verify", "r.json", "--checkpoint", "cp.txt", "--public-key", "keys.json"]
    result = runner.invoke(app, args, env={"CONSENTRY_DATABASE_URL": ""})
    assert result.exit_code == 0, result.output
    assert "valid" in result.output and not (tmp_path / "consentry.db").exists()
    forged = copy.deepcopy(document)
    forged["evidence"]["event"]["kind"] = "consent.withdrawn"
    (tmp_path / "r.json").write_text(json.dumps(forged))
    result = runner.invoke(app, args, env={"CONSENTRY_DATABASE_URL": ""})
    assert result.exit_code == 1 and "hash" in result.output


def test_ledger_checkpoint_and_verify_since_cli(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/cli.db"
    env = {"CONSENTRY_DATABASE_URL": url, "CONSENTRY_CHECKPOINT_DIR": str(tmp_path / "w")}
    assert runner.invoke(app, ["init", "--policy", str(MEETINGS)], env=env).exit_code == 0
    result = runner.invoke(app, ["ledger", "checkpoint", "--out", str(tmp_path / "cp")], env=env)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "cp").read_text() == result.output
    assert list((tmp_path / "w").glob("checkpoint-*.txt"))
    result = runner.invoke(app, ["ledger", "verify", "--since", str(tmp_path / "cp")], env=env)
    assert result.exit_code == 0 and "consistent" in result.output, result.output
    store = Store(url)
    last = store.event(store.ledger.head()[0])
    _attack(store, f"UPDATE events SET policy_version = 'x' WHERE seq = {last.seq}")
    _rehash_from(store, last.seq, _meta_mac_key(store))
    store.close()
    result = runner.invoke(app, ["ledger", "verify", "--since", str(tmp_path / "cp")], env=env)
    assert result.exit_code == 1 and f"event #{last.seq}" in result.output


# -- one body, however it is spelled -------------------------------------------------------------

_TEXT = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=8)


@settings(max_examples=40, deadline=None)
@given(
    subject=_TEXT,
    method=st.none() | _TEXT,
    language=st.none() | _TEXT,
    categories=st.lists(_TEXT, max_size=3),
    payload=st.dictionaries(_TEXT, st.integers() | _TEXT | st.lists(_TEXT, max_size=2), max_size=3),
)
def test_the_write_path_the_verifier_and_a_receipt_hash_the_same_bytes(
    tmp_path_factory: pytest.TempPathFactory,
    migrated_sqlite: Path,
    subject: str,
    method: str | None,
    language: str | None,
    categories: list[str],
    payload: dict[str, Any],
) -> None:
    """The append path splices the body's canonical JSON; verification splices it from the
    stored row; a receipt's checker builds it with json.dumps. All three must agree, for any
    text (escapes, non-ASCII, quotes)."""
    from consentry.ledger.events import Draft, Kind

    path = tmp_path_factory.mktemp("bodies") / "s.db"
    with Store(sqlite_store_url(migrated_sqlite, path), clock=FakeClock()) as store:
        store.init()
        (event,) = store.append(
            [
                Draft(
                    kind=Kind.CONSENT_GIVEN,
                    actor=subject,
                    subject=subject or "s",
                    purpose="ai.training",
                    categories=tuple(categories),
                    method=method,
                    language=language,
                    payload=payload,
                )
            ]
        )
        assert event.compute_hash() == event.hash
        assert store.event(event.seq).compute_hash() == event.hash
        assert store.verify().ok
