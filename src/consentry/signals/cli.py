"""``consentry signals``: print the published files and check URLs (one library call each)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from ..cli_common import run_or_fail
from ..errors import InvalidInput
from .publish import SignalsConfig, ai_txt, robots_txt, tdmrep_json

app = typer.Typer(
    rich_markup_mode=None,
    help="Publish do-not-train signals for your content; honour other sites' opt-outs.",
    no_args_is_help=True,
)

T = TypeVar("T")

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        envvar="CONSENTRY_SIGNALS_CONFIG",
        help="A JSON or YAML file of SignalsConfig settings (see docs/signals.md).",
    ),
]
BaseUrlOpt = Annotated[str | None, typer.Option("--base-url", help="The site's base URL.")]
PolicyOpt = Annotated[str | None, typer.Option("--tdm-policy", help="TDMRep policy URL.")]
ContactOpt = Annotated[str | None, typer.Option("--contact", help="Contact for AI use.")]
ThirdPartyOpt = Annotated[
    bool | None,
    typer.Option(
        "--third-party-training/--no-third-party-training",
        help="Whether the policy permits third-party training at all (default: no).",
    ),
]
OpenPathOpt = Annotated[
    list[str] | None,
    typer.Option("--open-path", help="A path serving only consented items (repeatable)."),
]


def _run(call: Callable[[], T]) -> T:
    """``call()``; a typed error is printed with its hint (exit 2), as every command does."""
    return run_or_fail(call)


def load_config(
    path: Path | None = None,
    *,
    base_url: str | None = None,
    tdm_policy: str | None = None,
    contact: str | None = None,
    third_party_training: bool | None = None,
    open_paths: list[str] | None = None,
) -> SignalsConfig:
    """A :class:`SignalsConfig` from a file, with command-line values over it."""
    data: dict[str, Any] = {}
    if path is not None:
        if not path.exists():
            raise InvalidInput(f"no such config file: {path}")
        text = path.read_text("utf-8")
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            loaded = yaml.safe_load(text) or {}
        else:
            try:
                loaded = json.loads(text)
            except ValueError as exc:
                raise InvalidInput(f"{path} is not JSON: {exc}", hint="or name it .yaml") from exc
        if not isinstance(loaded, dict):
            raise InvalidInput(f"{path} must hold a mapping of settings")
        data.update(loaded.get("signals", loaded))
    for key, value in (
        ("base_url", base_url),
        ("tdm_policy", tdm_policy),
        ("contact", contact),
        ("third_party_training_allowed", third_party_training),
        ("open_paths", open_paths or None),
    ):
        if value is not None:
            data[key] = value
    return SignalsConfig.from_mapping(data)


@app.command()
def robots(
    config: ConfigOpt = None,
    base_url: BaseUrlOpt = None,
    tdm_policy: PolicyOpt = None,
    contact: ContactOpt = None,
    third_party_training: ThirdPartyOpt = None,
    open_path: OpenPathOpt = None,
) -> None:
    """Print the robots.txt for the platform's configuration."""
    cfg = _run(
        lambda: load_config(
            config,
            base_url=base_url,
            tdm_policy=tdm_policy,
            contact=contact,
            third_party_training=third_party_training,
            open_paths=open_path,
        )
    )
    sys.stdout.write(robots_txt(cfg))


@app.command()
def tdmrep(
    config: ConfigOpt = None,
    tdm_policy: PolicyOpt = None,
    third_party_training: ThirdPartyOpt = None,
    open_path: OpenPathOpt = None,
) -> None:
    """Print /.well-known/tdmrep.json for the platform's configuration."""
    cfg = _run(
        lambda: load_config(
            config,
            tdm_policy=tdm_policy,
            third_party_training=third_party_training,
            open_paths=open_path,
        )
    )
    sys.stdout.write(tdmrep_json(cfg))


@app.command()
def aitxt(
    config: ConfigOpt = None,
    base_url: BaseUrlOpt = None,
    contact: ContactOpt = None,
    third_party_training: ThirdPartyOpt = None,
    open_path: OpenPathOpt = None,
) -> None:
    """Print /ai.txt for the platform's configuration."""
    cfg = _run(
        lambda: load_config(
            config,
            base_url=base_url,
            contact=contact,
            third_party_training=third_party_training,
            open_paths=open_path,
        )
    )
    sys.stdout.write(ai_txt(cfg))


@app.command()
def check(
    user_agent: Annotated[
        str, typer.Option("--user-agent", help="Your crawler's User-Agent (its product token).")
    ],
    out: Annotated[Path, typer.Option("--out", help="Table to write: .parquet, .csv or .jsonl.")],
    urls: Annotated[
        Path | None, typer.Option("--urls", help="A text file of URLs, one per line.")
    ] = None,
    manifest: Annotated[
        Path | None, typer.Option("--manifest", help="A manifest (Parquet, CSV or JSONL).")
    ] = None,
    column: Annotated[
        str, typer.Option("--column", help="The manifest column holding source URLs.")
    ] = "source_url",
    purpose: Annotated[
        str,
        typer.Option(
            "--purpose",
            help="A consentry purpose (ai.training, ai.training.generative, ai.feature…) or a"
            " vocabulary term (train-ai, ai-train, ai-input, search).",
        ),
    ] = "ai.training",
    per_host: Annotated[int, typer.Option("--per-host", help="Requests per host at once.")] = 4,
    concurrency: Annotated[
        int, typer.Option("--concurrency", help="Requests in flight at once.")
    ] = 256,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds per request.")] = 10.0,
    engine: Annotated[
        str, typer.Option("--engine", help="HTTP engine: auto, direct, aiohttp or httpx.")
    ] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Check source URLs' opt-outs and write the table `consentry gate --signals` reads."""
    from .bulk import bulk_check, read_column, read_url_list
    from .vocab import uses_of

    def run() -> Any:
        if (urls is None) == (manifest is None):
            raise InvalidInput("give exactly one of --urls FILE or --manifest FILE")
        uses_of(purpose)
        todo = read_url_list(urls) if urls is not None else read_column(manifest, column)  # type: ignore[arg-type]
        return bulk_check(
            todo,
            user_agent=user_agent,
            purpose=purpose,
            out=out,
            per_host=per_host,
            concurrency=concurrency,
            timeout=timeout,
            engine=engine,
        )

    report = _run(run)
    summary = {
        "urls": report.urls,
        "hosts": report.hosts,
        "decisions": report.counts,
        "requests": report.requests,
        "seconds": round(report.seconds, 3),
        "out": report.out,
    }
    if as_json:
        typer.echo(json.dumps(summary))
        return
    counts = ", ".join(f"{k} {v}" for k, v in sorted(report.counts.items())) or "none"
    typer.echo(
        f"checked {report.urls} URLs on {report.hosts} hosts in {report.seconds:.1f}s: {counts}"
    )
    typer.echo(f"wrote {report.out}")


@app.command()
def stamp(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="A JPEG, PNG, MP4 or WAV file to stamp.")],
    subject: Annotated[
        list[str],
        typer.Option("--subject", help="The item's owner (repeat for every subject of the item)."),
    ],
    purpose: Annotated[
        list[str] | None,
        typer.Option(
            "--purpose",
            help="A purpose whose current decision to write (repeatable; default:"
            " ai.training.generative, ai.training.feature, ai.feature).",
        ),
    ] = None,
    category: Annotated[
        str, typer.Option("--category", help="The item's data category.")
    ] = "content",
    cert: Annotated[
        Path | None,
        typer.Option(
            "--cert",
            envvar="CONSENTRY_C2PA_CERT",
            help="PEM certificate chain that signs (signer first, then its CA).",
        ),
    ] = None,
    key: Annotated[
        Path | None,
        typer.Option("--key", envvar="CONSENTRY_C2PA_KEY", help="The signer's PEM private key."),
    ] = None,
    alg: Annotated[
        str, typer.Option("--alg", envvar="CONSENTRY_C2PA_ALG", help="es256, es384, ps256…")
    ] = "es256",
    out: Annotated[
        Path | None, typer.Option("--out", help="Where to write (default: over FILE).")
    ] = None,
    db: Annotated[
        str | None,
        typer.Option("--db", envvar="CONSENTRY_DATABASE_URL", help="The consentry store URL."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Write the owners' current choices into FILE as a signed CAWG training-mining assertion."""
    from ..store import Store
    from .stamp import DEFAULT_PURPOSES, StampSigner, owner_choices, training_mining_entries
    from .stamp import stamp as stamp_file

    root = ctx.find_root()
    url = db or (root.params.get("db") if root.params else None)

    def run() -> dict[str, Any]:
        if cert is None or key is None:
            raise InvalidInput(
                "stamping needs the signing certificate chain and key",
                hint="give --cert and --key (or CONSENTRY_C2PA_CERT / CONSENTRY_C2PA_KEY)",
            )
        signer = StampSigner.from_files(cert, key, alg=alg)
        with Store(url, create=False) as store:
            choices = owner_choices(store, subject, category, purpose or DEFAULT_PURPOSES)
        target = out or file
        stamp_file(file, choices, signer, out=target)
        return {
            "file": str(target),
            "choices": choices,
            "entries": training_mining_entries(choices),
        }

    result = _run(run)
    if as_json:
        typer.echo(json.dumps(result))
        return
    for name, entry in result["entries"].items():
        info = f" ({entry['constraint_info']})" if "constraint_info" in entry else ""
        typer.echo(f"{name}: {entry['use']}{info}")
    typer.echo(f"wrote {result['file']}")


@app.command("vocab")
def vocab_table(
    as_json: Annotated[bool, typer.Option("--json", help="Print the table as JSON.")] = False,
) -> None:
    """Print the vocabulary table: purposes, uses and each vocabulary's terms (draft named)."""
    from .vocab import AIPREF_CURRENT, table_rows

    rows = table_rows()
    if as_json:
        typer.echo(json.dumps({"aipref_draft": AIPREF_CURRENT, "rows": rows}))
        return
    typer.echo(f"aipref labels as {AIPREF_CURRENT} defines them")
    for row in rows:
        typer.echo(
            f"{row['purpose']:26} {row['use']:12} aipref {row['aipref']:48}"
            f" Content-Signal {row['content-signal']:9} {row['cawg']}"
        )


#: The commands ``consentry`` loads from here (see consentry.cli.LAZY_COMMANDS).
COMMANDS: dict[str, Any] = {"signals": app}
