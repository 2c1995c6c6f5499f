"""The service on PostgreSQL as a least-privilege role (docs/deploying.md): the owner runs the
migrations; the service's role appends and decides, but cannot change or remove events, nor
take the triggers off, nor change the schema."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from api_support import MEETINGS, SECRET, bearer, populate, sign
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from consentry import Store
from consentry.api import Settings, create_app
from consentry.api.keys import ApiKeys
from consentry.ledger.privileges import grants

PG_URL = os.environ.get("CONSENTRY_TEST_POSTGRES_URL")
pytestmark = pytest.mark.skipif(not PG_URL, reason="needs CONSENTRY_TEST_POSTGRES_URL")


@dataclass
class Roles:
    schema: str
    owner: str
    app: str

    def url(self, role: str) -> str:
        assert PG_URL is not None
        base = make_url(PG_URL).set(username=role)
        return (
            base.render_as_string(hide_password=False)
            + ("&" if "?" in PG_URL else "?")
            + f"options=-csearch_path%3D{self.schema}"
        )

    def connect(self, role: str) -> Any:
        import psycopg

        url = make_url(self.url(role)).set(drivername="postgresql")
        return psycopg.connect(url.render_as_string(hide_password=False), autocommit=True)


@pytest.fixture
def roles() -> Iterator[Roles]:
    """An owner role with a schema of its own and a service role; roles are cluster-wide, so
    each test makes uniquely named ones and drops them."""
    import psycopg

    tag = uuid.uuid4().hex[:10]
    made = Roles(f"lp_{tag}", f"consentry_owner_{tag}", f"consentry_app_{tag}")
    assert PG_URL is not None
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {made.owner} LOGIN")
        conn.execute(f"CREATE ROLE {made.app} LOGIN")
        conn.execute(f"CREATE SCHEMA {made.schema} AUTHORIZATION {made.owner}")
    try:
        yield made
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE usename IN (%s, %s) AND pid <> pg_backend_pid()",
                (made.owner, made.app),
            )
            conn.execute(f"DROP SCHEMA {made.schema} CASCADE")
            conn.execute(f"DROP OWNED BY {made.app}")
            conn.execute(f"DROP ROLE {made.app}")
            conn.execute(f"DROP ROLE {made.owner}")


def test_the_service_runs_as_a_role_that_can_only_append(roles: Roles) -> None:
    import psycopg

    # 1. The owner migrates, publishes the policy and grants the service role its part.
    with Store(roles.url(roles.owner)) as owner_store:
        owner_store.init(policies=[MEETINGS])
        populate(owner_store)
    with roles.connect(roles.owner) as conn:
        for statement in grants(roles.app, roles.schema):
            conn.execute(statement)

    # 2. The service, as the restricted role: init finds the schema up to date (no DDL).
    store = Store(roles.url(roles.app))
    try:
        store.init()
        with store.ledger.engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT current_user").scalar() == roles.app
        keys = ApiKeys(store)
        service = bearer(keys.create("pipeline", "service").secret)
        platform = bearer(keys.create("ops", "platform_admin").secret)
        settings = Settings(database_url=store.url, jwt_secret=SECRET)
        with TestClient(create_app(settings, store=store), raise_server_exceptions=False) as c:
            bob = bearer(sign("bob", "subject"))
            alice = bearer(sign("alice", "account_admin", "acme"))
            check = {"subject": "bob", "purpose": "ai.training", "category": "content.audio"}
            give = {"action": "give", "purpose": "ai.training", "categories": ["content"]}
            withdraw = {**give, "action": "withdraw"}

            assert c.post("/v1/decisions", json=check, headers=service).json()["allowed"] is False
            r = c.post("/v1/subjects/bob/consents", json=give, headers=bob)
            assert r.status_code == 201, r.text
            decision = c.post("/v1/decisions", json=check, headers=service).json()
            assert decision["allowed"] is True and decision["reason"] == "consent"
            r = c.post("/v1/subjects/bob/consents", json=withdraw, headers=bob)
            assert r.status_code == 201, r.text
            decision = c.post("/v1/decisions", json=check, headers=service).json()
            assert decision["reason"] == "withdrawn"
            r = c.put(
                "/v1/accounts/acme/settings/improvement", json={"setting": "off"}, headers=alice
            )
            assert r.status_code in (200, 201), r.text
            r = c.delete("/v1/accounts/acme/members/carol", headers=service)
            assert r.status_code in (200, 201, 204), r.text
            verified = c.post("/v1/ledger/verify", headers=platform).json()
            assert verified["ok"] is True and verified["divergences"] == [], verified
    finally:
        store.close()

    # 3. The same role on a plain connection: no changing the ledger, no DDL.
    with roles.connect(roles.app) as conn:
        for statement in (
            "UPDATE events SET status = 'given' WHERE kind = 'consent.withdrawn'",
            "DELETE FROM events WHERE seq > 1",
            "TRUNCATE events",
            "ALTER TABLE events DISABLE TRIGGER USER",
            "DROP TRIGGER events_append_only ON events",
            "CREATE TABLE mine (x int)",
            "UPDATE meta SET value = 'x'",
            "DELETE FROM alembic_version",
        ):
            with pytest.raises(psycopg.Error) as info:
                conn.execute(statement)
            message = str(info.value)
            assert "permission denied" in message or "must be owner" in message, (
                statement,
                message,
            )
    # ... while the owner, whom the triggers stop, could only get past them on purpose.
    with roles.connect(roles.owner) as conn, pytest.raises(psycopg.Error, match="append-only"):
        conn.execute("DELETE FROM events WHERE seq > 1")
    with Store(roles.url(roles.owner)) as check_store:
        assert check_store.verify().ok
