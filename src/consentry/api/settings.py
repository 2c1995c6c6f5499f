"""Settings of the HTTP service, from the environment (``CONSENTRY_*``) or given directly.

Every worker process of ``consentry serve --workers N`` builds its settings from the same
environment, so one set of variables configures the whole service::

    CONSENTRY_DATABASE_URL=postgresql://consentry@db/consentry
    CONSENTRY_JWT_SECRET=...                 # HS256, or:
    CONSENTRY_JWT_PUBLIC_KEY_FILE=jwt.pub    # an Ed25519 (EdDSA) or RSA (RS256) public key
    CONSENTRY_JWT_AUDIENCE=consentry
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import InvalidInput
from ..store import database_url

LANGUAGES = ("en", "id", "fr")

#: A cookie name (RFC 6265's token), kept to the characters no browser or proxy trips on.
_COOKIE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _bool(value: str, name: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise InvalidInput(f"{name}: expected true or false, got {value!r}", field=name)


def _int(value: str, name: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise InvalidInput(f"{name}: expected a whole number, got {value!r}", field=name) from None


def _text(value: str, name: str) -> str:
    return value


def _seconds(value: str, name: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise InvalidInput(f"{name}: expected seconds, got {value!r}", field=name) from None


def _languages(value: str, name: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in value.split(",") if x.strip())


def _url(value: str, name: str) -> str:
    return value.rstrip("/")


def _key_file(value: str, name: str) -> str:
    try:
        return Path(value).read_text(encoding="ascii")
    except OSError as exc:
        raise InvalidInput(
            f"{name}: cannot read {value}: {exc.strerror}",
            hint="point it at a PEM public key file",
        ) from None


#: ``CONSENTRY_<name>`` -> the setting, and how its text is read (a later row for the same
#: setting wins: a key file over a key given inline).
_FROM_ENV: tuple[tuple[str, str, Callable[[str, str], Any]], ...] = (
    ("DATABASE_URL", "database_url", _text),
    ("JWT_SECRET", "jwt_secret", _text),
    ("JWT_PUBLIC_KEY", "jwt_public_key", _text),
    ("JWT_PUBLIC_KEY_FILE", "jwt_public_key", _key_file),
    ("JWT_AUDIENCE", "jwt_audience", _text),
    ("JWT_ISSUER", "jwt_issuer", _text),
    ("JWT_LEEWAY_S", "jwt_leeway_s", _int),
    ("SESSION_MAX_AGE_S", "session_max_age_s", _int),
    ("SESSION_COOKIE", "session_cookie", _text),
    ("COOKIE_SECURE", "cookie_secure", _bool),
    ("DECISION_MAX_STALENESS_MS", "decision_max_staleness_ms", _int),
    ("BATCH_MAX_ITEMS", "batch_max_items", _int),
    ("API_KEY_CACHE_S", "api_key_cache_s", _seconds),
    ("LANGUAGES", "languages", _languages),
    ("DATA_DIR", "data_dir", _text),
    ("PUBLIC_URL", "public_url", _url),
    ("CHECKPOINT_EVERY_EVENTS", "checkpoint_every_events", _int),
    ("CHECKPOINT_INTERVAL_S", "checkpoint_interval_s", _int),
)


@dataclass(frozen=True)
class Settings:
    """How the service runs. ``Settings.from_env()`` reads ``CONSENTRY_*`` variables."""

    #: The store: ``sqlite:///consentry.db`` (default) or ``postgresql://user@host/db``.
    database_url: str = field(default_factory=lambda: database_url())
    #: HS256 shared secret for the bearer JWTs the platform signs for its users.
    jwt_secret: str | None = None
    #: PEM public key (Ed25519 → EdDSA, RSA → RS256) for platforms that sign asymmetrically.
    jwt_public_key: str | None = None
    #: The ``aud`` claim tokens must carry.
    jwt_audience: str = "consentry"
    #: The ``iss`` claim tokens must carry (not checked when unset).
    jwt_issuer: str | None = None
    #: Clock skew tolerated on ``exp``/``nbf``, in seconds.
    jwt_leeway_s: int = 30
    #: How long a preference-centre session lasts after ``/login?token=…`` (seconds).
    session_max_age_s: int = 8 * 3600
    #: The session cookie's name. ``None``: ``consentry_session_`` and 8 hex digits derived
    #: from the store's session key, so each service (each store) has its own and two on one
    #: host do not sign each other's people out; every worker of a service agrees on it.
    session_cookie: str | None = None
    #: Send the session cookie only over HTTPS. ``None``: when the request came over HTTPS.
    cookie_secure: bool | None = None
    #: Decisions answer from this worker's in-memory snapshot, caught up with the ledger at most
    #: this many milliseconds ago (writes made through this worker are visible at once; a
    #: request can ask for a ledger position with ``min_seq``).
    decision_max_staleness_ms: int = 100
    #: The most items a batch decision request may carry.
    batch_max_items: int = 100_000
    #: How long a worker trusts its cache of API keys (a revocation reaches other workers
    #: within this many seconds; the worker that revoked it stops accepting it at once).
    api_key_cache_s: float = 2.0
    #: Languages of the web pages (each needs a catalog under ``consentry/web/translations``).
    languages: tuple[str, ...] = LANGUAGES
    #: Directory the dataset endpoint may read manifests from and write datasets into; a
    #: manifest path outside it is refused. ``None``: the dataset endpoint is off.
    data_dir: str | None = None
    #: The URL the service is reached at, for links in the API's answers (``None``: from the
    #: request).
    public_url: str | None = None
    #: The service signs a checkpoint of the transparency log once this many events were
    #: appended since the last one (0: never by count) ...
    checkpoint_every_events: int = 1000
    #: ... or once this many seconds passed with new events (0: never by time; both 0: the
    #: service makes checkpoints only when asked).
    checkpoint_interval_s: int = 60

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from ``CONSENTRY_*`` variables; keyword arguments win over them."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, setting, read in _FROM_ENV:
            value = env.get(f"CONSENTRY_{name}")
            if value not in (None, ""):
                values[setting] = read(value, f"CONSENTRY_{name}")
        values.update(overrides)
        return cls(**values)

    def __post_init__(self) -> None:
        if self.session_cookie is not None and not _COOKIE_NAME.fullmatch(self.session_cookie):
            raise InvalidInput(
                f"CONSENTRY_SESSION_COOKIE: {self.session_cookie!r} is not a cookie name",
                hint="use letters, digits, '_' and '-', e.g. consentry_session_meetings; "
                "or leave it unset for a name of the store's own",
                field="CONSENTRY_SESSION_COOKIE",
            )

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    def to_env(self) -> dict[str, str]:
        """The environment that makes ``from_env`` return these settings (for workers)."""
        env: dict[str, str] = {
            "CONSENTRY_DATABASE_URL": self.database_url,
            "CONSENTRY_JWT_AUDIENCE": self.jwt_audience,
            "CONSENTRY_JWT_LEEWAY_S": str(self.jwt_leeway_s),
            "CONSENTRY_SESSION_MAX_AGE_S": str(self.session_max_age_s),
            "CONSENTRY_DECISION_MAX_STALENESS_MS": str(self.decision_max_staleness_ms),
            "CONSENTRY_BATCH_MAX_ITEMS": str(self.batch_max_items),
            "CONSENTRY_API_KEY_CACHE_S": str(self.api_key_cache_s),
            "CONSENTRY_LANGUAGES": ",".join(self.languages),
            "CONSENTRY_CHECKPOINT_EVERY_EVENTS": str(self.checkpoint_every_events),
            "CONSENTRY_CHECKPOINT_INTERVAL_S": str(self.checkpoint_interval_s),
        }
        optional = {
            "CONSENTRY_JWT_SECRET": self.jwt_secret,
            "CONSENTRY_JWT_PUBLIC_KEY": self.jwt_public_key,
            "CONSENTRY_JWT_ISSUER": self.jwt_issuer,
            "CONSENTRY_DATA_DIR": self.data_dir,
            "CONSENTRY_PUBLIC_URL": self.public_url,
            "CONSENTRY_SESSION_COOKIE": self.session_cookie,
        }
        env.update({k: v for k, v in optional.items() if v is not None})
        if self.cookie_secure is not None:
            env["CONSENTRY_COOKIE_SECURE"] = "true" if self.cookie_secure else "false"
        return env
