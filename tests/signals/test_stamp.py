"""Stamping the owner's choices into media as a signed CAWG training-mining assertion."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from consentry import Store
from consentry.errors import InvalidInput
from consentry.signals import evaluate
from consentry.signals.c2pa import check_manifest, read_manifest
from consentry.signals.stamp import (
    StampSigner,
    owner_choices,
    stamp,
    training_mining_entries,
)

pytest.importorskip("c2pa", reason="c2pa-python (the [c2pa] extra) not installed")

from support import TEST_POLICY

from .certs import make_chain
from .media import MEDIA

PURPOSES = ("ai.training.generative", "ai.training.feature", "ai.feature", "ai.training")


@pytest.fixture(scope="module")
def signer() -> StampSigner:
    chain, key = make_chain()
    return StampSigner(chain, key)


@pytest.fixture
def owned(tmp_path: Path) -> Iterator[tuple[str, Store]]:
    """A store (real clock: the CLI opens it too) where u1 consented to generative training
    of their audio, and nothing else."""
    url = f"sqlite:///{tmp_path}/stamp.db"
    store = Store(url)
    store.init(policies=[TEST_POLICY])
    store.give_consent("u1", "ai.training.generative", ["content.audio"])
    yield url, store
    store.close()


def expected(store: Store, purpose: str) -> str:
    return "allow" if store.check(["u1"], purpose, "content.audio").allowed else "deny"


def test_entries_from_choices() -> None:
    assert training_mining_entries({"train-genai": False, "train-other": False}) == {
        "cawg.ai_generative_training": {"use": "notAllowed"},
        "cawg.ai_training": {"use": "notAllowed"},
        "cawg.data_mining": {"use": "notAllowed"},
    }
    mixed = training_mining_entries({"train-genai": False, "train-other": True, "ai-input": True})
    assert mixed["cawg.ai_inference"] == {"use": "allowed"}
    assert mixed["cawg.ai_training"] == {
        "use": "constrained",
        "constraint_info": "consentry:train-genai=notAllowed, consentry:train-other=allowed",
    }
    assert training_mining_entries({}) == {}
    with pytest.raises(InvalidInput, match="unknown use"):
        training_mining_entries({"ai-use": False})


@pytest.mark.parametrize("kind", sorted(MEDIA))
def test_stamped_file_reads_back_as_the_owners_choices(
    kind: str, signer: StampSigner, owned: tuple[str, Store], tmp_path: Path
) -> None:
    _url, store = owned
    make, _mime = MEDIA[kind]
    choices = owner_choices(store, "u1", "content.audio")
    assert choices["train-genai"] is True and choices["train-other"] is False  # a mixed case
    path = tmp_path / f"item.{kind}"
    path.write_bytes(make())
    stamp(path, choices, signer, out=path)
    manifest = read_manifest(path)  # the C2PA reader, from the file
    assert manifest is not None
    assert manifest["validation_state"] in ("Valid", "Trusted")
    labels = [a["label"] for a in manifest["manifests"][manifest["active_manifest"]]["assertions"]]
    assert "cawg.training-mining" in labels
    for purpose in PURPOSES:
        d = evaluate("https://m.example/item", user_agent="B", purpose=purpose, c2pa=manifest)
        assert (d.signal, d.decision) == ("c2pa", expected(store, purpose)), purpose


def test_restamping_after_a_withdrawal(
    signer: StampSigner, owned: tuple[str, Store], tmp_path: Path
) -> None:
    _url, store = owned
    make, mime = MEDIA["png"]
    first = stamp(make(), owner_choices(store, "u1", "content.audio"), signer, mime_type=mime)
    store.withdraw_consent("u1", "ai.training.generative", ["content.audio"])
    second = stamp(first, owner_choices(store, "u1", "content.audio"), signer, mime_type=mime)
    manifest = read_manifest(second, mime)
    assert check_manifest(manifest, "ai.training.generative").decision == "deny"
    # the earlier manifest is kept as the parent ingredient's provenance, not the active one
    assert len(manifest["manifests"]) == 2


def test_bad_input(signer: StampSigner, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="not a JPEG, PNG, MP4 or WAV"):
        stamp(tmp_path / "a.txt", {"train-genai": False}, signer)
    with pytest.raises(InvalidInput, match="give the MIME type"):
        stamp(b"\x89PNG", {"train-genai": False}, signer)
    with pytest.raises(InvalidInput, match="cannot stamp this image/png file"):
        stamp(b"not a png", {"train-genai": False}, signer, mime_type="image/png")
    bad = StampSigner(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", b"x")
    with pytest.raises(InvalidInput, match="refused"):
        stamp(MEDIA["png"][0](), {"train-genai": False}, bad, mime_type="image/png")


def test_cli_stamp(owned: tuple[str, Store], tmp_path: Path) -> None:
    from consentry.cli import app

    url, store = owned
    chain, key = make_chain()
    (tmp_path / "chain.pem").write_bytes(chain)
    (tmp_path / "key.pem").write_bytes(key)
    src = tmp_path / "song.wav"
    src.write_bytes(MEDIA["wav"][0]())
    out = tmp_path / "song-export.wav"
    args = ["--db", url, "signals", "stamp", str(src), "--subject", "u1"]
    args += ["--category", "content.audio", "--cert", str(tmp_path / "chain.pem")]
    args += ["--key", str(tmp_path / "key.pem"), "--out", str(out), "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["entries"]["cawg.ai_generative_training"] == {"use": "allowed"}
    manifest = read_manifest(out)
    for purpose in PURPOSES:
        d = evaluate("https://m.example/s", user_agent="B", purpose=purpose, c2pa=manifest)
        assert d.decision == expected(store, purpose), purpose
    missing = CliRunner().invoke(
        app, ["--db", url, "signals", "stamp", str(src), "--subject", "u1"]
    )
    assert missing.exit_code == 2 and "--cert and --key" in missing.output
