"""Shared test support for the API and web tests: a store with people, an app, credentials."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient

from consentry import Store
from consentry.api import Settings, create_app
from consentry.api.keys import ApiKeys
from support import sqlite_store_url

ROOT = Path(__file__).resolve().parents[2]
MEETINGS = ROOT / "policies" / "meetings.yaml"
MUSIC = ROOT / "policies" / "music.yaml"
SECRET = "test-secret-" + "x" * 32

# The people of the test store: an organisation `acme` (alice administers it; bob and carol
# are members), another organisation `globex` (zed administers it) and a solo user erin.
ACME = ("alice", "bob", "carol")


def sign(
    sub: str,
    role: str,
    account: str | None = None,
    *,
    secret: str = SECRET,
    exp: float | None = None,
    aud: str = "consentry",
    **extra: Any,
) -> str:
    claims: dict[str, Any] = {
        "sub": sub,
        "role": role,
        "aud": aud,
        "exp": int(exp if exp is not None else time.time() + 600),
    }
    if account is not None:
        claims["account"] = account
    claims.update(extra)
    return jwt.encode(claims, secret, algorithm="HS256")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Api:
    store: Store
    client: TestClient
    settings: Settings
    service_key: str
    admin_key: str

    def as_(self, sub: str, role: str = "subject", account: str | None = None) -> dict[str, str]:
        return bearer(sign(sub, role, account))

    @property
    def service(self) -> dict[str, str]:
        return bearer(self.service_key)

    @property
    def platform(self) -> dict[str, str]:
        return bearer(self.admin_key)

    @property
    def bob(self) -> dict[str, str]:
        return self.as_("bob")

    @property
    def alice(self) -> dict[str, str]:
        return self.as_("alice", "account_admin", "acme")


def populate(store: Store) -> None:
    for person in ACME:
        store.add_member(person, "acme")
    store.add_member("zed", "globex")


@pytest.fixture
def make_api(tmp_path: Path, clock: Any, migrated_sqlite: Path) -> Iterator[Callable[..., Api]]:
    made: list[Api] = []

    def make(
        url: str | None = None,
        *,
        populate_store: bool = True,
        policy: Path = MEETINGS,
        **settings: Any,
    ) -> Api:
        url = url or sqlite_store_url(migrated_sqlite, tmp_path / f"api{len(made)}.db")
        store = Store(url, clock=clock)
        store.init(policies=[policy])
        if populate_store:
            populate(store)
        keys = ApiKeys(store)
        service_key = keys.create("pipeline", "service").secret
        admin_key = keys.create("ops", "platform_admin").secret
        config = Settings(**({"database_url": store.url, "jwt_secret": SECRET} | settings))
        client = TestClient(create_app(config, store=store), raise_server_exceptions=False)
        api = Api(store, client, config, service_key, admin_key)
        made.append(api)
        return api

    yield make
    for api in made:
        api.client.close()
        api.store.close()


@pytest.fixture
def api(make_api: Callable[..., Api]) -> Api:
    return make_api()
