"""Signed checkpoints of the transparency log: C2SP ``tlog-checkpoint`` in ``signed-note`` form.

A checkpoint is three lines — the log's origin, its tree size, the base64 root hash — and one
extension line with the time it was made, signed with the store's log key (Ed25519)::

    consentry/0193f6d2-…
    1042
    q2HNh0kFf0RZ1Ntc2zqyBDjJ3yxbTp+3n3b3MH3cK1Q=
    time 2026-12-02T05:40:00.000000Z

    — consentry/0193f6d2-… Az3grlgt…

The format is the one Go's checksum database, Sigstore and the CT static logs use, so their
witnesses and tools read it. A verifier pins the log's *verifier key*
(``<name>+<key id hex>+<base64(0x01 || public key)>``) and accepts a note only when that key
signed it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..errors import InvalidInput, SignatureInvalid

ED25519_TYPE = b"\x01"
_DASH = "\u2014 "  # every signature line starts with an em dash and a space
TIME_PREFIX = "time "


def _key_id(name: str, public_raw: bytes) -> bytes:
    return hashlib.sha256(name.encode("utf-8") + b"\n" + ED25519_TYPE + public_raw).digest()[:4]


def _check_name(name: str) -> None:
    if not name or any(c.isspace() or c == "+" for c in name):
        raise InvalidInput(
            f"log name {name!r} may not be empty or contain spaces or '+'",
            hint="use a schema-less URL such as example.com/consent-log",
        )


class NoteVerifier:
    """A pinned Ed25519 note key: checks signatures of one log."""

    def __init__(self, name: str, public_raw: bytes) -> None:
        _check_name(name)
        self.name = name
        self.public_raw = public_raw
        self.key_id = _key_id(name, public_raw)
        self._key = Ed25519PublicKey.from_public_bytes(public_raw)

    @classmethod
    def parse(cls, vkey: str) -> NoteVerifier:
        """Read a verifier key string ``<name>+<key id hex>+<base64(0x01 || key)>``."""
        parts = vkey.strip().split("+", 2)  # base64 may hold "+"
        if len(parts) != 3:
            raise InvalidInput(
                f"{vkey.strip()[:80]!r} is not a log verifier key",
                hint="a verifier key reads <name>+<8 hex digits>+<base64>: print the store's "
                "with `consentry ledger public-keys`",
            )
        name, hex_id, b64 = parts
        try:
            raw = base64.b64decode(b64, validate=True)
            key_id = bytes.fromhex(hex_id)
        except (binascii.Error, ValueError):
            raise InvalidInput(f"the verifier key of {name!r} is not valid base64/hex") from None
        if len(raw) != 33 or raw[:1] != ED25519_TYPE:
            raise InvalidInput(f"the verifier key of {name!r} is not an Ed25519 note key")
        verifier = cls(name, raw[1:])
        if verifier.key_id != key_id:
            raise InvalidInput(
                f"the verifier key of {name!r} has key id {hex_id}, but its key gives "
                f"{verifier.key_id.hex()}",
                hint="the key string was altered; copy it again from its source",
            )
        return verifier

    def vkey(self) -> str:
        """The verifier key string to publish and pin."""
        b64 = base64.b64encode(ED25519_TYPE + self.public_raw).decode("ascii")
        return f"{self.name}+{self.key_id.hex()}+{b64}"

    def verify(self, note: str) -> str:
        """The note's text, if this key signed it; else :class:`SignatureInvalid`."""
        text, signatures = parse_note(note)
        if not any(key_id == self.key_id for name, key_id, _ in signatures if name == self.name):
            raise SignatureInvalid(
                f"the checkpoint is not signed by the pinned log key {self.name} "
                f"({self.key_id.hex()})",
                hint="it was signed by another key: the log key was replaced, or the "
                "checkpoint comes from another log",
                signers=[f"{n} ({k.hex()})" for n, k, _ in signatures],
            )
        for name, key_id, sig in signatures:
            if name != self.name or key_id != self.key_id:
                continue  # others' signatures (witnesses) are ignored, as the spec says
            try:
                self._key.verify(sig, text.encode("utf-8"))
            except InvalidSignature:
                raise SignatureInvalid(
                    "the checkpoint's signature does not match its text: it was altered",
                    hint="fetch the checkpoint again from the witness location",
                ) from None
        return text


class NoteSigner(NoteVerifier):
    """The log's private key: signs notes."""

    def __init__(self, name: str, private_pem: str, *, source: str = "the store") -> None:
        try:
            key = serialization.load_pem_private_key(private_pem.encode("ascii"), password=None)
        except (ValueError, TypeError, UnicodeEncodeError):
            raise InvalidInput(
                f"the log key in {source} is not an unencrypted PEM private key",
                hint="create one with `consentry receipt keygen FILE`",
            ) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise InvalidInput(f"the log key in {source} is not an Ed25519 key")
        raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        super().__init__(name, raw)
        self._private = key
        self.private_raw = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )

    def sign(self, text: str) -> str:
        """``text`` (ending in a newline) as a signed note."""
        if not text.endswith("\n"):
            raise ValueError("a note's text ends with a newline")
        sig = self._private.sign(text.encode("utf-8"))
        line = base64.b64encode(self.key_id + sig).decode("ascii")
        return f"{text}\n{_DASH}{self.name} {line}\n"

    def event_key(self) -> bytes:
        """The HMAC key that authenticates ledger events, derived from the log key: only a
        holder of the log key can append events that verify."""
        return hashlib.sha256(b"consentry event mac v1\n" + self.private_raw).digest()


def parse_note(note: str) -> tuple[str, list[tuple[str, bytes, bytes]]]:
    """Split a signed note into its text and its (name, key id, signature) lines."""
    if any(ord(c) < 0x20 and c != "\n" for c in note):
        raise InvalidInput("a signed note may not contain control characters")
    text, sep, sig_block = note.rpartition("\n\n")
    if not sep or not sig_block.endswith("\n"):
        raise InvalidInput(
            "not a signed note: expected text, a blank line and signature lines",
            hint="give the checkpoint file exactly as the store wrote it",
        )
    signatures: list[tuple[str, bytes, bytes]] = []
    for line in sig_block[:-1].split("\n"):
        if not line.startswith(_DASH):
            raise InvalidInput(f"not a note signature line: {line[:60]!r}")
        name, _, b64 = line[len(_DASH) :].partition(" ")
        try:
            raw = base64.b64decode(b64, validate=True)
        except binascii.Error:
            raise InvalidInput(f"the signature of {name!r} is not base64") from None
        if len(raw) < 5:
            raise InvalidInput(f"the signature of {name!r} is too short")
        signatures.append((name, raw[:4], raw[4:]))
    return text + "\n", signatures


@dataclass(frozen=True)
class Checkpoint:
    """A tree head: the log's origin, its size, its root hash and when it was made."""

    origin: str
    size: int
    root: bytes
    time: str | None = None
    note: str = ""

    def text(self) -> str:
        """The checkpoint's note text."""
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode("ascii")]
        if self.time:
            lines.append(TIME_PREFIX + self.time)
        return "\n".join(lines) + "\n"

    @property
    def root_hex(self) -> str:
        return self.root.hex()

    def to_dict(self) -> dict[str, object]:
        return {
            "origin": self.origin,
            "size": self.size,
            "root": self.root_hex,
            "time": self.time,
            "note": self.note,
        }


def parse_checkpoint(text: str, note: str = "") -> Checkpoint:
    """Read a checkpoint's note text (already verified)."""
    lines = text.rstrip("\n").split("\n")
    if len(lines) < 3:
        raise InvalidInput("not a checkpoint: expected origin, tree size and root hash lines")
    origin, size_text, root_b64 = lines[:3]
    if not size_text.isdigit() or (size_text != "0" and size_text.startswith("0")):
        raise InvalidInput(f"not a checkpoint: tree size {size_text!r} is not a number")
    try:
        root = base64.b64decode(root_b64, validate=True)
    except binascii.Error:
        raise InvalidInput("not a checkpoint: the root hash is not base64") from None
    if len(root) != 32:
        raise InvalidInput("not a checkpoint: the root hash is not 32 bytes")
    time = None
    for extra in lines[3:]:
        if extra.startswith(TIME_PREFIX):
            time = extra[len(TIME_PREFIX) :]
    return Checkpoint(origin, int(size_text), root, time, note)


def read_checkpoint(note: str, verifier: NoteVerifier) -> Checkpoint:
    """Verify a signed checkpoint with the pinned key and read it."""
    text = verifier.verify(note)
    checkpoint = parse_checkpoint(text, note)
    if checkpoint.origin != verifier.name:
        raise SignatureInvalid(
            f"the checkpoint is for log {checkpoint.origin!r}, not {verifier.name!r}",
            hint="compare it with a checkpoint of the same log",
        )
    return checkpoint
