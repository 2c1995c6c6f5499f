"""Notice-served evidence in the ledger: which notice a person was shown before a consent.

A ``notice.served`` event records that a notice version was shown to a subject in a language
(the ``/me`` page shows it, or the platform says it showed it). A consent names the last such
event for its subject, notice version and language in its payload (``notice_served``), so
that the chain itself says the notice came first (the ANCR draft's level B trace: controller
identification, notice, authorisation, enforcement). These queries find that event, and the
consents that followed no notice.
"""

from __future__ import annotations

from sqlalchemy import and_, bindparam, exists, select
from sqlalchemy.engine import Engine

from . import schema
from .events import CONSENT_KINDS, Event, Kind
from .store import _from_row

_SERVED = str(Kind.NOTICE_SERVED)
_CONSENTS = [str(k) for k in CONSENT_KINDS]


_e = schema.events.c
#: The lookup a consent makes on every write: built once, with bound parameters (SQLAlchemy
#: caches its compiled form), reading only the id.
_LAST_SERVED_ID = (
    select(_e.id)
    .where(
        _e.subject == bindparam("subject"),
        _e.kind == _SERVED,
        _e.notice_version == bindparam("version"),
        _e.language == bindparam("language"),
    )
    .order_by(_e.seq.desc())
    .limit(1)
)


def last_served_id(
    engine: Engine, subject: str, notice_version: str | None, language: str | None
) -> str | None:
    """The id of the latest ``notice.served`` event for (subject, notice version, language):
    what a consent names (the write path's lookup, kept small)."""
    with engine.connect() as conn:
        found = conn.execute(
            _LAST_SERVED_ID,
            {"subject": subject, "version": notice_version, "language": language},
        ).scalar()
    return None if found is None else str(found)


def last_served(
    engine: Engine,
    subject: str,
    notice_version: str | None,
    language: str | None,
    *,
    before_seq: int | None = None,
) -> Event | None:
    """The latest ``notice.served`` event for (subject, notice version, language), before
    ``before_seq`` when given (a lookup on the subject index)."""
    e = schema.events.c
    query = (
        select(schema.events)
        .where(
            e.subject == subject,
            e.kind == _SERVED,
            e.notice_version == notice_version,
            e.language == language,
        )
        .order_by(e.seq.desc())
        .limit(1)
    )
    if before_seq is not None:
        query = query.where(e.seq < before_seq)
    with engine.connect() as conn:
        row = conn.execute(query).first()
    return None if row is None else _from_row(row._mapping)


def consents_without_notice(engine: Engine, *, limit: int | None = None) -> list[Event]:
    """Consent events (given, refused, withdrawn) with no earlier ``notice.served`` event for
    their subject, notice version and language, oldest first. Events whose subject was erased
    are left out: nothing can be said of them any more."""
    consent = schema.events.alias("c")
    served = schema.events.alias("n")
    c, n = consent.c, served.c
    shown = exists().where(
        and_(
            n.subject == c.subject,
            n.kind == _SERVED,
            n.notice_version == c.notice_version,
            n.language == c.language,
            n.seq < c.seq,
        )
    )
    query = (
        select(consent).where(c.kind.in_(_CONSENTS), c.subject.is_not(None), ~shown).order_by(c.seq)
    )
    if limit is not None:
        query = query.limit(limit)
    with engine.connect() as conn:
        return [_from_row(row._mapping) for row in conn.execute(query)]


__all__ = ["consents_without_notice", "last_served", "last_served_id"]
