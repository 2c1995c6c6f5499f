"""Ledger writes: durable consent writes per second from one client, SQLite and PostgreSQL.

    .venv/bin/python benchmarks/ledger_writes.py
    .venv/bin/python benchmarks/ledger_writes.py --writes 5000 --threads 8,16,32
    .venv/bin/python benchmarks/ledger_writes.py --no-postgres

Every write is ``Store.give_consent(...)`` for two categories with an idempotency key, as the
API makes it: one event, hash-chained, with its two current-state rows, durable when the call
returns (SQLite in WAL mode with ``synchronous=FULL``; PostgreSQL with ``fsync`` and
``synchronous_commit`` on).

Two shapes of one client:

* sequential: one thread, one call after the other, each its own transaction, so each waits
  for its own flush to disk;
* concurrent: one process (one ``Store``) with several threads (16 and 32 by default)
  writing at once, as a web backend does; the ledger's group commit puts the writes that
  arrive while a commit is being flushed into the next transaction, one flush for all of them
  (each call still returns only once its own event is durable).

For scale, the raw commit rate of the same database (one-row insert and commit in a loop
through the bare driver) is measured too: no sequential writer can beat it.

PostgreSQL runs in a database of its own (``consentry_bench``, created and dropped here) on
the server of ``--postgres`` (default ``postgresql://postgres@127.0.0.1:5432/test``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common
from _common import MEETINGS, Row, print_table

TARGETS = {"sqlite": 2000, "postgresql": 1000}
PG_DATABASE = "consentry_bench"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writes", type=int, default=3000, help="writes per run")
    parser.add_argument(
        "--threads",
        default="16,32",
        help="thread counts of the concurrent client (comma-separated)",
    )
    parser.add_argument("--runs", type=int, default=3, help="runs of each measurement")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=0,
        metavar="SECONDS",
        help="first wait up to this long for the load average to drop below 1",
    )
    args = parser.parse_args(argv)
    threads = [int(t) for t in args.threads.split(",")]
    _common.wait_idle(args.wait_idle)

    results: dict[str, Any] = {
        "command": "benchmarks/ledger_writes.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": _common.machine(),
        "load_average_start": os.getloadavg(),
        "writes": args.writes,
        "threads": threads,
        "runs": args.runs,
    }
    backends: list[tuple[str, Callable[[], Any]]] = [("sqlite", sqlite_database)]
    if not args.no_postgres:
        backends.append(("postgresql", lambda: postgres_database(args.postgres)))
    rows: list[Row] = []
    for name, database in backends:
        print(f"{name}:")
        with database() as (url, raw_commit_rate):
            floor = raw_commit_rate()
            print(f"  raw driver commits (one-row insert, commit): {floor:,.0f}/s")
            figures = measure(url, args.writes, threads, args.runs)
        figures["raw_commits_per_s"] = floor
        results[name] = figures
        target = TARGETS[name]
        seq = figures["sequential"]
        rows.append(
            Row(
                f"{name}: sequential (1 thread), median of {args.runs}",
                f"{seq['median']:,.0f}/s",
                f"≥ {target:,}/s",
                seq["median"] >= target,
            )
        )
        for n in threads:
            conc = figures[f"concurrent_{n}"]
            rows.append(
                Row(
                    f"{name}: concurrent ({n} threads, {conc['events_per_transaction']:.1f} "
                    f"per txn), median of {args.runs}",
                    f"{conc['median']:,.0f}/s",
                    f"≥ {target:,}/s",
                    conc["median"] >= target,
                )
            )
        rows.append(Row(f"{name}: raw driver commits, one row each", f"{floor:,.0f}/s"))
    results["load_average_end"] = os.getloadavg()
    print_table(f"durable consent writes from one client ({os.cpu_count()} cores)", rows)
    print(
        "\nload average at start "
        + " ".join(f"{x:.2f}" for x in results["load_average_start"])
        + ", at end "
        + " ".join(f"{x:.2f}" for x in results["load_average_end"])
    )
    results["table"] = [r.__dict__ | {"verdict": r.verdict} for r in rows]
    out = args.json or _common.OUT / "ledger-writes.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"figures written to {out}")
    return 0


# -- databases ---------------------------------------------------------------------------------


@contextmanager
def sqlite_database() -> Iterator[tuple[str, Callable[[], float]]]:
    _common.OUT.mkdir(parents=True, exist_ok=True)
    path = _common.OUT / "ledger-writes.db"

    def clean() -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)

    def raw() -> float:
        import sqlite3

        raw_path = _common.OUT / "ledger-writes-raw.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{raw_path}{suffix}").unlink(missing_ok=True)
        conn = sqlite3.connect(raw_path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")
        n = 1000
        started = time.perf_counter()
        for _ in range(n):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO t (body) VALUES (?)", ("x" * 300,))
            conn.execute("COMMIT")
        rate = n / (time.perf_counter() - started)
        conn.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{raw_path}{suffix}").unlink(missing_ok=True)
        return rate

    clean()
    try:
        yield f"sqlite:///{path}", raw
    finally:
        clean()


@contextmanager
def postgres_database(server_url: str) -> Iterator[tuple[str, Callable[[], float]]]:
    """A database of our own on the server, dropped afterwards (the tests' one is untouched)."""
    import psycopg

    admin = psycopg.connect(server_url, autocommit=True)
    admin.execute(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)")
    admin.execute(f"CREATE DATABASE {PG_DATABASE}")
    base, _, _ = server_url.rpartition("/")
    url = f"{base}/{PG_DATABASE}"
    settings = {
        k: admin.execute(f"SHOW {k}").fetchone()[0]  # type: ignore[index]
        for k in ("fsync", "synchronous_commit", "wal_sync_method")
    }
    print("  server: " + ", ".join(f"{k}={v}" for k, v in settings.items()))

    def raw() -> float:
        with psycopg.connect(url) as conn:
            conn.execute("CREATE TABLE raw_commits (id BIGSERIAL PRIMARY KEY, body TEXT)")
            conn.commit()
            n = 1000
            started = time.perf_counter()
            for _ in range(n):
                conn.execute("INSERT INTO raw_commits (body) VALUES (%s)", ("x" * 300,))
                conn.commit()
            rate = n / (time.perf_counter() - started)
            conn.execute("DROP TABLE raw_commits")
            conn.commit()
        return rate

    try:
        yield url, raw
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)")
        admin.close()


# -- measuring -------------------------------------------------------------------------------


def measure(url: str, writes: int, threads: Sequence[int], runs: int) -> dict[str, Any]:
    from consentry import Store

    store = Store(url)
    store.init(policies=[MEETINGS])
    check_durable(store)
    store.give_consent("warm-up", "ai.training", ["content.audio"], idempotency_key="warm-up")
    out: dict[str, Any] = {}
    shapes = [("sequential", 1)] + [(f"concurrent_{n}", n) for n in threads]
    for shape, n_threads in shapes:
        rates, per_txn = [], []
        for run in range(runs):
            before = count_transactions(store)
            rate = write(store, f"{shape}{run}", writes, n_threads)
            transactions = count_transactions(store) - before
            rates.append(rate)
            per_txn.append(writes / transactions if transactions else float("nan"))
        out[shape] = {
            "threads": n_threads,
            "runs": rates,
            "median": statistics.median(rates),
            "best": max(rates),
            "events_per_transaction": statistics.median(per_txn),
        }
        print(
            f"  {shape:<13} ({n_threads:>2} thread{'s' if n_threads > 1 else ' '}): "
            + ", ".join(f"{r:,.0f}/s" for r in rates)
            + f"  ({statistics.median(per_txn):.1f} events per transaction)"
        )
    verify(store, 1 + len(shapes) * runs * writes)
    store.close()
    return out


def write(store: Any, tag: str, writes: int, n_threads: int) -> float:
    """``writes`` consent writes from ``n_threads`` threads; writes per second."""
    errors: list[BaseException] = []
    start = threading.Barrier(n_threads + 1)

    def work(t: int) -> None:
        try:
            start.wait()
            for i in range(t, writes, n_threads):
                store.give_consent(
                    f"{tag}-u{i}",
                    "ai.training",
                    ["content.audio", "content.video"],
                    idempotency_key=f"{tag}-{i}",
                )
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
    for w in workers:
        w.start()
    start.wait()
    started = time.perf_counter()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    return writes / elapsed


def count_transactions(store: Any) -> int:
    """Transactions the ledger has committed so far (counted by wrapping its commit)."""
    ledger = store.ledger
    if not hasattr(ledger, "_bench_transactions"):
        ledger._bench_transactions = 0
        inner = ledger._append_groups

        def counted(*args: Any, **kwargs: Any) -> Any:
            result = inner(*args, **kwargs)
            ledger._bench_transactions += 1
            return result

        ledger._append_groups = counted
    return int(ledger._bench_transactions)


def check_durable(store: Any) -> None:
    """Refuse to measure a configuration that would not be durable."""
    with store.ledger.engine.connect() as conn:
        if store.ledger.backend == "sqlite":
            mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
            sync = conn.exec_driver_sql("PRAGMA synchronous").scalar()
            print(f"  sqlite: journal_mode={mode}, synchronous={sync} (2 = FULL)")
            assert mode == "wal" and sync == 2, (mode, sync)
        else:
            fsync = conn.exec_driver_sql("SHOW fsync").scalar()
            commit = conn.exec_driver_sql("SHOW synchronous_commit").scalar()
            assert fsync == "on" and commit == "on", (fsync, commit)


def verify(store: Any, expected_writes: int) -> None:
    """The chain is intact, every write is there once, a retried write returns the same event."""
    result = store.verify()
    assert result.ok, result.problem
    events = store.ledger.count()
    # Before the writes: the store's keys (when the store records them) and its policies.
    policies = len(store.policies()) + sum(
        1 for e in store.ledger.events(upto_seq=3) if e.kind == "keys.registered"
    )
    assert events == expected_writes + policies, (events, expected_writes, policies)
    first = store.give_consent(
        "sequential0-u0", "ai.training", ["content.audio", "content.video"],
        idempotency_key="sequential0-0",
    )  # fmt: skip
    assert first.seq == policies + 2, first.seq  # after the policies and the warm-up write
    print(f"  verified: chain intact over {result.checked:,} events, retries idempotent")


if __name__ == "__main__":
    raise SystemExit(main())
