"""Writing the owner's choices into media: a signed CAWG ``training-mining`` assertion.

:func:`stamp` embeds a Content Credentials manifest carrying a ``cawg.training-mining``
assertion (CAWG Training and Data Mining Assertion 1.0) into a JPEG, PNG, MP4 or WAV file the
platform exports, signed with the platform's certificate through ``c2pa-python``. The entries
say what the item's owners currently allow, use by use (:mod:`consentry.signals.vocab`):

=============================  ==========================================================
entry                          covers
=============================  ==========================================================
``cawg.ai_generative_training``  training generative models (``train-genai``)
``cawg.ai_training``           any training (``train-genai`` and ``train-other``)
``cawg.ai_inference``          input to a trained model (``ai-input``)
``cawg.data_mining``           all of the above
=============================  ==========================================================

An entry is ``allowed`` when every use it covers is allowed, ``notAllowed`` when none is, and
``constrained`` when some are: its ``constraint_info`` then lists, in consentry's own terms
(``consentry:train-other=allowed, consentry:train-genai=notAllowed``), which — the CAWG
vocabulary has no entry for training that is not generative. consentry's reader
(:func:`consentry.signals.c2pa.check_manifest`) understands those terms, so reading the file
back gives the same decision per use; any other reader sees ``constrained`` and, knowing no
more, should not use the file for that purpose. A use nobody decided is left out.

Needs the ``c2pa-python`` package (``pip install 'consentry[c2pa]'``).
"""

from __future__ import annotations

import io
import json
import mimetypes
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InvalidInput
from . import vocab
from .c2pa import C2paUnavailable

ASSERTION = "cawg.training-mining"

#: The file types consentry stamps (c2pa-python supports more; these are the ones tested).
MEDIA_TYPES: dict[str, str] = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".mp4": "video/mp4",
    ".m4a": "audio/mp4",
    ".wav": "audio/wav",
}

#: The purposes :func:`owner_choices` asks about by default: one per use CAWG can express.
DEFAULT_PURPOSES: tuple[str, ...] = (
    "ai.training.generative",
    "ai.training.feature",
    "ai.feature",
)


def _c2pa() -> Any:
    try:
        import c2pa
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise C2paUnavailable(
            "writing C2PA manifests needs the c2pa-python package",
            hint="pip install 'consentry[c2pa]'",
        ) from exc
    return c2pa


@dataclass(frozen=True, slots=True)
class StampSigner:
    """The certificate chain (PEM, signer first) and private key (PEM) that sign manifests.

    ``alg`` is the C2PA signing algorithm matching the key (``es256`` for a P-256 key,
    ``es384``, ``ps256``, ``ed25519``…); ``tsa_url`` a time-stamping authority (None: none,
    which works offline; the signature then carries no trusted time).
    """

    certificate_chain: bytes
    private_key: bytes
    alg: str = "es256"
    tsa_url: str | None = None

    @classmethod
    def from_files(
        cls, cert: str | Path, key: str | Path, *, alg: str = "es256", tsa_url: str | None = None
    ) -> StampSigner:
        """A signer from PEM files (the chain file holds the signer's certificate first)."""
        try:
            return cls(Path(cert).read_bytes(), Path(key).read_bytes(), alg, tsa_url)
        except OSError as exc:
            raise InvalidInput(
                f"cannot read the signing certificate or key: {exc}",
                hint="give a PEM certificate chain (--cert) and its PEM private key (--key)",
            ) from exc

    def signer(self) -> Any:
        c2pa = _c2pa()
        info = c2pa.C2paSignerInfo(
            alg=self.alg.encode("ascii"),
            sign_cert=self.certificate_chain,
            private_key=self.private_key,
            ta_url=self.tsa_url.encode("ascii") if self.tsa_url else None,
        )
        try:
            return c2pa.Signer.from_info(info)
        except c2pa.C2paError as exc:
            raise InvalidInput(
                f"the signing certificate or key was refused: {exc}",
                hint="C2PA needs a certificate chain (not a self-signed certificate) whose"
                " signer certificate has the digitalSignature key usage, and alg matching the key",
            ) from exc


def training_mining_entries(choices: Mapping[str, bool]) -> dict[str, dict[str, str]]:
    """The assertion's entries for ``choices`` (use → allowed; undecided uses left out).

    >>> training_mining_entries({"train-genai": False, "train-other": False})["cawg.ai_training"]
    {'use': 'notAllowed'}
    """
    unknown = set(choices) - set(vocab.USES)
    if unknown:
        raise InvalidInput(
            f"unknown use {sorted(unknown)[0]!r}", hint="use " + ", ".join(vocab.USES)
        )
    entries: dict[str, dict[str, str]] = {}
    for name, covered in vocab.CAWG_ENTRIES.items():
        said = {use: choices[use] for use in covered if use in choices}
        if not said:
            continue
        if len(said) == len(covered) and all(said.values()):
            entries[f"cawg.{name}"] = {"use": "allowed"}
        elif not any(said.values()):
            entries[f"cawg.{name}"] = {"use": "notAllowed"}
        else:
            terms = ", ".join(
                f"{vocab.OWN_TERMS[use]}={'allowed' if ok else 'notAllowed'}"
                for use, ok in said.items()
            )
            entries[f"cawg.{name}"] = {"use": "constrained", "constraint_info": terms}
    return entries


def owner_choices(
    store: Any,
    subjects: str | Iterable[str],
    category: str,
    purposes: Iterable[str] = DEFAULT_PURPOSES,
    labels: Iterable[str] = (),
) -> dict[str, bool]:
    """The current decision per use for an item of ``category`` owned by ``subjects``.

    Each purpose is decided by the store (policy, consent, every subject of a multi-party
    item); a purpose covering several uses gives its answer to each. When two purposes speak
    about one use, no wins.
    """
    people = [subjects] if isinstance(subjects, str) else list(subjects)
    out: dict[str, bool] = {}
    for purpose in purposes:
        allowed = bool(store.check(people, purpose, category, list(labels)).allowed)
        for use in vocab.uses_of(purpose):
            out[use] = out.get(use, True) and allowed
    return out


def manifest_definition(
    choices: Mapping[str, bool], *, title: str, mime_type: str, generator: str = "consentry"
) -> dict[str, Any]:
    """The manifest definition ``c2pa.Builder`` signs."""
    from .. import __version__

    return {
        "claim_generator_info": [{"name": generator, "version": __version__}],
        "title": title,
        "format": mime_type,
        "assertions": [
            {"label": ASSERTION, "data": {"entries": training_mining_entries(choices)}},
        ],
    }


def media_type(path: str | Path) -> str:
    """The MIME type of a file consentry stamps, from its extension."""
    suffix = Path(path).suffix.lower()
    found = MEDIA_TYPES.get(suffix) or mimetypes.guess_type(str(path))[0]
    if found not in MEDIA_TYPES.values():
        raise InvalidInput(
            f"cannot stamp {Path(path).name!r}: not a JPEG, PNG, MP4 or WAV file",
            hint="stamp .jpg, .png, .mp4, .m4a or .wav files",
            field="file",
        )
    return str(found)


def stamp(
    source: str | Path | bytes,
    choices: Mapping[str, bool],
    signer: StampSigner,
    *,
    out: str | Path | None = None,
    mime_type: str | None = None,
    title: str | None = None,
) -> bytes:
    """Embed a signed ``cawg.training-mining`` assertion for ``choices`` into a media file.

    ``source`` is a path or the file's bytes (then ``mime_type`` is required). Returns the
    stamped file's bytes, and writes them to ``out`` when given (``out`` may be ``source``).
    """
    c2pa = _c2pa()
    if isinstance(source, bytes):
        if not mime_type:
            raise InvalidInput("give the MIME type of the bytes to stamp", hint="e.g. image/png")
        data, name = source, title or "asset"
    else:
        path = Path(source)
        mime_type = mime_type or media_type(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InvalidInput(f"cannot read {path}: {exc}", field="file") from exc
        name = title or path.name
    definition = manifest_definition(choices, title=name, mime_type=mime_type)
    sink = io.BytesIO()
    try:
        builder = c2pa.Builder(json.dumps(definition))
        try:
            # EDIT: the source becomes the parent ingredient (its own manifest, if any, kept
            # as provenance) with a c2pa.opened action. UPDATE, the intent meant for
            # metadata-only changes, fails in c2pa-python 0.38 with streams ("ingredient file
            # not found"), and a manifest with no opened/created action does not validate.
            builder.set_intent(c2pa.C2paBuilderIntent.EDIT)
            builder.sign(signer.signer(), mime_type, io.BytesIO(data), sink)
        finally:
            close = getattr(builder, "close", None)
            if close is not None:
                close()
    except c2pa.C2paError as exc:
        raise InvalidInput(
            f"cannot stamp this {mime_type} file: {exc}",
            hint="is it a valid file of that type? (c2pa-python parses it to embed the manifest)",
        ) from exc
    stamped = sink.getvalue()
    if out is not None:
        Path(out).write_bytes(stamped)
    return stamped
