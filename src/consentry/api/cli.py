"""``consentry serve``, ``consentry token`` and ``consentry keys create|list|revoke``.

Loaded by ``consentry`` only when one of these runs (see :class:`consentry.cli.LazyGroup`).
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ..cli_common import err, fail, open_store, out, root_db, store_at
from ..errors import ConsentryError, InvalidInput, NotInitialised
from ..store import Store, database_url
from .keys import KEY_ROLES, ApiKeys
from .settings import Settings

keys_app = typer.Typer(
    rich_markup_mode=None, help="API keys for the platform's backends.", no_args_is_help=True
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON data instead of text.")]


def _db(ctx: typer.Context) -> str:
    return database_url(root_db(ctx))


@contextmanager
def _open(ctx: typer.Context) -> Iterator[Store]:
    """The command's store; one that does not exist is refused, never created."""
    with open_store(ctx) as store:
        if not store.is_initialised():
            fail(
                NotInitialised(
                    f"{store.url} is not a consentry store yet",
                    hint="create it with `consentry init --policy FILE`, or point --db (or "
                    "CONSENTRY_DATABASE_URL) at an existing store",
                )
            )
        yield store


def _check_port(host: str, port: int) -> None:
    """Refuse (exit 2, like any input error) a port another process listens on, before
    uvicorn starts and fails with exit 1 and a log line."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise InvalidInput(f"cannot listen on {host}: {exc}", hint="pass --host") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            probe.bind(address)
        except OSError as exc:
            raise InvalidInput(
                f"cannot listen on {host}:{port}: {exc.strerror}",
                hint="another server is using that port: stop it, or pass --port",
                field="port",
            ) from None


def default_key_name(role: str) -> str:
    """A name for a key created without ``--name``: its role and a short random suffix."""
    return f"{role}-{secrets.token_hex(3)}"


def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Worker processes (each holds a snapshot).")
    ] = 1,
    policy: Annotated[
        list[Path] | None,
        typer.Option("--policy", help="Publish these policy files before serving."),
    ] = None,
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn log level.")] = "info",
) -> None:
    """Run the HTTP API, the preference centre and the admin console.

    Configuration comes from CONSENTRY_* variables (see docs/deploying.md): the JWT secret or
    public key, the session and freshness settings. The store is brought up to date (schema
    migrations, signing key) once, before the workers start. Without --policy the store must
    exist already (`consentry init`).
    """
    import uvicorn

    try:
        _check_port(host, port)  # first: a busy port is the likeliest mistake
        settings = Settings.from_env(database_url=_db(ctx))
        with store_at(settings.database_url, create=bool(policy)) as store:
            store.init(policies=policy or [])
            for warning in store.key_warnings():
                err.print(f"[yellow]Risk:[/] {warning}", highlight=False)
        if not (settings.jwt_secret or settings.jwt_public_key):
            err.print(
                "[yellow]Note:[/] no CONSENTRY_JWT_SECRET or CONSENTRY_JWT_PUBLIC_KEY_FILE is "
                "set: only API keys authenticate, and nobody can sign in to /me or /admin.",
                highlight=False,
            )
    except ConsentryError as exc:
        fail(exc)
    os.environ.update(settings.to_env())
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Every worker writes its counters here and /metrics adds them up.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="consentry-metrics-")
    out.print(
        f"consentry serving {settings.database_url} on http://{host}:{port} "
        f"({workers} worker{'s' if workers > 1 else ''}); /docs, /me, /admin",
        highlight=False,
    )
    uvicorn.run(
        "consentry.api.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        # Below "info" the access log is filtered out anyway: skip formatting it per request.
        access_log=log_level in ("trace", "debug", "info"),
        proxy_headers=True,
        # uvicorn kills a worker that does not answer its health check within this many
        # seconds (5 by default): on a loaded machine, importing the app alone took 6 s, and
        # every worker was killed and restarted, over and over, before it ever served.
        timeout_worker_healthcheck=60,
    )


@keys_app.command("create")
def keys_create(
    ctx: typer.Context,
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            help="What the key is for, e.g. ml-pipeline (default: the role and a random "
            "suffix, e.g. service-3f9a1c).",
        ),
    ] = None,
    role: Annotated[
        str, typer.Option("--role", help=f"One of {', '.join(KEY_ROLES)}.")
    ] = "service",
    account: Annotated[
        str | None, typer.Option("--account", help="The account of an account_admin key.")
    ] = None,
    created_by: Annotated[str | None, typer.Option("--by", help="Who created it.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an API key. The key is printed once: store it in the backend's secrets."""
    with _open(ctx) as store:
        store.init()  # brings an older store's schema up to date (the key table)
        new = ApiKeys(store).create(
            name or default_key_name(role), role, account=account, created_by=created_by
        )
    if as_json:
        out.print_json(json.dumps(new.key.to_dict() | {"key": new.secret}))
        return
    out.print(f"created {new.key.role} key [bold]{new.key.id}[/] ({new.key.name})")
    out.print("The key (shown once; only its hash is stored):", highlight=False)
    typer.echo(new.secret)


@keys_app.command("list")
def keys_list(
    ctx: typer.Context,
    all_: Annotated[bool, typer.Option("--all", help="Include revoked keys.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """List API keys (never their secrets)."""
    with _open(ctx) as store:
        keys = ApiKeys(store).list(include_revoked=all_)
    if as_json:
        out.print_json(json.dumps([k.to_dict() for k in keys]))
        return
    table = Table("id", "name", "role", "account", "created", "revoked")
    for k in keys:
        table.add_row(k.id, k.name, k.role, k.account or "", k.created_at, k.revoked_at or "")
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(
    ctx: typer.Context,
    key_id: Annotated[str, typer.Argument(metavar="KEY_ID", help="The key's id (or the key).")],
    as_json: JsonOpt = False,
) -> None:
    """Revoke an API key: this worker refuses it at once, every other within seconds."""
    with _open(ctx) as store:
        key = ApiKeys(store).revoke(key_id)
    if as_json:
        out.print_json(json.dumps(key.to_dict()))
        return
    out.print(f"revoked key [bold]{key.id}[/] ({key.name}) at {key.revoked_at}")


def token(
    sub: Annotated[str, typer.Argument(help="The subject (the person's id on the platform).")],
    role: Annotated[
        str, typer.Option("--role", help="subject, account_admin, service or platform_admin.")
    ] = "subject",
    account: Annotated[
        str | None, typer.Option("--account", help="The account of an account_admin.")
    ] = None,
    ttl: Annotated[int, typer.Option("--ttl", min=1, help="Seconds until it expires.")] = 3600,
    secret: Annotated[
        str | None,
        typer.Option("--secret", envvar="CONSENTRY_JWT_SECRET", help="The HS256 secret."),
    ] = None,
    audience: Annotated[
        str, typer.Option("--audience", envvar="CONSENTRY_JWT_AUDIENCE", help="The aud claim.")
    ] = "consentry",
) -> None:
    """Sign a token as the platform would (HS256), for development and tests.

    In production the platform's own backend signs its users' tokens (docs/integrating.md);
    this command signs with CONSENTRY_JWT_SECRET so you can try the API and the pages.
    """
    import time

    import jwt

    from .auth import principal_from_claims

    if not secret:
        fail(ConsentryError("no secret to sign with", hint="set CONSENTRY_JWT_SECRET or --secret"))
    claims: dict[str, object] = {
        "sub": sub,
        "role": role,
        "aud": audience,
        "exp": int(time.time()) + ttl,
    }
    if account:
        claims["account"] = account
    try:
        principal_from_claims(dict(claims))
    except ConsentryError as exc:
        fail(exc)
    typer.echo(jwt.encode(claims, secret, algorithm="HS256"))


#: The commands ``consentry`` loads from here (see consentry.cli.LAZY_COMMANDS).
COMMANDS: dict[str, Any] = {"serve": serve, "token": token, "keys": keys_app}
