"""Imports: consent rows per second brought in by ``consentry import`` on SQLite.

    .venv/bin/python benchmarks/import_consents.py
    .venv/bin/python benchmarks/import_consents.py --rows 200000 --batch-size 10000

A CSV file of ``--rows`` consent choices (one subject each, one to three categories, a
``captured_at`` spread over the year before, a ``source_id`` each) is imported into a fresh
SQLite store with the meetings policy, exactly as ``consentry import FILE`` does it
(:meth:`consentry.Store.import_consents`): the whole file read and checked first, then written
in transactions of ``--batch-size`` rows, every row a hash-chained, MAC'd event with its
current-state rows, durable when the call returns. The figure is rows over the wall time of
the whole call (reading, checking and writing); the process's CPU time is reported too, since
the machine is shared. A second import of the same file (every row already imported) is
timed as well.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common
from _common import MEETINGS, NOW, Row, print_table

TARGET = 20_000
CATEGORIES = ("content.audio", "content.video", "content.chat", "content.transcript")
STATUSES = ("given", "given", "given", "refused", "withdrawn")


def write_file(path: Path, rows: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    start = NOW - timedelta(days=365)
    with path.open("w", encoding="utf-8") as out:
        out.write("subject,purpose,categories,status,captured_at,method,notice_version,source_id\n")
        for i in range(rows):
            cats = ";".join(sorted(rng.sample(CATEGORIES, rng.randint(1, 3))))
            when = start + timedelta(seconds=rng.randrange(365 * 86_400))
            out.write(
                f"s{i:08d},ai.training,{cats},{rng.choice(STATUSES)},"
                f"{when.strftime('%Y-%m-%dT%H:%M:%SZ')},web-banner,ot-2023-4,onetrust-{i}\n"
            )


def _store_url(postgres: str | None, folder: Path, run: int) -> tuple[str, Any]:
    """A fresh store's URL, and what removes it afterwards (a PostgreSQL schema)."""
    if postgres is None:
        return f"sqlite:///{folder}/import{run}.db", lambda: None
    import uuid

    import psycopg

    schema = f"bench_import_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")

    def drop() -> None:
        with psycopg.connect(postgres, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")

    sep = "&" if "?" in postgres else "?"
    return f"{postgres}{sep}options=-csearch_path%3D{schema}", drop


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=5_000)
    parser.add_argument("--runs", type=int, default=3, help="imports, each into a fresh store")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="import into PostgreSQL at URL instead (each run in a fresh schema, dropped after)",
    )
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=0,
        metavar="SECONDS",
        help="first wait up to this long for the load average to drop below 1",
    )
    args = parser.parse_args(argv)
    _common.wait_idle(args.wait_idle)
    from consentry import Store

    results: dict[str, Any] = {
        "command": "benchmarks/import_consents.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": _common.machine(),
        "load_average_start": os.getloadavg(),
        "rows": args.rows,
        "batch_size": args.batch_size,
        "runs": [],
    }
    with tempfile.TemporaryDirectory(dir=_common.OUT if _common.OUT.exists() else None) as tmp:
        file = Path(tmp) / "consents.csv"
        write_file(file, args.rows)
        for run in range(args.runs):
            url, drop = _store_url(args.postgres, Path(tmp), run)
            store = Store(url, clock=_common.Clock(NOW))
            store.init(policies=[MEETINGS])
            wall, cpu = time.perf_counter(), time.process_time()
            report = store.import_consents(file, batch_size=args.batch_size, source="onetrust")
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            assert report.recorded == args.rows, report
            again_wall = time.perf_counter()
            again = store.import_consents(file, batch_size=args.batch_size)
            again_wall = time.perf_counter() - again_wall
            assert again.already == args.rows and again.recorded == 0
            store.close()
            drop()
            figures = {
                "rows_per_s": args.rows / wall,
                "rows_per_cpu_s": args.rows / cpu,
                "wall_s": wall,
                "cpu_s": cpu,
                "reimport_rows_per_s": args.rows / again_wall,
                "load_average": os.getloadavg(),
            }
            results["runs"].append(figures)
            print(
                f"run {run + 1}: {figures['rows_per_s']:,.0f} rows/s "
                f"({figures['rows_per_cpu_s']:,.0f} per CPU second), re-import "
                f"{figures['reimport_rows_per_s']:,.0f} rows/s, load "
                + " ".join(f"{x:.2f}" for x in figures["load_average"])
            )
    best = max(r["rows_per_s"] for r in results["runs"])
    median = sorted(r["rows_per_s"] for r in results["runs"])[len(results["runs"]) // 2]
    cpu_rate = max(r["rows_per_cpu_s"] for r in results["runs"])
    backend = "postgresql" if args.postgres else "sqlite"
    rows = [
        Row(f"{backend}: import, median of {args.runs}", f"{median:,.0f}/s", f"≥ {TARGET:,}/s",
            median >= TARGET),
        Row(f"{backend}: import, best of {args.runs}", f"{best:,.0f}/s"),
        Row(f"{backend}: import, rows per CPU second (best)", f"{cpu_rate:,.0f}/s"),
        Row(
            f"{backend}: re-import (every row already there), median",
            f"{sorted(r['reimport_rows_per_s'] for r in results['runs'])[args.runs // 2]:,.0f}/s",
        ),
    ]  # fmt: skip
    results["load_average_end"] = os.getloadavg()
    print_table(f"consent rows imported ({args.rows:,} rows, {os.cpu_count()} cores)", rows)
    print(
        "\nload average at start "
        + " ".join(f"{x:.2f}" for x in results["load_average_start"])
        + ", at end "
        + " ".join(f"{x:.2f}" for x in results["load_average_end"])
    )
    results["table"] = [r.__dict__ | {"verdict": r.verdict} for r in rows]
    out = args.json or _common.OUT / "import-consents.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"figures written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
