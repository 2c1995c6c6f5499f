"""``consentry webhooks add|list|remove|deliveries|replay|prune`` and ``consentry deliver``."""

from __future__ import annotations

import json
import signal
import threading
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ..cli_common import fail as _fail
from ..cli_common import open_store as _store
from ..errors import ConsentryError
from . import subscriptions

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

webhooks_app = typer.Typer(
    help="Webhook subscriptions: every ledger event, signed, to your endpoints.",
    no_args_is_help=True,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON data instead of text.")]


def _print(data: Any) -> None:
    out.print_json(json.dumps(data, default=str))


@webhooks_app.command("add")
def webhooks_add(
    ctx: typer.Context,
    url: Annotated[str, typer.Argument(help="The endpoint: https://… (http:// for testing).")],
    types: Annotated[
        list[str] | None,
        typer.Option(
            "--type",
            help="Only these CloudEvent types (shell patterns, repeatable), e.g. "
            "'consent.*' or org.consentry.member.removed. Default: every type.",
        ),
    ] = None,
    account: Annotated[
        str | None,
        typer.Option("--account", help="Only events of this account."),
    ] = None,
    timeout: Annotated[
        int, typer.Option("--timeout", help="Seconds to wait for the endpoint (1-60).")
    ] = subscriptions.DEFAULT_TIMEOUT_S,
    as_json: JsonOpt = False,
) -> None:
    """Subscribe an endpoint; print its signing secret (shown this once: store it).

    The subscription receives the events recorded from now on, each as a CloudEvent signed
    per Standard Webhooks with the secret; `consentry webhooks replay` sends earlier ones.
    """
    with _store(ctx) as store:
        try:
            sub = subscriptions.create(
                store, url, types=types or [], account=account, timeout_s=timeout,
                created_by="cli",
            )  # fmt: skip
        except ConsentryError as exc:
            _fail(exc)
    if as_json:
        _print(sub.to_dict(secret=True))
        return
    out.print(f"added webhook [bold]{sub.id}[/] → {sub.url}", highlight=False)
    out.print(f"secret (shown once): {sub.secret}", highlight=False)


@webhooks_app.command("list")
def webhooks_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List the subscriptions (never their secrets)."""
    with _store(ctx) as store:
        subs = subscriptions.list_all(store)
    if as_json:
        _print([s.to_dict() for s in subs])
        return
    table = Table("id", "url", "types", "account", "cursor", "created")
    for s in subs:
        table.add_row(
            s.id, s.url, ", ".join(s.types) or "*", s.account or "", str(s.cursor_seq),
            s.created_at,
        )  # fmt: skip
    out.print(table)


@webhooks_app.command("remove")
def webhooks_remove(
    ctx: typer.Context,
    sub_id: Annotated[str, typer.Argument(metavar="ID", help="The subscription's id (wh_…).")],
) -> None:
    """Remove a subscription and its delivery records; nothing more is sent to it."""
    with _store(ctx) as store:
        try:
            subscriptions.remove(store, sub_id)
        except ConsentryError as exc:
            _fail(exc)
    out.print(f"removed webhook {sub_id}", highlight=False)


@webhooks_app.command("deliveries")
def webhooks_deliveries(
    ctx: typer.Context,
    sub_id: Annotated[str, typer.Argument(metavar="ID", help="The subscription's id.")],
    failed: Annotated[
        bool, typer.Option("--failed", help="Only messages that failed for good.")
    ] = False,
    limit: Annotated[int, typer.Option("--limit", help="At most this many, newest first.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """A subscription's latest deliveries: status, attempts, the endpoint's last answer."""
    with _store(ctx) as store:
        try:
            rows = subscriptions.deliveries(store, sub_id, failed=failed, limit=limit)
        except ConsentryError as exc:
            _fail(exc)
    if as_json:
        _print(rows)
        return
    table = Table("seq", "type", "status", "attempts", "last answer", "next attempt")
    for r in rows:
        answer = str(r["last_status"] or "") + (f" {r['last_error']}" if r["last_error"] else "")
        table.add_row(
            str(r["seq"]), r["type"], r["status"], str(r["attempts"]), answer[:80],
            r["next_attempt"] or "",
        )  # fmt: skip
    out.print(table)


@webhooks_app.command("replay")
def webhooks_replay(
    ctx: typer.Context,
    sub_id: Annotated[str, typer.Argument(metavar="ID", help="The subscription's id.")],
    from_seq: Annotated[
        int, typer.Option("--from-seq", min=1, help="Send again every message from this seq.")
    ],
    as_json: JsonOpt = False,
) -> None:
    """Queue every matching message from ``--from-seq`` on again, in order (delivered and
    failed ones too); a running worker sends them."""
    with _store(ctx) as store:
        try:
            result = subscriptions.replay(store, sub_id, from_seq)
        except ConsentryError as exc:
            _fail(exc)
    if as_json:
        _print(result)
        return
    out.print(f"webhook {sub_id}: messages from #{from_seq} on are queued again", highlight=False)


@webhooks_app.command("prune")
def webhooks_prune(
    ctx: typer.Context,
    keep_days: Annotated[
        float | None,
        typer.Option(
            "--keep-days",
            min=0,
            help="Keep delivered records and outbox rows this many days (default: "
            "CONSENTRY_WEBHOOK_KEEP_DELIVERED_S and CONSENTRY_OUTBOX_KEEP_S, 7 days each).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete delivered messages' records and the outbox rows every subscription is past.

    What a subscriber still needs stays: rows after any subscription's cursor, and from the
    oldest pending or failed delivery on. Delivery workers also prune once a minute.
    """
    from ..times import to_us
    from .delivery import DeliveryConfig
    from .retention import prune

    with _store(ctx) as store:
        try:
            store.init()
            config = DeliveryConfig.from_env()
            keep = None if keep_days is None else keep_days * 86_400.0
            done = prune(
                store.ledger.engine,
                keep_delivered_s=config.keep_delivered_s if keep is None else keep,
                keep_outbox_s=config.keep_outbox_s if keep is None else keep,
                ledger_now_us=to_us(store.clock()),
            )
        except ConsentryError as exc:
            _fail(exc)
    if as_json:
        _print(done.to_dict())
        return
    out.print(
        f"pruned {done.deliveries} delivered record(s) and {done.outbox} outbox row(s)",
        highlight=False,
    )


def deliver(
    ctx: typer.Context,
    nats: Annotated[
        str | None,
        typer.Option(
            "--nats",
            envvar="CONSENTRY_NATS_URL",
            help="Also publish every event to NATS JetStream at this URL (nats://host:4222).",
        ),
    ] = None,
    stream: Annotated[
        str, typer.Option("--stream", envvar="CONSENTRY_NATS_STREAM", help="JetStream stream.")
    ] = "CONSENTRY",
    concurrency: Annotated[
        int | None, typer.Option("--concurrency", min=1, help="Sending threads in all.")
    ] = None,
    once: Annotated[
        bool, typer.Option("--once", help="Deliver what is due now, then exit.")
    ] = False,
) -> None:
    """Deliver the outbox to the webhooks (and NATS JetStream) until stopped.

    Any number of `deliver` processes and `serve` workers may run at once: each claims
    messages before sending them, so a message is sent once in the normal case (at least
    once if a process dies mid-send). Settings: CONSENTRY_WEBHOOK_* (docs/deploying.md).
    """
    from .delivery import Deliverer, DeliveryConfig

    with _store(ctx) as store:
        try:
            store.init()
            config = DeliveryConfig.from_env(
                nats_url=nats, nats_stream=stream, concurrency=concurrency
            )
            deliverer = Deliverer(store, config)
            if once:
                while deliverer.run_once():
                    deliverer.drain()
                deliverer.drain()
                deliverer.stop()
                return
            stop = threading.Event()

            def _stop(_sig: int, _frame: Any) -> None:
                stop.set()

            signal.signal(signal.SIGTERM, _stop)
            signal.signal(signal.SIGINT, _stop)
            err.print(
                f"consentry delivering {store.url.split('@')[-1]} as {deliverer.worker_id}",
                highlight=False,
            )
            deliverer.run(until=stop.is_set)
            deliverer.stop()
        except ConsentryError as exc:
            _fail(exc)


#: The commands ``consentry`` loads from here (see consentry.cli.LAZY_COMMANDS).
COMMANDS: dict[str, Any] = {"webhooks": webhooks_app, "deliver": deliver}
