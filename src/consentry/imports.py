"""Bringing in consents collected by another system, with the moment each was given.

``consentry import FILE`` (and :meth:`consentry.Store.import_consents`) reads a CSV file or
JSON Lines, one consent choice per row::

    subject,purpose,categories,status,captured_at,method,notice_version,source_id
    u1,ai.training,content.audio;content.video,given,2023-05-02T10:00:00Z,web-banner,ot-7,r-1

Each row becomes one consent event. Its ledger time (``at``) is when the import ran; the
moment the person chose is kept as ``captured_at`` in the event's payload, and the consent
record counts from it: expiry (``expires_after``) and re-consent (``reconsent``) see the
original date (see :func:`consentry.ledger.events.state_changes`).

The rules:

* **The whole file is checked before anything is written.** A file with any row in error
  writes nothing; every error is reported with its line number and field.
* **Idempotent per ``source_id``.** A row's idempotency key is ``import:<source_id>``: a row
  imported before is reported as ``already`` and not recorded again; the same ``source_id``
  with different content is an error (a source id names one choice for good).
* **The newer choice stands.** When the subject's record for a category holds a choice made
  later than the row's ``captured_at`` (a choice made here since, or a later row of the file),
  the row is still recorded (it is part of the person's history) but changes nothing for that
  category: the event lists it under ``superseded``.
* Rows are written in transactions of ``batch_size`` rows. An import interrupted by a crash
  keeps the batches it committed; running it again records the rest.

``source_id`` is kept only in the event's idempotency key, one of the personal fields the
ledger hashes as a salted commitment (``PERSONAL_FIELDS``): the erasure of a person can
remove it with their id while every hash still verifies. ``captured_at``, the method and the
notice version name nobody and are hashed as they are.
"""

from __future__ import annotations

import csv
import functools
import gc
import io
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlalchemy import select

from .errors import InvalidInput, UnknownName
from .ledger import schema
from .ledger.events import CAPTURED_AT, SUPERSEDED, Draft, Kind, make_draft
from .ledger.events import json_string as _q
from .state import AT_SHIFT
from .textcheck import text_problem
from .times import EPOCH, format_time, parse_time, to_us

if TYPE_CHECKING:
    from .store import Store

#: The columns of an import file; ``language`` and ``method`` may be left out.
COLUMNS = (
    "subject",
    "purpose",
    "categories",
    "status",
    "captured_at",
    "method",
    "notice_version",
    "source_id",
    "language",
)
REQUIRED = ("subject", "purpose", "categories", "status", "captured_at", "source_id")
#: Other names a column may have in a file (a policy version is a notice version here).
ALIASES = {"policy_version": "notice_version", "notice": "notice_version"}
STATUS_KINDS = {
    "given": Kind.CONSENT_GIVEN,
    "refused": Kind.CONSENT_REFUSED,
    "withdrawn": Kind.CONSENT_WITHDRAWN,
}
FORMATS = ("csv", "jsonl")
KEY_PREFIX = "import:"
DEFAULT_BATCH = 5_000
#: How many errors an import reports before it stops looking (the file is refused anyway).
MAX_ERRORS = 1_000
_LIMITS = {"subject": 512, "source_id": 200, "method": 100, "notice_version": 200, "language": 35}


@dataclass
class RowError(Exception):
    """One problem in an import file."""

    line: int
    field: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "field": self.field, "message": self.message}

    def __str__(self) -> str:
        return f"line {self.line}, {self.field}: {self.message}"


class ImportRefused(InvalidInput):
    """An import file with rows in error: nothing of it was written."""

    code = "import-refused"
    title = "Import refused"

    def __init__(self, source: str, errors: Sequence[RowError], rows: int) -> None:
        shown = "; ".join(str(e) for e in errors[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        super().__init__(
            f"{source}: {len(errors)} row error(s), nothing was imported: {shown}{more}",
            hint="fix the rows named (line numbers count the header as line 1 in a CSV file) "
            "and run the import again",
            errors=[e.to_dict() for e in errors],
            rows=rows,
        )
        self.errors = list(errors)


@dataclass
class ImportReport:
    """What an import did."""

    source: str
    format: str
    rows: int = 0
    #: Events recorded by this run.
    recorded: int = 0
    #: Rows to record (a dry run records nothing).
    pending: int = 0
    #: Rows whose ``source_id`` was imported before (nothing recorded again).
    already: int = 0
    #: Rows recorded that changed nothing for at least one category (a newer choice stands).
    superseded: int = 0
    dry_run: bool = False
    #: ``(line, event id)`` of each row already imported (its first event).
    already_lines: list[tuple[int, str]] = field(default_factory=list)
    first_seq: int | None = None
    last_seq: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "format": self.format,
            "rows": self.rows,
            "recorded": self.recorded,
            "pending": self.pending,
            "already": self.already,
            "superseded": self.superseded,
            "dry_run": self.dry_run,
            "already_imported": [{"line": n, "event_id": e} for n, e in self.already_lines],
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
        }


class _Row(NamedTuple):
    """One checked row (a named tuple: made for every row of a file)."""

    line: int
    subject: str
    purpose: str
    categories: tuple[str, ...]
    kind: Kind
    captured_at: str
    captured_us: int
    method: str
    notice_version: str | None
    language: str | None
    source_id: str

    def asked(self) -> dict[str, Any]:
        """What the row asks for, as idempotent re-imports compare it: the choice, not the
        policy version in effect nor the ``--source`` label, which may differ between runs."""
        return {
            "import": 1,
            "subject": self.subject,
            "purpose": self.purpose,
            "categories": list(self.categories),
            "kind": str(self.kind),
            "captured_at": self.captured_at,
            "method": self.method,
            "notice_version": self.notice_version,
            "language": self.language,
        }

    def asked_json(self) -> bytes:
        """``canonical_json(self.asked())``, spelled from a template (the keys in sorted
        order, each string as canonical JSON writes it): made for every row of an import,
        where the sorted dump was a tenth of the row's cost. tests/test_imports.py holds the
        two equal."""
        return (
            _ASKED_JSON
            % (
                _q(self.captured_at),
                _categories_json(self.categories),
                _q(str(self.kind)),
                _q(self.language),
                _q(self.method),
                _q(self.notice_version),
                _q(self.purpose),
                _q(self.subject),
            )
        ).encode("utf-8")


_ASKED_JSON = (
    '{"captured_at":%s,"categories":%s,"import":1,"kind":%s,"language":%s,"method":%s,'
    '"notice_version":%s,"purpose":%s,"subject":%s}'
)


@functools.lru_cache(maxsize=1024)
def _categories_json(categories: tuple[str, ...]) -> str:
    return "[" + ",".join(map(_q, categories)) + "]"


def detect_format(path: Path, given: str | None = None) -> str:
    """``csv`` or ``jsonl``: as given, else from the file's extension."""
    if given is not None:
        if given not in FORMATS:
            raise InvalidInput(
                f"format {given!r} is not one of {', '.join(FORMATS)}", field="format"
            )
        return given
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    raise InvalidInput(
        f"cannot tell the format of {path.name} from its extension",
        hint="name it .csv or .jsonl, or pass --format csv|jsonl",
        field="format",
    )


def _records(text: str, fmt: str, errors: list[RowError]) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line, fields)`` of each row; problems with the file's shape go to ``errors``."""
    if fmt == "csv":
        reader = csv.reader(io.StringIO(text, newline=""))
        try:
            header = next(reader)
        except StopIteration:
            return
        names = [ALIASES.get(h.strip(), h.strip()) for h in header]
        unknown = [h for h in names if h not in COLUMNS]
        missing = [c for c in REQUIRED if c not in names]
        for name in unknown:
            errors.append(
                RowError(1, name, f"unknown column (the columns are {', '.join(COLUMNS)})")
            )
        for name in missing:
            errors.append(RowError(1, name, "required column missing from the header"))
        if unknown or missing:
            return
        line = reader.line_num
        for values in reader:
            start, line = line + 1, reader.line_num
            if not values or values == [""]:
                continue
            if len(values) != len(names):
                errors.append(
                    RowError(start, "*", f"{len(values)} fields, the header has {len(names)}")
                )
                continue
            yield start, dict(zip(names, values, strict=True))
        return
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            data = json.loads(raw)
        except ValueError as exc:
            errors.append(RowError(number, "*", f"not a JSON object: {exc}"))
            continue
        if not isinstance(data, dict):
            errors.append(RowError(number, "*", "each line must be one JSON object"))
            continue
        fields: dict[str, Any] = {ALIASES.get(str(k), str(k)): v for k, v in data.items()}
        unknown = [k for k in fields if k not in COLUMNS]
        if unknown:
            for name in unknown:
                errors.append(RowError(number, name, "unknown field"))
            continue
        yield number, fields


class _Checker:
    """Checks rows one by one against the store's names and the clock (cached look-ups: the
    same few purposes and categories come back on every row)."""

    def __init__(self, store: Store, now_us: int) -> None:
        self.taxonomy = store.taxonomy()
        self.now_us = now_us
        self.purposes: dict[str, str] = {}
        self.categories: dict[str, tuple[str, ...]] = {}

    def text(self, fields: dict[str, Any], name: str, line: int, *, required: bool) -> str | None:
        value = fields.get(name)
        if value is None or value == "":
            if required:
                raise RowError(line, name, "missing")
            return None
        if not isinstance(value, str):
            raise RowError(line, name, f"expected text, got {type(value).__name__}")
        value = value.strip()
        if not value:
            if required:
                raise RowError(line, name, "missing")
            return None
        if len(value) > _LIMITS.get(name, 200):
            raise RowError(line, name, f"longer than {_LIMITS.get(name, 200)} characters")
        if "\x00" in value or not value.isascii():
            problem = text_problem(value)
            if problem is not None:
                raise RowError(line, name, problem)
        return value

    def row(self, line: int, fields: dict[str, Any]) -> _Row:
        text = self.text
        subject = text(fields, "subject", line, required=True)
        source_id = text(fields, "source_id", line, required=True)
        status = text(fields, "status", line, required=True)
        captured = text(fields, "captured_at", line, required=True)
        assert subject is not None and source_id is not None
        assert status is not None and captured is not None
        kind = STATUS_KINDS.get(status.lower())
        if kind is None:
            raise RowError(line, "status", f"{status!r} is not one of given, refused, withdrawn")
        purpose_name = text(fields, "purpose", line, required=True)
        assert purpose_name is not None
        purpose = self.purposes.get(purpose_name)
        if purpose is None:
            try:
                purpose = self.taxonomy.purpose(purpose_name)
            except UnknownName as exc:
                raise RowError(line, "purpose", _said(exc)) from None
            self.purposes[purpose_name] = purpose
        categories = self._categories(fields.get("categories"), line)
        try:
            moment = parse_time(captured, field="captured_at")
        except InvalidInput as exc:
            raise RowError(line, "captured_at", _said(exc)) from None
        if moment < EPOCH:
            raise RowError(line, "captured_at", "before 1970")
        captured_us = to_us(moment)
        if captured_us > self.now_us:
            raise RowError(
                line, "captured_at", f"{captured} is in the future (now is {_fmt(self.now_us)})"
            )
        return _Row(
            line=line,
            subject=subject,
            purpose=purpose,
            categories=categories,
            kind=kind,
            captured_at=format_time(moment),
            captured_us=captured_us,
            method=text(fields, "method", line, required=False) or "import",
            notice_version=text(fields, "notice_version", line, required=False),
            language=text(fields, "language", line, required=False),
            source_id=source_id,
        )

    def _categories(self, value: Any, line: int) -> tuple[str, ...]:
        key = value if isinstance(value, str) else None
        if key is not None:
            found = self.categories.get(key)
            if found is not None:
                return found
            names = [c.strip() for c in key.replace("|", ";").split(";")]
        elif isinstance(value, list) and all(isinstance(c, str) for c in value):
            names = [c.strip() for c in value]
        else:
            raise RowError(line, "categories", "expected a list of categories (a;b in CSV)")
        names = [n for n in names if n]
        if not names:
            raise RowError(line, "categories", "missing: a consent names at least one category")
        out = []
        for name in names:
            try:
                out.append(self.taxonomy.category(name))
            except UnknownName as exc:
                raise RowError(line, "categories", _said(exc)) from None
        cats = tuple(sorted(set(out)))
        if key is not None:
            self.categories[key] = cats
        return cats


def _said(error: InvalidInput) -> str:
    return f"{error.message} ({error.hint})" if error.hint else error.message


def _fmt(us: int) -> str:
    from .times import from_us

    return format_time(from_us(us))


def read_rows(
    store: Store, text: str, fmt: str, now_us: int
) -> tuple[list[_Row], list[RowError], int]:
    """Every row of the file, checked; every error (rows in error are left out); and how
    many rows the file has."""
    errors: list[RowError] = []
    rows: list[_Row] = []
    checker = _Checker(store, now_us)
    lines_of: dict[str, int] = {}
    seen = 0
    for line, fields in _records(text, fmt, errors):
        seen += 1
        if len(errors) >= MAX_ERRORS:
            continue  # (counted, not checked: the file is refused anyway)
        try:
            row = checker.row(line, fields)
        except RowError as exc:
            errors.append(exc)
            continue
        first = lines_of.setdefault(row.source_id, line)
        if first != line:
            errors.append(RowError(line, "source_id", f"repeats line {first}'s source_id"))
            continue
        rows.append(row)
    unreadable = {e.line for e in errors if e.field == "*"}  # rows _records could not read
    return rows, errors, seen + len(unreadable)


def import_consents(
    store: Store,
    path: str | Path,
    *,
    fmt: str | None = None,
    source: str | None = None,
    actor: str = "import",
    batch_size: int = DEFAULT_BATCH,
    dry_run: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """Import a CSV or JSON Lines file of consents (see the module's docstring).

    ``source`` names the system the consents come from (kept in each event's payload as
    ``imported_from``); ``dry_run`` checks everything and writes nothing; ``progress`` is
    called with ``(rows done, rows in all)`` after each batch.

    Raises :class:`ImportRefused` (listing every row error) when any row is in error.
    """
    # The cyclic collector off while the rows are read and written: an import makes a few
    # long-lived objects per row (none in a cycle), and collections walking them took a
    # fifth of the time (as the state audit found; audit._no_gc).
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _import(store, path, fmt, source, actor, batch_size, dry_run, progress)
    finally:
        if enabled:
            gc.enable()


def _import(
    store: Store,
    path: str | Path,
    fmt: str | None = None,
    source: str | None = None,
    actor: str = "import",
    batch_size: int = DEFAULT_BATCH,
    dry_run: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> ImportReport:
    file = Path(path)
    kind = detect_format(file, fmt)
    if batch_size < 1:
        raise InvalidInput("batch_size must be at least 1", field="batch_size")
    try:
        text = file.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InvalidInput(f"{file}: no such file", field="file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read {file}: {exc}", hint="pass a UTF-8 file") from None
    if source is not None and (not source.strip() or len(source) > 100 or text_problem(source)):
        raise InvalidInput("source: expected a short name such as onetrust", field="source")
    if not actor.strip() or len(actor) > 512 or text_problem(actor):
        raise InvalidInput(
            "actor: expected a non-empty name of at most 512 characters", field="actor"
        )
    store._require_init()
    now_us = to_us(store.clock())
    rows, errors, seen = read_rows(store, text, kind, now_us)
    report = ImportReport(str(file), kind, rows=seen, dry_run=dry_run)
    known = _already_imported(store, rows, errors)
    if errors:
        errors.sort(key=lambda e: e.line)
        raise ImportRefused(str(file), errors, report.rows)
    report.rows = len(rows)
    todo = [r for r in rows if KEY_PREFIX + r.source_id not in known]
    report.already_lines = [
        (r.line, known[KEY_PREFIX + r.source_id]) for r in rows if KEY_PREFIX + r.source_id in known
    ]
    report.already = len(report.already_lines)
    policy = store._notice_policy()
    drafts = _drafts(store, todo, policy.version, policy.language, source, actor)
    report.superseded = sum(1 for d in drafts if SUPERSEDED in d.payload)
    report.pending = len(drafts)
    if dry_run:
        return report
    done = report.already
    if progress is not None:
        progress(done, report.rows)
    for start in range(0, len(drafts), batch_size):
        head = store.ledger.head()[0]
        # (Every text field was checked as its row was read: the actor and source above.)
        events = store.append(drafts[start : start + batch_size], text_checked=True)
        # (A row another import recorded meanwhile comes back as its first event.)
        new = [e for e in events if e.seq > head]
        report.recorded += len(new)
        report.already += len(events) - len(new)
        if new:
            report.first_seq = report.first_seq or new[0].seq
            report.last_seq = new[-1].seq
        done += len(events)
        if progress is not None:
            progress(done, report.rows)
    return report


def _already_imported(store: Store, rows: Sequence[_Row], errors: list[RowError]) -> dict[str, str]:
    """Key -> event id of the rows imported before; a key reused for a different choice is
    an error of its row."""
    from .canonical import sha256_hex

    e = schema.events.c
    by_key = {KEY_PREFIX + r.source_id: r for r in rows}
    keys = list(by_key)
    known: dict[str, str] = {}
    with store.ledger.engine.connect() as conn:
        for start in range(0, len(keys), 5_000):
            chunk = keys[start : start + 5_000]
            found = conn.execute(
                select(e.idempotency_key, e.request_hash, e.id).where(e.idempotency_key.in_(chunk))
            ).all()
            for key, request_hash, event_id in found:
                row = by_key[key]
                if request_hash != sha256_hex(row.asked_json()):
                    errors.append(
                        RowError(
                            row.line,
                            "source_id",
                            f"{row.source_id!r} was imported before (event {event_id}) with "
                            "different content: a source id names one choice",
                        )
                    )
                else:
                    known[key] = event_id
    return known


def _drafts(
    store: Store,
    rows: Sequence[_Row],
    policy_version: str,
    language: str,
    source: str | None,
    actor: str,
) -> list[Draft]:
    """One draft per row, with the categories a newer choice supersedes (read from the
    current state, and from the rows before it in the file)."""
    latest: dict[tuple[str, str, str], int] = {}
    drafts = []
    with store.lock:
        state = store.state()
        pairs = state.pairs
        for row in rows:
            superseded = []
            records = state.own_consents(row.subject)
            for category in row.categories:
                key = (row.subject, row.purpose, category)
                newest = latest.get(key)
                if newest is None and records:
                    pid = pairs.get((row.purpose, category))
                    value = records.get(pid) if pid is not None else None
                    if value is not None:
                        newest = value >> AT_SHIFT
                if newest is not None and newest > row.captured_us:
                    superseded.append(category)
                else:
                    latest[key] = row.captured_us
            payload: dict[str, Any] = {CAPTURED_AT: row.captured_at}
            if source is not None:
                payload["imported_from"] = source
            if superseded:
                payload[SUPERSEDED] = superseded
            drafts.append(
                make_draft(
                    kind=row.kind,
                    actor=actor,
                    subject=row.subject,
                    purpose=row.purpose,
                    categories=row.categories,
                    policy_version=policy_version,
                    notice_version=row.notice_version,
                    language=row.language or language,
                    method=row.method,
                    payload=payload,
                    idempotency_key=KEY_PREFIX + row.source_id,
                    asked=row.asked_json(),
                )
            )
    return drafts
