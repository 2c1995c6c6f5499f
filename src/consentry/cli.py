"""The ``consentry`` command: each command is one call into :class:`consentry.Store`.

Start-up is kept cheap (``consentry --help`` and ``consentry check`` are run by scripts, often
in loops): the database layer is imported inside the commands, and the commands that need
the web framework (``serve``, ``keys``, ``token``) or DuckDB/PyArrow/Spark (``gate``,
``datasets``, ``model``, ``impact``) and ``signals`` are loaded only when one of them runs
(:class:`LazyGroup`). ``tests/test_cli_startup.py`` checks that ``consentry --help`` imports
none of them.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from typer.core import TyperCommand, TyperGroup

from .cli_common import emit, err, fail, out, store_at
from .errors import ConsentryError, InvalidInput, SignatureInvalid

if TYPE_CHECKING:
    from .ledger.audit import Divergence
    from .store import Store

#: Environment variables the key options set (the same names as in consentry.store, which
#: is not imported here to keep start-up cheap; tests/test_cli_startup.py checks they agree).
SIGNING_KEY_FILE_ENV = "CONSENTRY_SIGNING_KEY_FILE"
LOG_KEY_FILE_ENV = "CONSENTRY_LOG_KEY_FILE"

#: Commands defined in other modules, loaded when run: name -> (module, its short help).
#: Each module has a ``COMMANDS`` mapping of these names to a Typer app or a function.
LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "serve": (
        "consentry.api.cli",
        "Run the HTTP API, the preference centre and the admin console.",
    ),
    "token": (
        "consentry.api.cli",
        "Sign a token as the platform would (HS256), for development and tests.",
    ),
    "keys": ("consentry.api.cli", "API keys for the platform's backends."),
    "gate": (
        "consentry.gate.cli",
        "Keep a training manifest's items whose every subject allows the purpose; record the "
        "lineage.",
    ),
    "datasets": ("consentry.gate.cli", "Datasets the gate built."),
    "model": ("consentry.gate.cli", "Models and the datasets they were trained on."),
    "impact": (
        "consentry.gate.cli",
        "Every dataset and model that used SUBJECT's items, and whether the subject's current "
        "choices still allow each (no: retrain or unlearn).",
    ),
    "signals": (
        "consentry.signals.cli",
        "Publish do-not-train signals for your content; honour other sites' opt-outs.",
    ),
    "webhooks": (
        "consentry.outbound.cli",
        "Webhook subscriptions: every ledger event, signed, to your endpoints.",
    ),
    "deliver": (
        "consentry.outbound.cli",
        "Deliver the outbox to the webhooks (and NATS JetStream) until stopped.",
    ),
    "subject": (
        "consentry.rights_cli",
        "A person's rights and ids: download their data, link the ids they are known by.",
    ),
    "audit": (
        "consentry.audit_cli",
        "Audits of the evidence: consents recorded with no notice shown first.",
    ),
    "import": (
        "consentry.rights_cli",
        "Import consents collected by another system.",
    ),
}


def load_lazy_command(name: str) -> Any:
    """The (click) command ``name`` of :data:`LAZY_COMMANDS`, imported now."""
    target = import_module(LAZY_COMMANDS[name][0]).COMMANDS[name]
    # Mounted on a holder as on the root (no shell-completion options of its own).
    holder = typer.Typer(rich_markup_mode=None, add_completion=False)
    if isinstance(target, typer.Typer):
        holder.add_typer(target, name=name)
        command = typer.main.get_command(holder).commands[name]  # type: ignore[attr-defined]
    else:
        holder.command(name)(target)
        command = typer.main.get_command(holder)
    command.name = name
    return command


class LazyGroup(TyperGroup):
    """The root group: the commands of :data:`LAZY_COMMANDS` are imported when invoked; the
    help page lists them with their short help without importing them."""

    _listing = False

    def list_commands(self, ctx: Any) -> list[str]:
        return [*super().list_commands(ctx), *(n for n in LAZY_COMMANDS if n not in self.commands)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        found = super().get_command(ctx, cmd_name)
        if found is not None or cmd_name not in LAZY_COMMANDS:
            return found
        if self._listing:  # the help page needs only the name and the short help
            return TyperCommand(cmd_name, short_help=LAZY_COMMANDS[cmd_name][1])
        command = load_lazy_command(cmd_name)
        self.commands[cmd_name] = command
        return command

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


app = typer.Typer(
    cls=LazyGroup,
    # Plain click help everywhere: the Rich renderer costs more CPU than the rest of `--help`,
    # and docs/cli.md is generated from the same text.
    rich_markup_mode=None,
    help="consentry: use people's data for AI only where they, their organisation and your "
    "terms allow it — and prove it afterwards.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
policy_app = typer.Typer(
    rich_markup_mode=None, help="Publish, show and compare policy versions.", no_args_is_help=True
)
consent_app = typer.Typer(
    rich_markup_mode=None, help="Record a subject's opt-in choices.", no_args_is_help=True
)
member_app = typer.Typer(rich_markup_mode=None, help="Account membership.", no_args_is_help=True)
account_app = typer.Typer(
    rich_markup_mode=None, help="Account-level settings and AI features.", no_args_is_help=True
)
ledger_app = typer.Typer(
    rich_markup_mode=None, help="The hash-chained event ledger.", no_args_is_help=True
)
receipt_app = typer.Typer(
    rich_markup_mode=None, help="Signed consent receipts.", no_args_is_help=True
)
sessions_app = typer.Typer(
    rich_markup_mode=None, help="Web sessions (/me, /admin).", no_args_is_help=True
)
app.add_typer(policy_app, name="policy")
app.add_typer(consent_app, name="consent")
app.add_typer(member_app, name="member")
app.add_typer(account_app, name="account")
app.add_typer(ledger_app, name="ledger")
app.add_typer(receipt_app, name="receipt")
app.add_typer(sessions_app, name="sessions")

T = TypeVar("T")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON data instead of text.")]
IdemOpt = Annotated[
    str | None, typer.Option("--idempotency-key", help="Retrying with the same key is safe.")
]
ActorOpt = Annotated[str | None, typer.Option("--actor", help="Who made the change.")]


class _Ctx:
    db: str | None = None
    signing_key: Path | None = None
    log_key: Path | None = None


_ctx = _Ctx()


@app.callback()
def main(
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            envvar="CONSENTRY_DATABASE_URL",
            help="Store URL: sqlite:///consentry.db (default) or postgresql://user@host/db.",
        ),
    ] = None,
    signing_key: Annotated[
        Path | None,
        typer.Option(
            "--signing-key",
            envvar="CONSENTRY_SIGNING_KEY_FILE",
            help="Sign receipts with the Ed25519 key in this file (made by `consentry receipt "
            "keygen`) instead of one kept in the store.",
        ),
    ] = None,
    log_key: Annotated[
        Path | None,
        typer.Option(
            "--log-key",
            envvar="CONSENTRY_LOG_KEY_FILE",
            help="Sign checkpoints and authenticate events with the Ed25519 key in this file "
            "instead of one kept in the store.",
        ),
    ] = None,
) -> None:
    _ctx.db = db
    _ctx.signing_key = signing_key
    _ctx.log_key = log_key
    if signing_key is not None:
        # For every store this process opens (`serve`, `gate` ...), not only this module's.
        os.environ[SIGNING_KEY_FILE_ENV] = str(signing_key)
    if log_key is not None:
        os.environ[LOG_KEY_FILE_ENV] = str(log_key)


@contextmanager
def store(
    *, create: bool = False, answers_no: tuple[type[ConsentryError], ...] = ()
) -> Iterator[Store]:
    """The store of ``--db`` for one command (:func:`consentry.cli_common.store_at`: typed
    errors exit 2, database errors 3). Only ``init`` passes ``create``: any other command
    pointed at a store that is not there says so."""
    with store_at(
        _ctx.db,
        create=create,
        answers_no=answers_no,
        signing_key_file=_ctx.signing_key,
        log_key_file=_ctx.log_key,
    ) as s:
        yield s


def _event_line(event: Any) -> None:
    out.print(f"recorded [bold]{event.kind}[/] as event #{event.seq} {event.id}", highlight=False)


def _event_json(event: Any) -> dict[str, Any]:
    return event.to_dict()  # type: ignore[no-any-return]


# -- init and policies ------------------------------------------------------------------------


@app.command()
def init(
    policy: Annotated[
        list[Path] | None, typer.Option("--policy", help="Policy file(s) to publish.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a store (schema, receipt signing key) and publish the given policies."""
    with store(create=True) as s:
        results = s.init(policy or [])
        data = {"store": s.url, "published": [r.__dict__ | {"event": None} for r in results]}

        def text() -> None:
            out.print(f"store ready: {s.url}", highlight=False)
            for r in results:
                state = "published" if r.published else "already published"
                out.print(f"  policy version {r.version}: {state} ({r.digest[:12]})")

        emit(data, as_json, text)


@policy_app.command("publish")
def policy_publish(file: Path, actor: ActorOpt = None, as_json: JsonOpt = False) -> None:
    """Publish every version in FILE (identical re-publishing is a no-op)."""
    with store() as s:
        results = s.publish(file, actor=actor)
        data = [
            {
                "version": r.version,
                "digest": r.digest,
                "published": r.published,
                "event_id": r.event.id if r.event else None,
            }
            for r in results
        ]

        def text() -> None:
            for r in results:
                state = f"published as event #{r.event.seq}" if r.event else "already published"
                out.print(f"version {r.version}: {state} (sha256 {r.digest[:16]}…)")

        emit(data, as_json, text)


@policy_app.command("show")
def policy_show(
    version: Annotated[
        str | None, typer.Option("--version", help="Default: in effect now.")
    ] = None,
    lang: Annotated[str | None, typer.Option("--lang", help="Notice language.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a policy version: its rules and its notice in a language."""
    with store() as s:
        policy = s.policy(version)
        notice = policy.notice(lang) if policy.notices else None
        data = {
            "id": policy.id,
            "version": policy.version,
            "effective": policy.document["effective"],
            "digest": policy.digest,
            "language": policy.language,
            "versions": [p.version for p in s.policies()],
            "notice": None
            if notice is None
            else {
                "language": notice.language,
                "machine_translated": notice.machine_translated,
                "title": notice.title,
                "summary": notice.summary,
                "rules": dict(notice.rules),
            },
            "rules": [
                {
                    "id": r.id,
                    "purposes": r.purposes,
                    "categories": r.categories,
                    "basis": str(r.basis),
                }
                for r in policy.rules
            ],
        }

        def text() -> None:
            out.print(
                f"[bold]{policy.id}[/] version [bold]{policy.version}[/], effective "
                f"{data['effective']} (versions: {', '.join(data['versions'])})"
            )
            if notice:
                out.print(f"\n[bold]{notice.title}[/]\n{notice.summary}")
                if notice.machine_translated:
                    out.print(
                        f"[italic]Machine translation; the {policy.language!r} text prevails.[/]"
                    )
            from rich.table import Table

            table = Table("rule", "purposes", "categories", "basis", "in plain language")
            for r in policy.rules:
                table.add_row(
                    r.id,
                    "\n".join(r.purposes),
                    "\n".join(r.categories),
                    str(r.basis),
                    notice.rules.get(r.id, "") if notice else "",
                )
            out.print(table)

        emit(data, as_json, text)


@policy_app.command("diff")
def policy_diff(
    old: Annotated[str, typer.Argument(metavar="FROM")],
    new: Annotated[str, typer.Argument(metavar="TO")],
    lang: Annotated[str | None, typer.Option("--lang", help="en, id or fr.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Explain what TO allows that FROM did not (and the reverse), rule by rule."""
    with store() as s:
        diff = s.diff(old, new, language=lang)
        emit(diff.to_dict(), as_json, lambda: typer.echo(diff.render()))


# -- choices ----------------------------------------------------------------------------------

Subject = Annotated[str, typer.Argument(help="The subject's id on the platform.")]
Purpose = Annotated[str, typer.Argument(help="A purpose, e.g. ai.training.")]
Categories = Annotated[
    list[str] | None, typer.Option("--category", "-c", help="Data category (repeatable).")
]


NoticeOpt = Annotated[
    str | None, typer.Option("--notice-version", help="Policy version whose notice was shown.")
]
LangOpt = Annotated[str | None, typer.Option("--lang", help="Language of the notice shown.")]
MethodOpt = Annotated[str, typer.Option("--method", help="How the choice was collected.")]


def _consent_command(action: str, doc: str) -> None:
    """Register ``consentry consent ACTION``: the three commands differ only in the call."""

    def command(
        subject: Subject,
        purpose: Purpose,
        category: Categories = None,
        notice_version: NoticeOpt = None,
        lang: LangOpt = None,
        method: MethodOpt = "cli",
        actor: ActorOpt = None,
        idempotency_key: IdemOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        with store() as s:
            event = s.record_consent(
                action,
                subject,
                purpose,
                category or [],
                notice_version=notice_version,
                language=lang,
                method=method,
                actor=actor,
                idempotency_key=idempotency_key,
            )
            emit(_event_json(event), as_json, lambda: _event_line(event))

    command.__doc__ = doc
    consent_app.command(action)(command)


_consent_command("give", "Record an opt-in.")
_consent_command("refuse", "Record that the subject was asked and said no.")
_consent_command("withdraw", "Record that the subject took an opt-in back.")


@app.command("object")
def object_(
    subject: Subject,
    purpose: Purpose,
    category: Categories = None,
    lift: Annotated[bool, typer.Option("--lift", help="Lift the objection.")] = False,
    actor: ActorOpt = None,
    idempotency_key: IdemOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Object to a legitimate-interest purpose (no --category: every category)."""
    with store() as s:
        event = s.record_consent(
            "lift" if lift else "object",
            subject,
            purpose,
            category or [],
            actor=actor,
            idempotency_key=idempotency_key,
        )
        emit(_event_json(event), as_json, lambda: _event_line(event))


@member_app.command("add")
def member_add(
    subject: Subject,
    account: str,
    actor: ActorOpt = None,
    idempotency_key: IdemOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """SUBJECT joins ACCOUNT."""
    with store() as s:
        event = s.add_member(subject, account, actor=actor, idempotency_key=idempotency_key)
        emit(_event_json(event), as_json, lambda: _event_line(event))


@member_app.command("invite")
def member_invite(
    subject: Subject,
    account: str,
    actor: ActorOpt = None,
    idempotency_key: IdemOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Invite SUBJECT to ACCOUNT: they join when they accept (`member accept`, or on /me)."""
    with store() as s:
        event = s.invite_member(subject, account, actor=actor, idempotency_key=idempotency_key)
        emit(_event_json(event), as_json, lambda: _event_line(event))


@member_app.command("accept")
def member_accept(
    subject: Subject,
    account: str,
    idempotency_key: IdemOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """SUBJECT accepts a pending invitation to ACCOUNT (and becomes a member)."""
    with store() as s:
        event = s.accept_invitation(subject, account, idempotency_key=idempotency_key)
        emit(_event_json(event), as_json, lambda: _event_line(event))


@member_app.command("decline")
def member_decline(
    subject: Subject,
    account: str,
    idempotency_key: IdemOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """SUBJECT declines a pending invitation to ACCOUNT."""
    with store() as s:
        event = s.decline_invitation(subject, account, idempotency_key=idempotency_key)
        emit(_event_json(event), as_json, lambda: _event_line(event))


@member_app.command("uninvite")
def member_uninvite(
    subject: Subject,
    account: str,
    actor: ActorOpt = None,
    idempotency_key: IdemOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """ACCOUNT withdraws its pending invitation of SUBJECT (recorded as `member.declined`
    by --actor, with the payload {"withdrawn": true})."""
    with store() as s:
        event = s.withdraw_invitation(
            subject, account, actor=actor, idempotency_key=idempotency_key
        )
        emit(_event_json(event), as_json, lambda: _event_line(event))


@member_app.command("remove")
def member_remove(
    subject: Subject,
    account: str,
    actor: ActorOpt = None,
    idempotency_key: IdemOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """SUBJECT leaves ACCOUNT."""
    with store() as s:
        event = s.remove_member(subject, account, actor=actor, idempotency_key=idempotency_key)
        emit(_event_json(event), as_json, lambda: _event_line(event))


@account_app.command("set")
def account_set(
    account: str,
    purpose: Purpose,
    setting: Annotated[str, typer.Argument(metavar="off|members_choose|on")],
    actor: ActorOpt = None,
    idempotency_key: IdemOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Set an account's setting for a purpose."""
    with store() as s:
        event = s.set_account(
            account, purpose, setting, actor=actor, idempotency_key=idempotency_key
        )
        emit(_event_json(event), as_json, lambda: _event_line(event))


@account_app.command("feature")
def account_feature(
    account: str,
    purpose: Purpose,
    state: Annotated[str, typer.Argument(metavar="on|off")],
    actor: ActorOpt = None,
    idempotency_key: IdemOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Switch an AI feature on or off for an account."""
    if state not in ("on", "off"):
        fail(InvalidInput(f"feature state {state!r} is not 'on' or 'off'"))
    with store() as s:
        event = s.set_feature(
            account, purpose, state == "on", actor=actor, idempotency_key=idempotency_key
        )
        emit(_event_json(event), as_json, lambda: _event_line(event))


@account_app.command("show")
def account_show(account: str, as_json: JsonOpt = False) -> None:
    """An account's settings, features and members."""
    with store() as s:
        data = s.account_state(account)

        def text() -> None:
            members = data["members"]
            _plain(f"{account}: {len(members)} member(s){': ' if members else ''}"
                   f"{', '.join(members)}")  # fmt: skip
            _plain("settings:" if data["settings"] else "settings: none (members choose)")
            for purpose, setting in data["settings"].items():
                _plain(f"  {purpose}: {setting}")
            _plain("AI features:" if data["features"] else "AI features: none switched")
            for purpose, status in data["features"].items():
                _plain(f"  {purpose}: {'on' if status == 'enabled' else 'off'}")

        emit(data, as_json, text)


# -- decisions --------------------------------------------------------------------------------


AS_OF_HELP = (
    "A past moment: an RFC 3339 time (2024-03-01T12:00:00Z), a time before now "
    "(-30s, -5m, -2h, -1d) or event:N (when event #N was recorded; see `consentry log`)."
)


@app.command()
def check(
    purpose: Purpose,
    category: Annotated[str, typer.Argument(help="Data category, e.g. content.audio.")],
    subject: Annotated[
        list[str], typer.Option("--subject", "-s", help="Subject (repeat; the first owns it).")
    ],
    label: Annotated[list[str] | None, typer.Option("--label", "-l", help="Item label.")] = None,
    as_of: Annotated[str | None, typer.Option("--as-of", help=AS_OF_HELP)] = None,
    account: Annotated[
        str | None,
        typer.Option(
            "--account",
            "-a",
            help="The account the item belongs to (the meeting host's). Left out: the most "
            "protective answer over each person's accounts.",
        ),
    ] = None,
    explain: Annotated[bool, typer.Option("--explain", help="Show rule and events.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Decide: exit 0 allow, 1 deny, 2 error."""
    if as_of is None and account is None and not explain and not as_json:
        # The common case, often run in a loop: read a SQLite store without the database
        # layer (consentry.quick_check); anything it cannot answer exactly goes on below.
        from .quick_check import check as quick_check

        quick = quick_check(_ctx.db, subject, purpose, category, label or [])
        if quick is not None:
            verdict = (
                typer.style("allow", fg="green", bold=True)
                if quick.allowed
                else (typer.style("deny", fg="red", bold=True))
            )
            typer.echo(f"{verdict} ({quick.reason})")
            raise typer.Exit(0 if quick.allowed else 1)
    with store() as s:
        decision = s.check(subject, purpose, category, label or [], as_of=as_of, account=account)
        data = s.explain(decision) if (explain or as_json) else decision.to_dict()

        def text() -> None:
            verdict = "[bold green]allow[/]" if decision.allowed else "[bold red]deny[/]"
            out.print(f"{verdict} ({decision.reason})", highlight=False)
            by = data.get("decided_by")
            if by:
                out.print(
                    f"  decided by account {by['account']} ({by['kind']} {by['setting']}, "
                    f"event #{by['seq']})",
                    highlight=False,
                )
            if explain:
                if decision.account:
                    out.print(f"  item of account: {decision.account}", highlight=False)
                out.print(f"  policy version: {decision.policy_version}", highlight=False)
                out.print(f"  rule: {decision.rule}", highlight=False)
                if data.get("notice"):
                    out.print(f"  notice: {data['notice']}", highlight=False)
                out.print(f"  decided by subject: {decision.subject}", highlight=False)
                for ev in data["evidence"]:
                    out.print(f"  event #{ev['seq']} {ev['event_id']}", highlight=False)
                for d in data["subjects"]:
                    out.print(
                        f"  - {d['subject']}: {'allow' if d['allowed'] else 'deny'} "
                        f"({d['reason']})",
                        highlight=False,
                    )

        emit(data, as_json, text)
    raise typer.Exit(0 if decision.allowed else 1)


@app.command("state")
def subject_state(
    subject: Subject,
    as_of: Annotated[str | None, typer.Option("--as-of", help=AS_OF_HELP)] = None,
    as_json: JsonOpt = False,
) -> None:
    """A subject's consents, objections and accounts."""
    with store() as s:
        data = s.subject_state(subject, as_of=as_of)
        emit(data, as_json, lambda: _print_subject_state(data))


def _print_subject_state(data: dict[str, Any]) -> None:
    say = _plain
    if not data["known"] and not data["consents"] and not data["objections"]:
        say(f"{data['subject']}: nothing recorded (ledger at event #{data['ledger_seq']})")
        return
    accounts = ", ".join(data["accounts"]) or "none"
    say(f"{data['subject']} (ledger at event #{data['ledger_seq']})")
    say(f"accounts: {accounts}")
    say("consents:" if data["consents"] else "consents: none")
    for c in data["consents"]:
        say(f"  {c['purpose']} on {c['category']}: {c['status']} (event #{c['seq']})")
    say("objections:" if data["objections"] else "objections: none")
    for o in data["objections"]:
        category = "every category" if o["category"] == "*" else o["category"]
        say(f"  {o['purpose']} on {category}: {o['status']} (event #{o['seq']})")


# -- the ledger's events ----------------------------------------------------------------------


@app.command("log")
def log(
    subject: Annotated[
        str | None, typer.Option("--subject", "-s", help="Only events about this subject.")
    ] = None,
    account: Annotated[
        str | None, typer.Option("--account", "-a", help="Only events about this account.")
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, help="How many of the last events.")
    ] = 20,
    as_json: JsonOpt = False,
) -> None:
    """The last events, oldest first: number, time, kind, subject and id — to pick an id for
    `receipt show` or a moment for `--as-of event:N`."""
    with store() as s:
        events = s.log(subject=subject, account=account, limit=limit)
    rows = [{k: v for k, v in e.to_dict().items() if k != "payload"} for e in events]

    def text() -> None:
        if not events:
            _plain("no events match")
            return
        from .texttable import aligned

        table = [("seq", "time", "kind", "subject/account", "id")]
        table += [
            (str(e.seq), e.at_text, str(e.kind), e.subject or e.account or "-", e.id)
            for e in events
        ]
        for line in aligned(table, right={0}):
            _plain(line)

    emit(rows, as_json, text)


def _plain(line: str) -> None:
    """Print a line as it is: no markup, highlighting or wrapping (ids must stay whole)."""
    out.print(line, markup=False, highlight=False, soft_wrap=True)


# -- ledger and receipts ----------------------------------------------------------------------


@ledger_app.command("verify")
def ledger_verify(
    since: Annotated[
        Path | None,
        typer.Option(
            "--since",
            metavar="CHECKPOINT_FILE",
            help="Also prove the ledger is an append-only extension of this signed checkpoint.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Recompute the hash chain and the events' MACs; name the first event that was tampered
    with. Recompute the current-state tables from the events; name every row that differs.
    With --since, prove nothing before the checkpoint changed."""
    note = _read_text(since, "a checkpoint file") if since is not None else None
    with store() as s:
        result = s.verify(since=note)

        def text() -> None:
            if result.ok:
                out.print(
                    f"[green]ok[/]: {result.checked} events, head #{result.head_seq} "
                    f"{result.head_hash[:16]}…; the current state matches the chain",
                    highlight=False,
                )
                if result.since is not None:
                    out.print(
                        f"[green]consistent[/]: the ledger of {result.since['tree_size']} events "
                        f"extends the checkpoint of {result.since['checkpoint_size']}",
                        highlight=False,
                    )
            else:
                from .ledger.audit import summary as state_summary

                if result.problem and result.problem != state_summary(result.divergences):
                    err.print(f"[bold red]ledger broken:[/] {result.problem}", highlight=False)
                _print_divergences(result.divergences)
            for note_line in result.notes:
                err.print(f"[yellow]Note:[/] {note_line}", highlight=False)

        emit(result.to_dict(), as_json, text)
    raise typer.Exit(0 if result.ok else 1)


_DIVERGENCES_SHOWN = 50


def _print_divergences(divergences: Sequence[Divergence]) -> None:
    if not divergences:
        return
    n = len(divergences)
    err.print(
        f"[bold red]current state differs from the chain:[/] {n} {'row' if n == 1 else 'rows'}",
        highlight=False,
    )
    for d in divergences[:_DIVERGENCES_SHOWN]:
        err.print(f"  {d.message()}", highlight=False, markup=False)
    if n > _DIVERGENCES_SHOWN:
        err.print(f"  … and {n - _DIVERGENCES_SHOWN} more (--json lists every one)")
    err.print(
        "[yellow]Hint:[/] `consentry ledger rebuild-state` rewrites these rows from the chain",
        highlight=False,
    )


@ledger_app.command("rebuild-state")
def ledger_rebuild_state(as_json: JsonOpt = False) -> None:
    """Rebuild the current-state tables from the hash chain, in one transaction (refused
    when the chain does not verify); print each row it changed."""
    with store() as s:
        result = s.rebuild_state()

        def text() -> None:
            n = len(result.changed)
            if not n:
                out.print(
                    f"[green]nothing to change[/]: the current state ({result.rows} rows) "
                    f"already matches the chain ({result.events} events, head #{result.head_seq})",
                    highlight=False,
                )
                return
            out.print(
                f"[green]rebuilt[/] from {result.events} events (head #{result.head_seq}): "
                f"{n} {'row' if n == 1 else 'rows'} changed",
                highlight=False,
            )
            for d in result.changed:
                action = {"extra": "deleted", "missing": "added", "changed": "fixed"}[d.problem]
                out.print(f"  {action}: {d.message()}", highlight=False, markup=False)

        emit(result.to_dict(), as_json, text)


@ledger_app.command("checkpoint")
def ledger_checkpoint(
    out_file: Annotated[
        Path | None,
        typer.Option("--out", help="Also write the signed checkpoint to this file."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Sign a checkpoint of the ledger as it is now (C2SP tlog-checkpoint), print it, and
    append it to CONSENTRY_CHECKPOINT_DIR when set."""
    with store() as s:
        checkpoint = s.checkpoint()
    if out_file is not None:
        try:
            out_file.write_text(checkpoint.note, encoding="utf-8")
        except OSError as exc:
            fail(InvalidInput(f"cannot write {out_file}: {exc.strerror}", field="out"))
    emit(checkpoint.to_dict(), as_json, lambda: print(checkpoint.note, end=""))


@ledger_app.command("public-keys")
def ledger_public_keys(
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Also write them to this JSON file.")
    ] = None,
) -> None:
    """Print the keys a verifier pins: the receipt key and the log's verifier key."""
    with store() as s:
        keys = s.public_keys()
    text = json.dumps(keys, indent=2) + "\n"
    if out_file is not None:
        try:
            out_file.write_text(text, encoding="utf-8")
        except OSError as exc:
            fail(InvalidInput(f"cannot write {out_file}: {exc.strerror}", field="out"))
    sys.stdout.write(text)


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(InvalidInput(f"cannot read {path}: {exc}", hint=f"pass {what}"))


@receipt_app.command("show")
def receipt_show(
    event_id: Annotated[
        str,
        typer.Argument(
            metavar="EVENT", help="The event's id or its number (`consentry log` lists both)."
        ),
    ],
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            "--checkpoint",
            metavar="CHECKPOINT_FILE",
            help="Prove the event against this checkpoint (default: the latest covering it).",
        ),
    ] = None,
    output_format: Annotated[
        str,
        typer.Option(
            "--format",
            metavar="FORMAT",
            help="receipt (the signed receipt with its evidence) or dpv (DPV-27560 JSON-LD).",
        ),
    ] = "receipt",
) -> None:
    """Print the signed receipt of a consent event with its evidence (JSON): the record, its
    compact JWS and the inclusion proof. --format dpv prints the record as DPV-27560 JSON-LD
    instead (W3C DPV's guide to ISO/IEC TS 27560)."""
    if output_format not in ("receipt", "dpv"):
        fail(InvalidInput(f"unknown format {output_format!r}", hint="receipt or dpv"))
    note = _read_text(checkpoint, "a checkpoint file") if checkpoint is not None else None
    with store() as s:
        if output_format == "dpv":
            public = os.environ.get("CONSENTRY_PUBLIC_URL")
            document = s.receipt_dpv(
                event_id, rights_url=f"{public.rstrip('/')}/me" if public else None
            )
        else:
            document = s.receipt(event_id, checkpoint=note)
        sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")


@receipt_app.command("jwks")
def receipt_jwks() -> None:
    """Print the receipt keys as a JWKS (RFC 7517; Ed25519 per RFC 8037), retired keys
    included: any JOSE library verifies a receipt's `jws` with it alone (the same document
    as GET /.well-known/jwks.json)."""
    with store() as s:
        sys.stdout.write(json.dumps(s.jwks(), indent=2) + "\n")


@receipt_app.command("rotate-key")
def receipt_rotate_key(
    key_file: Annotated[
        Path | None,
        typer.Option(
            "--key-file",
            help="The new key (from `consentry receipt keygen`), kept outside the database; "
            "without it a store that keeps its key in the database makes a new one there.",
        ),
    ] = None,
) -> None:
    """Sign new receipts with a new key. Receipts signed before keep verifying: the old key
    stays in the JWKS, retired. Restart running services afterwards (and point
    CONSENTRY_SIGNING_KEY_FILE at the new file when you gave one)."""
    with store() as s:
        kid = s.rotate_receipt_key(key_file)
    out.print(f"new receipts are signed with key {kid}", highlight=False)


@receipt_app.command("verify")
def receipt_verify(
    file: Path,
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            "--checkpoint",
            metavar="CHECKPOINT_FILE",
            help="A checkpoint you trust (from the witness location): the receipt must be "
            "proved against it.",
        ),
    ] = None,
    public_key: Annotated[
        list[str] | None,
        typer.Option(
            "--public-key",
            metavar="KEY",
            help="Pinned key(s): the file `consentry ledger public-keys --out` wrote, or the "
            "receipt key and the log verifier key. With pinned keys no store is needed.",
        ),
    ] = None,
) -> None:
    """Check a receipt: its signature, that its fields are its event's, the event's inclusion in
    the signed log, and the checkpoint's signature. With --public-key it needs no store (an
    auditor's check); with a store (--db) it also compares with the stored event."""
    try:
        document = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        fail(InvalidInput(f"cannot read {file}: {exc}", hint="pass a receipt JSON file"))
    note = _read_text(checkpoint, "a checkpoint file") if checkpoint is not None else None
    from .ledger.evidence import load_pins, verify_receipt_offline

    if public_key:
        try:
            receipt_key, log_key = load_pins(public_key)
            if receipt_key is None or log_key is None:
                fail(
                    InvalidInput(
                        "verifying without a store needs both pinned keys: the receipt key and "
                        "the log verifier key",
                        hint="pass the JSON file `consentry ledger public-keys --out keys.json` "
                        "wrote, or --public-key twice",
                    )
                )
            check = verify_receipt_offline(
                document, receipt_key=receipt_key, log_key=log_key, checkpoint=note
            )
        except SignatureInvalid as exc:
            fail(exc, 1)
        except ConsentryError as exc:
            fail(exc)
    if not public_key or _ctx.db is not None:
        with store(answers_no=(SignatureInvalid,)) as s:
            check = s.verify_receipt(document, checkpoint=note)
            if public_key and not set(s.receipt_public_keys()) & set(receipt_key or ()):
                fail(SignatureInvalid("the store's receipt key is not the pinned one"), 1)
    out.print(
        f"[green]valid[/]: receipt for event #{check.seq} {check.record_id}, signed by key "
        f"{check.receipt_key_id}; included in the log of {check.checkpoint.size} events "
        f"(checkpoint {check.checkpoint.time or ''})",
        highlight=False,
    )
    if check.notice_problem is not None:
        # Valid evidence of a consent, but not of an informed one (ANCR level B).
        out.print(f"[yellow]flag[/]: {check.notice_problem}", highlight=False)


@receipt_app.command("keygen")
def receipt_keygen(file: Path) -> None:
    """Create a new Ed25519 receipt signing key in FILE (owner-only; never overwrites).

    Then `consentry --signing-key FILE init` (or CONSENTRY_SIGNING_KEY_FILE=FILE) makes a store
    that signs with it and keeps only its public half.
    """
    from .ledger.receipts import write_key_file

    try:
        kid = write_key_file(file)
    except ConsentryError as exc:
        fail(exc)
    out.print(f"signing key {kid} written to {file} (mode 600)", highlight=False)


@sessions_app.command("revoke")
def sessions_revoke(
    subject: Annotated[
        str, typer.Option("--subject", help="End every web session of this person.")
    ],
    as_json: JsonOpt = False,
) -> None:
    """End all of a person's web sessions at once: their cookies stop working at the next
    request (they sign in again with a fresh link)."""
    with store() as s:
        ended = s.revoke_sessions(subject)
        emit(
            {"subject": subject, "revoked": ended},
            as_json,
            lambda: out.print(f"ended {ended} session(s) of {subject}", highlight=False),
        )
