"""A person's right of access: everything the store holds about them, as one ZIP archive.

``consentry subject export S``, ``GET /v1/subjects/{s}/export``, "Download my data" on /me and
:meth:`consentry.Store.export_subject` all make the same archive::

    README.txt          what each file is, in the person's language (en, id, fr)
    events.json         every ledger event about them, as recorded (hashes included)
    events.csv          the same, one line per event, for a spreadsheet
    state.json          their choices as they stand now
    receipts/<id>.json  the signed receipt of each consent event, with its inclusion proof
                        against checkpoint.txt
    memberships.json    accounts, pending invitations and their history
    datasets.json       the datasets (purpose, date, policy version) and models their data
                        went into, from the lineage, and whether their choices still allow them
    checkpoint.txt      the signed checkpoint every receipt is proved against (the latest)
    public-keys.json    the store's receipt and log keys, for ``consentry receipt verify``

Every receipt verifies offline: ``consentry receipt verify receipts/<id>.json --checkpoint
checkpoint.txt --public-key public-keys.json``.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .errors import NotFound
from .ledger.events import CAPTURED_AT, CONSENT_KINDS, CONSENT_STATUS, Event, Kind
from .times import format_time

if TYPE_CHECKING:
    from .store import Store

MEMBERSHIP_KINDS = frozenset(
    {
        Kind.MEMBER_ADDED,
        Kind.MEMBER_REMOVED,
        Kind.MEMBER_INVITED,
        Kind.MEMBER_ACCEPTED,
        Kind.MEMBER_DECLINED,
    }
)
CSV_COLUMNS = (
    "seq",
    "at",
    "captured_at",
    "kind",
    "purpose",
    "categories",
    "status",
    "account",
    "policy_version",
    "notice_version",
    "language",
    "method",
    "actor",
    "id",
)
SERVICE_NAME = "consentry"


def export_subject(store: Store, subject: str, *, language: str | None = None) -> bytes:
    """The archive of ``subject`` (see the module's docstring). ``language``: the README's,
    else the language of the person's latest choice, else the policy's."""
    from .textcheck import checked_id as _id

    subject = _id(subject, "subject")
    store._require_init()
    # Every id the person is known by (their aliases, issue 16 §3): the events of each.
    ids = store.subject_ids(subject)
    events = [e for e in store.ledger.events(subjects=ids) if e.subject in ids]
    impact = store.impact(subject)
    if not events and not impact.datasets:
        raise no_such_subject(subject)
    generated = format_time(store.clock())
    files: dict[str, bytes] = {}
    files["events.json"] = _json([_event_data(e) for e in events])
    files["events.csv"] = _csv(events)
    files["state.json"] = _json(store.subject_state(subject))
    consent_events = [e for e in events if e.kind in CONSENT_KINDS]
    if consent_events:
        checkpoint = _latest_checkpoint(store, max(e.seq for e in consent_events))
        for event in consent_events:
            receipt = store.receipt(event.id, checkpoint=checkpoint)
            files[f"receipts/{event.id}.json"] = _json(receipt)
        files["checkpoint.txt"] = checkpoint.encode("utf-8")
    files["public-keys.json"] = _json(store.public_keys())
    files["memberships.json"] = _json(
        {
            "accounts": list(store.state().accounts_of(subject)),
            "invitations": store.invitations(subject=subject),
            "history": [_event_data(e) for e in events if e.kind in MEMBERSHIP_KINDS],
        }
    )
    files["datasets.json"] = _json(_datasets(impact))
    lang = language or _person_language(events) or _policy_language(store) or "en"
    from .web.export_text import readme

    files["README.txt"] = readme(
        lang,
        service=SERVICE_NAME,
        subject=subject,
        generated_at=generated,
        datasets=len(impact.datasets),
    ).encode("utf-8")
    return _zip(files, generated)


def no_such_subject(subject: str) -> NotFound:
    """The answer for a subject the ledger does not know, and (at the HTTP edge) for a caller
    who may not export this subject: the same words, so it says nothing of who exists."""
    return NotFound(
        f"no subject {subject!r}: the ledger holds nothing about them",
        hint="check the id; a person is known once a choice or membership is recorded",
    )


def archive_name(subject: str) -> str:
    """A file name for the archive that is safe in a header and on any file system."""
    kept = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "_" for c in subject)
    return f"{kept.strip('.')[:80] or 'subject'}-data.zip"


def _latest_checkpoint(store: Store, seq: int) -> str:
    """The latest signed checkpoint, made now if none covers event ``seq`` yet."""
    latest = store.latest_checkpoint()
    if latest is None or latest.size < seq:
        latest = store.checkpoint()
    return latest.note


def _event_data(event: Event) -> dict[str, Any]:
    data = event.to_dict()
    data["captured_at"] = event.payload.get(CAPTURED_AT) if event.payload else None
    return data


def _csv(events: Sequence[Event]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for e in events:
        data = _event_data(e)
        data["categories"] = ";".join(e.categories)
        data["kind"] = str(e.kind)
        if e.kind in CONSENT_KINDS:
            data["status"] = CONSENT_STATUS[e.kind]
        writer.writerow(["" if data.get(c) is None else data[c] for c in CSV_COLUMNS])
    # A byte order mark, so that spreadsheet programs read the file as UTF-8.
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


def _datasets(impact: Any) -> dict[str, Any]:
    data: dict[str, Any] = impact.to_dict()
    created = {d.dataset.id: d.dataset.created_at for d in impact.datasets}
    for entry in data["datasets"]:
        entry["created_at"] = created.get(entry["dataset_id"])
    return data


def _person_language(events: Sequence[Event]) -> str | None:
    for event in reversed(events):
        if event.kind in CONSENT_KINDS and event.language:
            return event.language
    return None


def _policy_language(store: Store) -> str | None:
    try:
        return store.policy().language
    except NotFound:
        return None


def _json(data: Any) -> bytes:
    return (json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n").encode("utf-8")


def _zip(files: dict[str, bytes], generated: str) -> bytes:
    stamp = (
        int(generated[0:4]),
        int(generated[5:7]),
        int(generated[8:10]),
        int(generated[11:13]),
        int(generated[14:16]),
        int(generated[17:19]),
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in ("README.txt", *sorted(n for n in files if n != "README.txt")):
            info = zipfile.ZipInfo(name, date_time=max(stamp, (1980, 1, 1, 0, 0, 0)))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, files[name])
    return buffer.getvalue()
