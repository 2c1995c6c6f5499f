"""C2PA / CAWG ``training-mining`` assertions in media files.

A Content Credentials manifest may carry a ``c2pa.training-mining`` (C2PA 1.x) or
``cawg.training-mining`` (CAWG 1.0) assertion whose entries say, per use, ``allowed``,
``notAllowed`` or ``constrained``. consentry reads the active manifest, use by use
(:data:`consentry.signals.vocab.CAWG_ENTRIES`: ``ai_training`` covers both kinds of training,
``data_mining`` every use): ``notAllowed`` denies, ``allowed`` allows, ``constrained`` denies
(a constraint is a condition consentry cannot check) unless its ``constraint_info`` states the
use in consentry's own terms (``consentry:train-other=allowed``, as :mod:`.stamp` writes it).
Entries that cover a use combine most-restrictively; a purpose covering several uses is
allowed only when every use is. A file with no manifest or no such entry is **unset** — not
"allowed".

Reading files needs the optional ``c2pa-python`` package (``pip install consentry[c2pa]``);
:func:`check_manifest` works on an already-read manifest store without it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConsentryError, InvalidInput
from .model import ALLOW, DENY, UNSET
from .vocab import CAWG_ENTRIES

ASSERTION_LABELS = ("c2pa.training-mining", "cawg.training-mining")


@dataclass(frozen=True, slots=True)
class C2paAnswer:
    decision: str
    evidence: str


class C2paUnavailable(ConsentryError):
    code = "c2pa-unavailable"
    status = 501
    title = "C2PA support not installed"


def check_manifest(store: Mapping[str, Any] | str | None, uses: Iterable[str] | str) -> C2paAnswer:
    """What a manifest store (``c2pa.Reader.json()``, parsed or not) says for ``uses``.

    ``uses`` are consentry's uses (:data:`consentry.signals.vocab.USES`) or one purpose; an
    entry counts when it covers any of them (:data:`~consentry.signals.vocab.CAWG_ENTRIES`).
    """
    if isinstance(uses, str):
        from .vocab import uses_of

        uses = uses_of(uses)
    wanted_uses = set(uses)
    if store is None:
        return C2paAnswer(UNSET, "no C2PA manifest")
    if isinstance(store, str):
        try:
            store = json.loads(store)
        except ValueError as exc:
            raise InvalidInput(f"C2PA manifest store is not JSON: {exc}") from exc
    assert isinstance(store, Mapping)
    manifests = store.get("manifests") or {}
    active = store.get("active_manifest")
    manifest = manifests.get(active) if isinstance(active, str) else None
    if not isinstance(manifest, Mapping):
        return C2paAnswer(UNSET, "no active C2PA manifest")
    # per use: every entry that covers it, most restrictive first (any no wins)
    said: dict[str, tuple[bool, str]] = {}
    for label, name, entry in _training_entries(manifest):
        short = name.split(".", 1)[1] if "." in name else name
        covered = wanted_uses & set(CAWG_ENTRIES.get(short, ()))
        if not covered:
            continue
        value = entry.get("use")
        info = entry.get("constraint_info")
        evidence = f"{label} {name}: use={value}" + (f" ({info})" if info else "")
        for use in covered:
            allowed = _entry_allows(value, info, use)
            if allowed is None:
                continue
            if use not in said or (said[use][0] and not allowed):
                said[use] = (allowed, evidence)
    denied = [said[u][1] for u in sorted(wanted_uses) if u in said and not said[u][0]]
    if denied:
        return C2paAnswer(DENY, "; ".join(dict.fromkeys(denied)))
    if wanted_uses and all(u in said for u in wanted_uses):
        return C2paAnswer(ALLOW, "; ".join(dict.fromkeys(said[u][1] for u in sorted(wanted_uses))))
    label = "/".join(sorted(wanted_uses))
    return C2paAnswer(UNSET, "C2PA manifest has no training-mining entry for " + label)


def _training_entries(manifest: Mapping[str, Any]) -> Iterator[tuple[str, str, Mapping[str, Any]]]:
    """(assertion label, entry name, entry) of every training-and-mining entry."""
    for assertion in manifest.get("assertions") or []:
        if not isinstance(assertion, Mapping) or assertion.get("label") not in ASSERTION_LABELS:
            continue
        entries = (assertion.get("data") or {}).get("entries") or {}
        if not isinstance(entries, Mapping):
            continue
        for name, entry in entries.items():
            if isinstance(entry, Mapping):
                yield assertion["label"], name, entry


def _entry_allows(value: object, info: object, use: str) -> bool | None:
    """What an entry's ``use`` says for ``use``: allowed, not, or None (nothing it says)."""
    if value == "allowed":
        return True
    if value == "notAllowed":
        return False
    if value == "constrained":
        # a constraint consentry cannot check denies; its own terms it can read
        return own_terms(info).get(use, False)
    return None


def own_terms(info: object) -> dict[str, bool]:
    """consentry's own terms in a ``constraint_info`` (``consentry:train-other=allowed, …``)."""
    out: dict[str, bool] = {}
    if not isinstance(info, str):
        return out
    for piece in info.split(","):
        term, _, value = piece.strip().partition("=")
        if term.startswith("consentry:") and value in ("allowed", "notAllowed"):
            use = term.split(":", 1)[1]
            if use in CAWG_USES:
                out[use] = value == "allowed"
    return out


CAWG_USES = frozenset(u for covered in CAWG_ENTRIES.values() for u in covered)


def read_manifest(
    source: str | Path | bytes, mime_type: str | None = None
) -> dict[str, Any] | None:
    """The manifest store of a file (path) or of ``bytes`` of type ``mime_type``; None if none.

    Raises :class:`C2paUnavailable` when ``c2pa-python`` is not installed.
    """
    try:
        import c2pa as c2pa_lib
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise C2paUnavailable(
            "reading C2PA manifests needs the c2pa-python package",
            hint="pip install 'consentry[c2pa]'",
        ) from exc
    import io

    try:
        if isinstance(source, bytes):
            if not mime_type:
                raise InvalidInput("give the MIME type of C2PA bytes", hint="e.g. image/jpeg")
            reader = c2pa_lib.Reader(mime_type, io.BytesIO(source))
        else:
            reader = c2pa_lib.Reader(str(source))
        try:
            text = reader.json()
        finally:
            reader.close()
    except c2pa_lib.C2paError.ManifestNotFound:
        return None
    except c2pa_lib.C2paError as exc:
        raise InvalidInput(f"cannot read C2PA data: {exc}") from exc
    data = json.loads(text)
    return data if isinstance(data, dict) else None
