"""``consentry subject export`` (a person's data as one ZIP) and ``consentry import`` (consents
from another system, keeping their dates): each one call into :class:`consentry.Store`."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from .cli_common import fail as _fail
from .cli_common import open_store as _store
from .errors import InvalidInput
from .export import archive_name
from .imports import DEFAULT_BATCH, ImportRefused

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

subject_app = typer.Typer(
    help="A person's rights and ids: download their data, link the ids they are known by.",
    no_args_is_help=True,
)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON data instead of text.")]
#: Imports of at least this many rows show a progress bar (on a terminal).
PROGRESS_FROM = 20_000


@subject_app.command("export")
def subject_export(
    ctx: typer.Context,
    subject: Annotated[str, typer.Argument(help="The subject's id on the platform.")],
    out_file: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Write the ZIP here (default: <subject>-data.zip)."),
    ] = None,
    language: Annotated[
        str | None,
        typer.Option("--language", help="The README's language (en, id, fr; default: theirs)."),
    ] = None,
) -> None:
    """Everything the store holds about a person as one ZIP: their ledger events (JSON and
    CSV), each consent receipt with its inclusion proof, memberships, the datasets and models
    their data went into, and a README in their language. '-' writes to standard output."""
    with _store(ctx) as s:
        data = s.export_subject(subject, language=language)
    if out_file is not None and str(out_file) == "-":
        sys.stdout.buffer.write(data)
        return
    target = out_file or Path(archive_name(subject))
    try:
        # Owner-only from the start: the archive is personal data.
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
    except OSError as exc:
        _fail(InvalidInput(f"cannot write {target}: {exc.strerror}", field="out"))
    out.print(f"wrote {target} ({len(data):,} bytes)", highlight=False)


@subject_app.command("report")
def subject_report(
    ctx: typer.Context,
    subject: Annotated[str, typer.Argument(help="The subject's id on the platform.")],
    language: Annotated[
        str | None,
        typer.Option("--language", help="The notice's language (default: the policy's)."),
    ] = None,
) -> None:
    """The person's transparency report as JSON (what GET /v1/subjects/SUBJECT/report
    answers, without the receipt links): each use of their data with its basis and what it
    means for them now, what never happens, their history and where their data went."""
    with _store(ctx) as s:
        report = s.transparency_report(subject, language=language)
    sys.stdout.write(json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n")


ActorOpt = Annotated[str, typer.Option("--actor", help="Who records it (the ledger's actor).")]


@subject_app.command("link")
def subject_link(
    ctx: typer.Context,
    primary: Annotated[str, typer.Argument(help="The person's primary id.")],
    alias: Annotated[str, typer.Argument(help="Another id of theirs, e.g. an email.")],
    actor: ActorOpt = "platform",
    as_json: JsonOpt = False,
) -> None:
    """Record that ALIAS is another id of the person PRIMARY: decisions, the gate and impact
    then decide ALIAS by the person's choices (where both made choices before the link, the
    more protective stands). An id that is already someone's alias, or has aliases of its
    own, is refused: unlink it first."""
    with _store(ctx) as s:
        event = s.link_subject(primary, alias, actor=actor)
    if as_json:
        out.print_json(json.dumps(event.to_dict()))
        return
    out.print(f"linked {alias} to {primary} (event #{event.seq})", highlight=False)


@subject_app.command("unlink")
def subject_unlink(
    ctx: typer.Context,
    primary: Annotated[str, typer.Argument(help="The person's primary id.")],
    alias: Annotated[str, typer.Argument(help="The alias to let go.")],
    actor: ActorOpt = "platform",
    as_json: JsonOpt = False,
) -> None:
    """Record that ALIAS no longer names the person PRIMARY: it is decided by the choices
    made under it alone again."""
    with _store(ctx) as s:
        event = s.unlink_subject(primary, alias, actor=actor)
    if as_json:
        out.print_json(json.dumps(event.to_dict()))
        return
    out.print(f"unlinked {alias} from {primary} (event #{event.seq})", highlight=False)


@subject_app.command("aliases")
def subject_aliases(
    ctx: typer.Context,
    subject: Annotated[str, typer.Argument(help="Any id of the person.")],
    as_json: JsonOpt = False,
) -> None:
    """The person an id names: their primary id and each alias, with when it was linked."""
    with _store(ctx) as s:
        data = s.aliases(subject)
    if as_json:
        out.print_json(json.dumps(data))
        return
    out.print(f"person {data['subject']}", highlight=False)
    for a in data["aliases"]:
        out.print(f"  alias {a['alias']} (linked {a['linked_at']})", highlight=False)
    if not data["aliases"]:
        out.print("  no aliases", highlight=False)


def import_command(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="A CSV or JSON Lines file of consents.")],
    fmt: Annotated[
        str | None,
        typer.Option("--format", help="csv or jsonl (default: from the file's extension)."),
    ] = None,
    source: Annotated[
        str | None,
        typer.Option("--source", help="The system the consents come from, e.g. onetrust."),
    ] = None,
    actor: Annotated[str, typer.Option("--actor", help="Who ran the import.")] = "import",
    batch_size: Annotated[
        int, typer.Option("--batch-size", help="Rows per transaction.", min=1)
    ] = DEFAULT_BATCH,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check every row; write nothing.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Import consents collected by another system. Columns: subject, purpose, categories
    (a;b), status (given|refused|withdrawn), captured_at, method, notice_version, source_id
    [, language]. Each row is recorded now and keeps its original captured_at, which expiry
    and re-consent count from. Re-importing a source_id does nothing; a file with any row in
    error writes nothing (every error is listed with its line)."""
    with _store(ctx) as s:
        progress: Progress | None = None
        task = None

        def advance(done: int, total: int) -> None:
            nonlocal progress, task
            if progress is None:
                if total < PROGRESS_FROM or as_json or not err.is_terminal:
                    return
                progress = Progress(
                    TextColumn("importing"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TimeRemainingColumn(),
                    console=err,
                    transient=True,
                )
                progress.start()
                task = progress.add_task("import", total=total)
            assert task is not None
            progress.update(task, completed=done)

        try:
            report = s.import_consents(
                file,
                fmt=fmt,
                source=source,
                actor=actor,
                batch_size=batch_size,
                dry_run=dry_run,
                progress=advance,
            )
        except ImportRefused as exc:
            if as_json:
                out.print_json(json.dumps(exc.to_problem()))
            else:
                err.print(
                    f"[bold red]Error:[/] {exc.details['rows']} row(s) read, "
                    f"{len(exc.errors)} in error; nothing was imported",
                    highlight=False,
                )
                for e in exc.errors:
                    err.print(f"  line {e.line}, {e.field}: {e.message}", highlight=False)
            raise typer.Exit(2) from None
        finally:
            if progress is not None:
                progress.stop()
    if as_json:
        out.print_json(json.dumps(report.to_dict()))
        return
    done = f"would record {report.pending}" if dry_run else f"recorded {report.recorded}"
    out.print(
        f"{report.rows} row(s): {done}, already imported {report.already}, superseded by a "
        f"newer choice {report.superseded}",
        highlight=False,
    )
    for line, event_id in report.already_lines[:10]:
        out.print(f"  line {line}: already imported as event {event_id}", highlight=False)
    if len(report.already_lines) > 10:
        out.print(f"  ... and {len(report.already_lines) - 10} more", highlight=False)


#: The commands ``consentry`` loads from here (see consentry.cli.LAZY_COMMANDS).
COMMANDS: dict[str, Any] = {"subject": subject_app, "import": import_command}
