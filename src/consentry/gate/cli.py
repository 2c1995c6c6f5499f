"""``consentry gate``, ``gate verify``, ``datasets list|show``, ``model register|list|show``,
``impact``: each one call into :class:`consentry.Store`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from ..cli_common import emit as _emit
from ..cli_common import fail as _fail
from ..cli_common import open_store as _store
from ..errors import ConsentryError, InvalidInput

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON data instead of text.")]
IdemOpt = Annotated[
    str | None, typer.Option("--idempotency-key", help="Retrying with the same key is safe.")
]


class _DefaultRun(TyperGroup):
    """``consentry gate MANIFEST ...`` runs ``gate run``; ``consentry gate verify DIR`` verifies."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


gate_app = typer.Typer(
    cls=_DefaultRun,
    rich_markup_mode=None,
    help="Keep a training manifest's items whose every subject allows the purpose; record "
    "the lineage. `consentry gate MANIFEST --purpose P --out DIR`, `consentry gate verify DIR`.",
    no_args_is_help=True,
)
datasets_app = typer.Typer(
    rich_markup_mode=None, help="Datasets the gate built.", no_args_is_help=True
)
model_app = typer.Typer(
    rich_markup_mode=None,
    help="Models and the datasets they were trained on.",
    no_args_is_help=True,
)


# -- gate -------------------------------------------------------------------------------------


@gate_app.command("run")
def gate_run(
    ctx: typer.Context,
    manifest: Annotated[
        str, typer.Argument(help="Parquet/CSV/JSONL/Arrow file, directory or (quoted) glob.")
    ],
    purpose: Annotated[str, typer.Option("--purpose", "-p", help="e.g. ai.training.")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output directory (new).")],
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="Decide as of a past moment (default now): an RFC 3339 time, -5m/-2h/-1d "
            "before now, or event:N (when event #N was recorded; see `consentry log`).",
        ),
    ] = None,
    dataset_name: Annotated[
        str | None, typer.Option("--dataset-name", help="Default: the output directory's name.")
    ] = None,
    engine: Annotated[str, typer.Option("--engine", help="duckdb or spark.")] = "duckdb",
    fmt: Annotated[
        str, typer.Option("--format", help="Output format: parquet, csv or jsonl.")
    ] = "parquet",
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing output directory.")
    ] = False,
    signals: Annotated[
        Path | None,
        typer.Option("--signals", help="Signals table: exclude items whose source opted out."),
    ] = None,
    digest: Annotated[
        str | None,
        typer.Option(
            "--digest",
            help="Item-id digest: sorted (SHA-256 of the sorted ids; the default) or "
            "multiset (a one-pass checksum, faster on large manifests).",
        ),
    ] = None,
    input_format: Annotated[
        str | None, typer.Option("--input-format", help="Override the format the name implies.")
    ] = None,
    threads: Annotated[
        int | None, typer.Option("--threads", help="DuckDB threads (the duckdb engine only).")
    ] = None,
    memory_limit: Annotated[
        str | None,
        typer.Option("--memory-limit", help="DuckDB memory limit, e.g. 3GB (duckdb only)."),
    ] = None,
    idempotency_key: IdemOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Gate MANIFEST for a purpose: write the allowed rows, the exclusions and report.json to
    --out, and record the dataset's lineage in the store."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    options: dict[str, Any] = {
        "format": fmt,
        "overwrite": overwrite,
        "signals": signals,
        "input_format": input_format,
        "idempotency_key": idempotency_key,
        # None: not given. An engine refuses an option it does not take (--threads with
        # Spark) rather than dropping it.
        "threads": threads,
        "memory_limit": memory_limit,
    }
    if digest is not None:  # else the default, the same for every engine
        options["digest"] = digest
    with _store(ctx) as s:
        progress = Progress(
            TextColumn("[bold]gate[/] {task.description:<9}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeElapsedColumn(),
            console=err,
            transient=True,
            disable=as_json or not err.is_terminal,
        )
        with progress:
            task = progress.add_task("read", total=1.0)

            def report(stage: str, fraction: float) -> None:
                progress.update(task, description=stage, completed=fraction)

            result = s.gate(
                manifest, purpose=purpose, out=out_dir, as_of=as_of, dataset_name=dataset_name,
                engine=engine, progress=report, **options,
            )  # fmt: skip
        data = result.to_dict()

        def text() -> None:
            out.print(
                f"dataset [bold]{result.name}[/] {result.dataset_id}"
                f"{' (already built: idempotency key)' if result.replayed else ''}",
                highlight=False,
            )
            out.print(
                f"  {result.input_items:,} items: [green]{result.allowed:,} allowed[/], "
                f"[red]{result.excluded:,} excluded[/]"
                + (f" in {result.seconds:.1f}s" if result.seconds else ""),
                highlight=False,
            )
            table = Table("reason", "items", box=None, padding=(0, 2))
            for reason, n in result.allowed_by_reason.items():
                table.add_row(f"[green]{reason}[/]", f"{n:,}")
            for reason, n in result.excluded_by_reason.items():
                table.add_row(f"[red]{reason}[/]", f"{n:,}")
            out.print(table)
            out.print(
                f"  purpose {result.purpose}, as of {result.as_of}, policy "
                f"{result.policy_version}, ledger #{result.ledger_seq}",
                highlight=False,
            )
            for name, path in result.paths.items():
                out.print(f"  {name}: {path}", highlight=False)

        _emit(data, as_json, text)


@gate_app.command("verify")
def gate_verify(
    ctx: typer.Context,
    directory: Annotated[Path, typer.Argument(help="A gate's output directory.")],
    no_store: Annotated[
        bool, typer.Option("--no-store", help="Check the files against report.json only.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Check an output directory against its report.json and the store's lineage record:
    counts, item-id digests, subject index. Exit 0 when everything matches, 1 otherwise."""
    from .verify import verify_output

    if no_store:
        try:
            report = verify_output(directory)
        except ConsentryError as exc:
            _fail(exc)
    else:
        with _store(ctx) as s:
            report = s.verify_dataset(directory)

    def text() -> None:
        for name, (ok, detail) in report.checks.items():
            mark = "[green]ok[/]  " if ok else "[bold red]FAIL[/]"
            out.print(f"{mark} {name}: {detail}", highlight=False)
        verdict = "[green]verified[/]" if report.ok else "[bold red]does not match[/]"
        out.print(f"{directory}: {verdict} (dataset {report.dataset_id})", highlight=False)

    _emit(report.to_dict(), as_json, text)
    raise typer.Exit(0 if report.ok else 1)


# -- datasets and models ----------------------------------------------------------------------


@datasets_app.command("list")
def datasets_list(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Option("--name", help="Only with this name.")] = None,
    purpose: Annotated[str | None, typer.Option("--purpose", help="Only for this purpose.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="At most this many.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Datasets the gate built, newest first."""
    with _store(ctx) as s:
        found = s.datasets(name=name, purpose=purpose, limit=limit)

        def text() -> None:
            # Plain columns, not a Rich table: an id cut to fit 80 columns could not be told
            # from the next one. `datasets show ID` has the rest.
            from ..texttable import aligned

            rows = [("id", "name", "purpose", "as of", "policy", "items", "models")]
            for d in found:
                rows.append(
                    (
                        d.id, d.name, d.purpose, d.as_of, d.policy_version or "-",
                        f"{d.output_items:,}/{d.input_items:,}",
                        ", ".join(m.name for m in d.models) or "-",
                    )
                )  # fmt: skip
            for line in aligned(rows, right={5}):
                out.print(line, markup=False, highlight=False, soft_wrap=True)

        _emit([d.to_dict() for d in found], as_json, text)


@datasets_app.command("show")
def datasets_show(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(metavar="ID", help="Dataset id (or name: the latest).")],
    as_json: JsonOpt = False,
) -> None:
    """One dataset: its lineage record and the models trained on it."""
    with _store(ctx) as s:
        d = s.dataset(ref)
        data = d.to_dict(record=True)

        def text() -> None:
            out.print(f"[bold]{d.name}[/] {d.id}", highlight=False)
            for key in ("purpose", "as_of", "policy_version", "ledger_seq", "engine",
                        "input_items", "output_items", "excluded_items", "subjects",
                        "created_at", "record_sha256"):  # fmt: skip
                out.print(f"  {key}: {data[key]}", highlight=False)
            counts = d.record.data["counts"]
            for reason, n in {**counts.get("allowed_by_reason", {}),
                              **counts["excluded_by_reason"]}.items():  # fmt: skip
                out.print(f"    {reason}: {n:,}", highlight=False)
            digests = d.record.data["digests"]
            out.print(f"  digests ({digests['method']}):", highlight=False)
            for key in ("input_sha256", "output_sha256"):
                out.print(f"    {key}: {digests[key]}", highlight=False)
            models = ", ".join(f"{m.name} ({m.id})" for m in d.models) or "none"
            out.print(f"  models: {models}", highlight=False)

        _emit(data, as_json, text)


@model_app.command("register")
def model_register(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The model's name.")],
    dataset: Annotated[
        list[str], typer.Option("--dataset", "-d", help="Dataset id it was trained on (repeat).")
    ],
    version: Annotated[str | None, typer.Option("--version", help="Model version.")] = None,
    meta: Annotated[
        list[str] | None, typer.Option("--meta", help="KEY=VALUE metadata (repeatable).")
    ] = None,
    mlflow_run: Annotated[
        str | None,
        typer.Option(
            "--mlflow-run",
            help="Link the model to this MLflow run (MLFLOW_TRACKING_URI): the run gets the "
            "model's tags and its datasets as training inputs (the [mlflow] extra).",
        ),
    ] = None,
    idempotency_key: IdemOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Record that model NAME was trained on these datasets."""
    metadata: dict[str, str] = {}
    for item in meta or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            _fail(InvalidInput(f"--meta {item!r} is not KEY=VALUE", field="meta"))
        metadata[key] = value
    with _store(ctx) as s:
        if mlflow_run is not None:
            from ..integrations import mlflow as ml

            try:
                ml.check_run(mlflow_run)  # before anything is recorded
            except ConsentryError as exc:
                _fail(exc)
            metadata["mlflow_run_id"] = mlflow_run
        model = s.register_model(
            name, dataset, version=version, metadata=metadata, idempotency_key=idempotency_key
        )
        if mlflow_run is not None:
            ml.link_model(s, model, mlflow_run)

        def text() -> None:
            out.print(
                f"model [bold]{model.name}[/] {model.id} trained on "
                f"{len(model.datasets)} dataset(s): {', '.join(model.datasets)}",
                highlight=False,
            )

        _emit(model.to_dict(), as_json, text)


@model_app.command("list")
def model_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Registered models."""
    with _store(ctx) as s:
        models = s.models()

        def text() -> None:
            table = Table("id", "name", "version", "created", "datasets")
            for m in models:
                table.add_row(m.id, m.name, m.version or "-", m.created_at, str(len(m.datasets)))
            out.print(table)

        _emit([m.to_dict() for m in models], as_json, text)


@model_app.command("show")
def model_show(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(metavar="ID", help="Model id (or name: the latest).")],
    as_json: JsonOpt = False,
) -> None:
    """One model and its datasets."""
    with _store(ctx) as s:
        m = s.model(ref)
        _emit(m.to_dict(), as_json, lambda: out.print_json(json.dumps(m.to_dict())))


# -- impact -----------------------------------------------------------------------------------


def impact(
    ctx: typer.Context,
    subject: Annotated[str, typer.Argument(help="The subject's id on the platform.")],
    as_json: JsonOpt = False,
) -> None:
    """Every dataset and model that used SUBJECT's items, and whether the subject's current
    choices still allow each (no: retrain or unlearn). Exit 1 when something needs action."""
    with _store(ctx) as s:
        result = s.impact(subject)
        data = result.to_dict()

        def text() -> None:
            if not result.datasets:
                out.print(f"{subject}: no dataset holds this subject's items", highlight=False)
                return
            for d in result.datasets:
                info = d.dataset
                out.print(
                    f"[bold]{info.name}[/] {info.id}: {info.purpose} as of {info.as_of}, "
                    f"policy {info.policy_version}, ledger #{info.ledger_seq}",
                    highlight=False,
                )
                parts = []
                for c in d.categories:
                    event = f", event #{c.event_seq}" if c.event_seq else ""
                    colour = "green" if c.allowed_now else "red"
                    note = "" if c.decided else " (not theirs to decide)"
                    parts.append(
                        f"{c.category} ({c.items} item{'' if c.items == 1 else 's'}): "
                        f"[{colour}]{c.reason_now}[/]{event}{note}"
                    )
                out.print("  " + "; ".join(parts), highlight=False)
                models = ", ".join(
                    f"{m.name} {m.version}" if m.version else m.name for m in info.models
                )
                if d.needs_action:
                    out.print(
                        "  [bold red]-> retrain or unlearn[/]"
                        + (f": dataset and models {models}" if models else ": dataset"),
                        highlight=False,
                    )
                else:
                    out.print(
                        "  [green]still allowed[/]" + (f" (models {models})" if models else ""),
                        highlight=False,
                    )
            s_ = data["summary"]
            out.print(
                f"{subject}: {s_['datasets_needing_action']} of {s_['datasets']} dataset(s) and "
                f"{s_['models_needing_action']} of {s_['models']} model(s) need retraining or "
                "unlearning",
                highlight=False,
            )

        _emit(data, as_json, text)
    raise typer.Exit(1 if result.affected_datasets else 0)


#: The commands ``consentry`` loads from here (see consentry.cli.LAZY_COMMANDS).
COMMANDS: dict[str, Any] = {
    "gate": gate_app,
    "datasets": datasets_app,
    "model": model_app,
    "impact": impact,
}
