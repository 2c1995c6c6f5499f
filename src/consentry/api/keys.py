"""API keys for platform backends: created once, shown once, stored as a SHA-256 hash.

A key looks like ``csk_3f9a0c6e1b2d_<43 random characters>``: the middle part is the key's
public id (it names the key in ``consentry keys list`` and ``revoke``), the whole string is
the secret. Keys carry 256 random bits, so a plain SHA-256 is the right hash: there is
nothing to brute-force, and checking a key costs a microsecond, not a bcrypt round.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidInput, NotFound
from ..store import Store
from ..times import format_time

PREFIX = "csk_"
#: Roles a key may carry. Subjects are people: they sign in with tokens, never with keys.
KEY_ROLES = ("service", "platform_admin", "account_admin")


@dataclass(frozen=True)
class ApiKey:
    """A key as stored: everything but the secret."""

    id: str
    name: str
    role: str
    account: str | None
    created_at: str
    created_by: str | None
    revoked_at: str | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "role": self.role,
            "account": self.account,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "revoked_at": self.revoked_at,
            "active": self.active,
        }


@dataclass(frozen=True)
class NewKey:
    """A key just created; ``secret`` is shown this once and never stored."""

    key: ApiKey
    secret: str


def looks_like_key(token: str) -> bool:
    return token.startswith(PREFIX)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _key_id(secret: str) -> str | None:
    if not secret.startswith(PREFIX):
        return None
    key_id, _, rest = secret[len(PREFIX) :].partition("_")
    if not key_id or not rest or len(key_id) > 32:
        return None
    return key_id


class ApiKeys:
    """Create, list, revoke and check the API keys of a store."""

    def __init__(self, store: Store, *, cache_s: float = 2.0) -> None:
        self.store = store
        self.table = store.api_key_table()
        self.cache_s = cache_s
        self._cache: dict[str, tuple[str, ApiKey] | None] = {}
        self._cache_at: dict[str, float] = {}
        self._lock = threading.Lock()

    def create(
        self,
        name: str,
        role: str,
        *,
        account: str | None = None,
        created_by: str | None = None,
    ) -> NewKey:
        """A new key; its secret is returned once and only its hash is stored."""
        if not name or not name.strip():
            raise InvalidInput(
                "a key needs a name", hint="e.g. --name billing-backend", field="name"
            )
        if role not in KEY_ROLES:
            raise InvalidInput(
                f"role {role!r} cannot hold an API key; use one of {', '.join(KEY_ROLES)}",
                hint="subjects sign in with tokens the platform issues, not with keys",
                field="role",
            )
        if role == "account_admin" and not account:
            raise InvalidInput(
                "an account_admin key names its account",
                hint="add --account ACCOUNT",
                field="account",
            )
        if role != "account_admin" and account:
            raise InvalidInput(
                f"only account_admin keys belong to an account, not {role} keys", field="account"
            )
        key_id = secrets.token_hex(6)
        secret = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        key = ApiKey(
            id=key_id,
            name=name.strip(),
            role=role,
            account=account,
            created_at=format_time(self.store.clock()),
            created_by=created_by,
            revoked_at=None,
        )
        self.table.insert(
            id=key.id,
            name=key.name,
            role=key.role,
            account=key.account,
            secret_hash=_hash(secret),
            created_at=key.created_at,
            created_by=key.created_by,
        )
        return NewKey(key, secret)

    def list(self, *, include_revoked: bool = True) -> list[ApiKey]:
        """Every key, oldest first."""
        return [_row_key(r) for r in self.table.rows(include_revoked=include_revoked)]

    def get(self, key_id: str) -> ApiKey:
        row = self.table.row(key_id)
        if row is None:
            raise NotFound(f"no API key {key_id!r}", hint="list keys with `consentry keys list`")
        return _row_key(row)

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key (by its id or the whole secret); revoking twice is harmless."""
        key_id = _key_id(key_id) or key_id
        current = self.get(key_id)
        if current.revoked_at is None:
            self.table.revoke(key_id, format_time(self.store.clock()))
        with self._lock:
            self._cache.pop(key_id, None)
        return self.get(key_id)

    def authenticate(self, secret: str) -> ApiKey | None:
        """The active key whose secret this is, else ``None`` (cached for ``cache_s``)."""
        key_id = _key_id(secret)
        if key_id is None:
            return None
        now = time.monotonic()
        cached = self._cache.get(key_id)
        if key_id not in self._cache or now - self._cache_at.get(key_id, 0.0) > self.cache_s:
            cached = self._load(key_id)
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                    self._cache_at.clear()
                self._cache[key_id] = cached
                self._cache_at[key_id] = now
        if cached is None:
            return None
        digest, key = cached
        if not hmac.compare_digest(digest, _hash(secret)):
            return None
        return key if key.active else None

    def _load(self, key_id: str) -> tuple[str, ApiKey] | None:
        row = self.table.row(key_id, missing_table_ok=True)  # no table: no keys
        if row is None:
            return None
        return row.secret_hash, _row_key(row)


def _row_key(row: Any) -> ApiKey:
    return ApiKey(
        id=row.id,
        name=row.name,
        role=row.role,
        account=row.account,
        created_at=row.created_at,
        created_by=row.created_by,
        revoked_at=row.revoked_at,
    )
