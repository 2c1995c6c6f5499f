"""Typed errors. Each says what was wrong and how to fix it.

Every error carries a stable ``code`` (used as the problem ``type`` at the HTTP edge), a
human ``message`` and an optional ``hint``. The HTTP layer maps them to RFC 9457 problem
details with :attr:`ConsentryError.status`; the CLI prints message and hint, never a trace.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any


class ConsentryError(Exception):
    """Base class of every error consentry raises on purpose."""

    code = "error"
    status = 400
    title = "Request failed"

    def __init__(self, message: str, *, hint: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message

    def to_problem(self) -> dict[str, Any]:
        """RFC 9457 problem details for this error."""
        problem: dict[str, Any] = {
            "type": f"https://consentry.dev/problems/{self.code}",
            "title": self.title,
            "status": self.status,
            "detail": self.message,
        }
        if self.hint:
            problem["hint"] = self.hint
        problem.update({k: v for k, v in self.details.items() if v is not None})
        return problem


class InvalidInput(ConsentryError):
    """Input that cannot be used as given (a bad value, a missing field)."""

    code = "invalid-input"
    status = 422
    title = "Invalid input"


class UnknownName(InvalidInput):
    """A purpose, category, label, rule or key that is not known."""

    code = "unknown-name"
    title = "Unknown name"


class PolicyError(InvalidInput):
    """A policy document that does not validate."""

    code = "invalid-policy"
    title = "Invalid policy"


class PolicyConflict(ConsentryError):
    """Publishing would change something that is immutable."""

    code = "policy-conflict"
    status = 409
    title = "Policy conflict"


class NotFound(ConsentryError):
    code = "not-found"
    status = 404
    title = "Not found"


class NotInitialised(ConsentryError):
    code = "not-initialised"
    status = 503
    title = "Store not initialised"


class StoreUnavailable(ConsentryError):
    """The database could not be read or written: locked by another writer, a server that
    does not answer, a file that is not a consentry database. Often worth a retry."""

    code = "store-unavailable"
    status = 503
    title = "Store unavailable"


class IdempotencyConflict(ConsentryError):
    """An idempotency key reused for a different request."""

    code = "idempotency-conflict"
    status = 409
    title = "Idempotency key reused"


class Conflict(ConsentryError):
    """A change that does not fit the current state (e.g. inviting a member)."""

    code = "conflict"
    status = 409
    title = "Conflict"


class LedgerCorrupt(ConsentryError):
    code = "ledger-corrupt"
    status = 500
    title = "Ledger verification failed"


class SignatureInvalid(ConsentryError):
    code = "signature-invalid"
    status = 422
    title = "Signature does not verify"


class Forbidden(ConsentryError):
    code = "forbidden"
    status = 403
    title = "Forbidden"


class Unauthorized(ConsentryError):
    code = "unauthorized"
    status = 401
    title = "Unauthorized"


class TokenExpired(Unauthorized):
    """A bearer token (or a sign-in link's token) that was valid and has expired: the same
    problem as any :class:`Unauthorized` to an API client, told apart on the sign-in page
    ("this link has expired", rather than "is not valid")."""


def suggest(name: str, known: Iterable[str]) -> str | None:
    """The nearest known name to ``name``, for "did you mean" hints."""
    matches = difflib.get_close_matches(name, list(known), n=1, cutoff=0.5)
    return matches[0] if matches else None


def unknown(kind: str, name: str, known: Iterable[str], *, where: str = "") -> UnknownName:
    """An :class:`UnknownName` that names the thing and suggests the nearest known one."""
    known = sorted(set(known))
    near = suggest(name, known)
    place = f" in {where}" if where else ""
    hint = f"did you mean {near!r}?" if near else f"known {kind}s: {', '.join(known[:20])}"
    return UnknownName(f"unknown {kind} {name!r}{place}", hint=hint, field=kind, value=name)


class AsOfOutOfRange(InvalidInput):
    """A replay time no decision can be made at: in the future (the ledger can still change
    before then), or before any policy version took effect (nothing was decided then)."""

    code = "as-of-out-of-range"
    title = "Time out of range"


class ObjectionIgnored(InvalidInput):
    """An objection the policy in effect would ignore: no rule it could stop lets people
    object (``objection: false``, or a basis other than legitimate interest)."""

    code = "objection-ignored"
    title = "Objection has no effect"
