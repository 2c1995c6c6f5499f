"""Server-side web sessions: a row per session, so that a session can be ended at once.

The session cookie carries a random session id (MAC-ed, see :class:`consentry.api.auth.Sessions`);
the ``web_sessions`` table holds the SHA-256 of that id with the person, role and account it
stands for, when it expires and when it was revoked. Every request looks the row up: signing
out (:func:`revoke`) or ``consentry sessions revoke --subject S`` (:func:`revoke_subject`)
ends sessions on the server, whatever copies of the cookie exist.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import and_, delete, insert, select, update

from .ledger import schema
from .times import format_time, utcnow

if TYPE_CHECKING:
    from .store import Store


@dataclass(frozen=True)
class SessionRecord:
    """A session as the store keeps it."""

    subject: str
    role: str
    account: str | None
    created_at: str
    expires_at: int
    revoked_at: str | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None and self.expires_at >= time.time()


def _hash(sid: str) -> str:
    return hashlib.sha256(sid.encode("utf-8")).hexdigest()


def create(
    store: Store, subject: str, role: str, account: str | None, max_age_s: int
) -> tuple[str, int]:
    """Start a session: (the new session id, its expiry in Unix seconds)."""
    sid = secrets.token_urlsafe(24)
    now = time.time()
    expires = int(now) + max_age_s
    t = schema.web_sessions
    with store.ledger.engine.begin() as conn:
        # Expired sessions are of no use to anyone: clear them as new ones start.
        conn.execute(delete(t).where(t.c.expires_at < int(now) - 86400))
        conn.execute(
            insert(t).values(
                sid=_hash(sid),
                subject=subject,
                role=role,
                account=account,
                created_at=format_time(utcnow()),
                expires_at=expires,
                revoked_at=None,
            )
        )
    return sid, expires


def get(store: Store, sid: str) -> SessionRecord | None:
    """The session with this id, active or not (``None``: never issued here)."""
    t = schema.web_sessions
    with store.ledger.engine.connect() as conn:
        row = conn.execute(select(t).where(t.c.sid == _hash(sid))).first()
    if row is None:
        return None
    return SessionRecord(
        row.subject, row.role, row.account, row.created_at, row.expires_at, row.revoked_at
    )


def revoke(store: Store, sid: str) -> bool:
    """End one session (sign-out). False if it was not active."""
    t = schema.web_sessions
    with store.ledger.engine.begin() as conn:
        done = conn.execute(
            update(t)
            .where(and_(t.c.sid == _hash(sid), t.c.revoked_at.is_(None)))
            .values(revoked_at=format_time(utcnow()))
        )
    return bool(done.rowcount)


def revoke_subject(store: Store, subject: str) -> int:
    """End every active session of ``subject``; how many were ended."""
    t = schema.web_sessions
    with store.ledger.engine.begin() as conn:
        done = conn.execute(
            update(t)
            .where(
                and_(
                    t.c.subject == subject,
                    t.c.revoked_at.is_(None),
                    t.c.expires_at >= int(time.time()),
                )
            )
            .values(revoked_at=format_time(utcnow()))
        )
    return int(done.rowcount)
