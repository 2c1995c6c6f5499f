"""Credentials: HS256, EdDSA and RS256 tokens; API keys created, listed and revoked."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import jwt
import pytest
from api_support import MEETINGS, Api, bearer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from consentry.api import Settings, create_app
from consentry.api.keys import ApiKeys
from consentry.cli import app as cli
from consentry.errors import InvalidInput, NotFound


def _public_pem(key: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.mark.parametrize("alg", ["EdDSA", "RS256"])
def test_asymmetric_tokens(api: Api, alg: str, tmp_path: Path) -> None:
    private = (
        ed25519.Ed25519PrivateKey.generate()
        if alg == "EdDSA"
        else rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    pem_file = tmp_path / "jwt.pub"
    pem_file.write_text(_public_pem(private))
    settings = Settings.from_env(
        {"CONSENTRY_DATABASE_URL": api.store.url, "CONSENTRY_JWT_PUBLIC_KEY_FILE": str(pem_file)}
    )
    client = TestClient(create_app(settings, store=api.store))
    claims = {"sub": "bob", "role": "subject", "aud": "consentry", "exp": time.time() + 60}
    good = jwt.encode(claims, private, algorithm=alg)
    assert client.get("/v1/subjects/bob", headers=bearer(good)).status_code == 200
    # An HS256 token is refused when only a public key is configured.
    hs = jwt.encode(claims, "x" * 32, algorithm="HS256")
    r = client.get("/v1/subjects/bob", headers=bearer(hs))
    assert r.status_code == 401 and "'HS256' are not accepted" in r.json()["detail"]
    client.close()


def test_issuer_is_checked_when_configured(make_api: Callable[..., Api]) -> None:
    api = make_api(jwt_issuer="https://platform.example")
    assert api.client.get("/v1/policies", headers=api.bob).status_code == 401
    from api_support import sign

    token = sign("bob", "subject", iss="https://platform.example")
    assert api.client.get("/v1/policies", headers=bearer(token)).status_code == 200


def test_key_lifecycle(api: Api) -> None:
    keys = ApiKeys(api.store)
    new = keys.create("billing", "service", created_by="ops")
    assert new.secret.startswith(f"csk_{new.key.id}_")
    assert new.secret not in json.dumps([k.to_dict() for k in keys.list()])
    headers = bearer(new.secret)
    body = {"subject": "bob", "purpose": "ai.training", "category": "content"}
    assert api.client.post("/v1/decisions", json=body, headers=headers).status_code == 200
    # The app's own key cache sees a revocation made through it at once; here the revocation
    # is made through another ApiKeys, so the app notices within its cache time.
    service = api.client.app.state.service  # type: ignore[attr-defined]
    service.keys.revoke(new.key.id)
    r = api.client.post("/v1/decisions", json=body, headers=headers)
    assert r.status_code == 401 and "revoked" in r.json()["detail"]
    assert keys.get(new.key.id).revoked_at is not None
    assert [k.id for k in keys.list(include_revoked=False)].count(new.key.id) == 0
    tampered = new.secret[:-2] + ("AA" if not new.secret.endswith("AA") else "BB")
    assert api.client.get("/v1/policies", headers=bearer(tampered)).status_code == 401


def test_other_workers_notice_a_revocation_within_the_cache_time(
    make_api: Callable[..., Api],
) -> None:
    api = make_api(api_key_cache_s=0.2)
    new = ApiKeys(api.store).create("short-lived", "service")
    assert api.client.get("/v1/policies", headers=bearer(new.secret)).status_code == 200
    ApiKeys(api.store).revoke(new.key.id)  # another process
    time.sleep(0.3)
    assert api.client.get("/v1/policies", headers=bearer(new.secret)).status_code == 401


def test_account_admin_keys(api: Api) -> None:
    new = ApiKeys(api.store).create("acme-sso", "account_admin", account="acme")
    r = api.client.get("/v1/accounts/acme", headers=bearer(new.secret))
    assert r.status_code == 200
    with pytest.raises(InvalidInput, match="names its account"):
        ApiKeys(api.store).create("x", "account_admin")
    with pytest.raises(InvalidInput, match="cannot hold an API key"):
        ApiKeys(api.store).create("x", "subject")
    with pytest.raises(NotFound):
        ApiKeys(api.store).revoke("nope")


def test_keys_cli(tmp_path: Path) -> None:
    runner = CliRunner()
    db = f"sqlite:///{tmp_path}/cli.db"
    # No store there yet: refused, and none is made (a key in a new store would be useless).
    r = runner.invoke(cli, ["--db", db, "keys", "create", "--name", "ml", "--role", "service"])
    assert r.exit_code == 2 and "there is no store" in r.output
    assert not (tmp_path / "cli.db").exists()
    assert runner.invoke(cli, ["--db", db, "init", "--policy", str(MEETINGS)]).exit_code == 0
    r = runner.invoke(
        cli, ["--db", db, "keys", "create", "--name", "ml", "--role", "service", "--json"]
    )
    assert r.exit_code == 0, r.output
    created = json.loads(r.output)
    assert created["key"].startswith("csk_") and created["role"] == "service"
    listed = json.loads(runner.invoke(cli, ["--db", db, "keys", "list", "--json"]).output)
    assert [k["id"] for k in listed] == [created["id"]]
    assert "key" not in listed[0]
    r = runner.invoke(cli, ["--db", db, "keys", "revoke", created["id"]])
    assert r.exit_code == 0 and "revoked" in r.output
    assert json.loads(runner.invoke(cli, ["--db", db, "keys", "list", "--json"]).output) == []
    all_keys = runner.invoke(cli, ["--db", db, "keys", "list", "--all", "--json"]).output
    assert json.loads(all_keys)[0]["revoked_at"]
    r = runner.invoke(cli, ["--db", db, "keys", "create", "--name", "x", "--role", "subject"])
    assert r.exit_code == 2 and "cannot hold an API key" in r.output
    r = runner.invoke(cli, ["serve", "--help"])
    assert r.exit_code == 0 and "--workers" in r.output


def test_settings_from_env_round_trip() -> None:
    settings = Settings(
        database_url="sqlite:///x.db",
        jwt_secret="s",
        jwt_issuer="iss",
        cookie_secure=True,
        decision_max_staleness_ms=5,
        api_key_cache_s=1.5,
        data_dir="/data",
    )
    assert Settings.from_env(settings.to_env()) == settings
    named = settings.with_(session_cookie="consentry_meetings_session")
    assert Settings.from_env(named.to_env()) == named
    with pytest.raises(InvalidInput, match="CONSENTRY_COOKIE_SECURE"):
        Settings.from_env({"CONSENTRY_COOKIE_SECURE": "perhaps"})


def test_token_cli_signs_what_the_service_accepts(api: Api) -> None:
    from api_support import SECRET

    runner = CliRunner()
    r = runner.invoke(
        cli,
        ["token", "alice", "--role", "account_admin", "--account", "acme"],
        env={"CONSENTRY_JWT_SECRET": SECRET},
    )
    assert r.exit_code == 0, r.output
    assert api.client.get("/v1/accounts/acme", headers=bearer(r.output.strip())).status_code == 200
    r = runner.invoke(cli, ["token", "bob", "--role", "wizard"], env={"CONSENTRY_JWT_SECRET": "s"})
    assert r.exit_code == 2 and "role 'wizard'" in r.output
