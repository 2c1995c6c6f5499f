"""``consentry audit notices``: the consents the ledger holds no evidence of an informed
choice for (no ``notice.served`` event for their subject, notice version and language came
first). One call into :meth:`consentry.Store.consents_without_notice`."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console

from .cli_common import open_store as _store

out = Console(soft_wrap=True)

audit_app = typer.Typer(
    help="Audits of the evidence: consents recorded with no notice shown first.",
    no_args_is_help=True,
)


@audit_app.command("notices")
def audit_notices(
    ctx: typer.Context,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON data instead of text.")
    ] = False,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="List at most this many.")
    ] = None,
) -> None:
    """List the consents (given, refused, withdrawn) recorded with no earlier notice.served
    event for their subject, notice version and language: choices the ledger cannot show
    were informed. Exit 1 when there is any (0: every consent followed its notice)."""
    with _store(ctx) as s:
        found = s.consents_without_notice(limit=limit)
    rows = [
        {
            "seq": e.seq,
            "id": e.id,
            "at": e.at_text,
            "kind": str(e.kind),
            "subject": e.subject,
            "purpose": e.purpose,
            "notice_version": e.notice_version,
            "language": e.language,
            "method": e.method,
        }
        for e in found
    ]
    if as_json:
        out.print_json(json.dumps({"count": len(rows), "consents": rows}))
    elif not rows:
        out.print("every consent followed a notice.served event for its notice and language")
    else:
        out.print(f"{len(rows)} consent(s) with no notice shown first:", highlight=False)
        for r in rows:
            out.print(
                f"  #{r['seq']} {r['id']} {r['at']} {r['kind']} {r['subject']} {r['purpose']} "
                f"(notice {r['notice_version']}, {r['language']}, via {r['method']})",
                highlight=False,
            )
    if rows:
        raise typer.Exit(1)


#: The commands ``consentry`` loads from here (see consentry.cli.LAZY_COMMANDS).
COMMANDS: dict[str, Any] = {"audit": audit_app}
