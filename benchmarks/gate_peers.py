"""The per-category shape of ``benchmarks/gate.py --shape per-category``, and its peers.

The shape (issue 13): consents recorded per category across five content categories (each
subject, for each category alone: 30% gave consent to ``ai.training``, 5% refused), every
subject a member of one of 10,000 accounts; manifests with 10% multi-subject items (2-4
subjects), 1% carrying the protected ``health`` label, 0.2% naming a subject the store has
never seen.

In one process, alternating, each round: the gate (``Store.gate``, DuckDB engine, snapshot
already loaded), then peers that compute the same two outputs from the same facts (the
store's consent records under the policy in force, as a ``(subject, category)`` table of
given consents) without digests or lineage: a hand-written DuckDB semi/anti-join, Polars,
pandas, and a DuckDB ``COPY`` of the manifest (the I/O floor, deciding nothing). Every peer's
allowed item ids must equal the gate's.
"""

from __future__ import annotations

import random
import shutil
import time
from pathlib import Path
from typing import Any

PURPOSE = "ai.training"
CATEGORIES = ["content.audio", "content.video", "content.chat", "content.transcript",
              "content.recording"]  # fmt: skip
PROTECTED = "health"
ACCOUNTS = 10_000


def subject(i: int) -> str:
    return f"u{i:07d}"


def build_store(path: Path, subjects: int, meetings: Path) -> str:
    """A store whose consents are recorded per category (reused when already complete)."""
    from consentry import Store
    from consentry.ledger.events import Draft, Kind

    url = f"sqlite:///{path}"
    done = path.with_suffix(".done")
    if done.exists() and done.read_text() == str(subjects):
        return url
    for p in path.parent.glob(path.name + "*"):
        p.unlink()
    started = time.perf_counter()
    store = Store(url)
    store.init(policies=[meetings])
    version = store.policy().version
    rng = random.Random(42)
    batch: list[Draft] = []
    for i in range(subjects):
        s = subject(i)
        batch.append(Draft(kind=Kind.MEMBER_ADDED, subject=s, account=f"acct{i % ACCOUNTS:05d}"))
        for category in CATEGORIES:
            r = rng.random()
            kind = Kind.CONSENT_GIVEN if r < 0.30 else Kind.CONSENT_REFUSED if r < 0.35 else None
            if kind is None:
                continue
            batch.append(
                Draft(
                    kind=kind,
                    actor=s,
                    subject=s,
                    purpose=PURPOSE,
                    categories=(category,),
                    policy_version=version,
                    notice_version=version,
                    language="en",
                    method="benchmark",
                )
            )
        if len(batch) >= 20_000:
            store.append(batch)
            batch = []
    if batch:
        store.append(batch)
    store.close()
    done.write_text(str(subjects))
    print(f"  store (per category): {subjects:,} subjects in "
          f"{time.perf_counter() - started:.0f}s", flush=True)  # fmt: skip
    return url


def generate_manifest(path: Path, rows: int, subjects: int) -> None:
    """The per-category manifest, streamed to Parquet by DuckDB."""
    import duckdb

    if path.exists():
        return
    tmp = path.with_suffix(".tmp")
    cats = "[" + ", ".join(f"'{c}'" for c in CATEGORIES) + "]"
    con = duckdb.connect()
    con.execute("SET threads=2; SET preserve_insertion_order=false; SET memory_limit='2GB'")

    def sid(seed: int) -> str:
        return f"'u' || lpad((hash(i, {seed}) % {subjects})::VARCHAR, 7, '0')"

    # 0.2% of items name a subject the store has never seen (as their first subject).
    first = f"CASE WHEN hash(i, 10) % 1000 < 2 THEN 'x' || i::VARCHAR ELSE {sid(2)} END"
    con.execute(
        f"""
        COPY (
            SELECT
                'item-' || i::VARCHAR AS item_id,
                CASE WHEN hash(i, 1) % 10 = 0
                     THEN [{first}, {sid(3)}, {sid(4)}, {sid(5)}][1:2 + (hash(i, 6) % 3)::INT]
                     ELSE [{first}] END AS subject_ids,
                {cats}[1 + (hash(i, 7) % 5)::INT] AS category,
                CASE WHEN hash(i, 8) % 100 = 0 THEN ['{PROTECTED}'] ELSE []::VARCHAR[] END
                    AS labels,
                'https://media.example.com/r/' || i::VARCHAR AS source_url,
                (hash(i, 9) % 3600)::DOUBLE AS duration_s
            FROM range({rows}) t(i)
        ) TO '{tmp}' (FORMAT parquet, ROW_GROUP_SIZE 1048576)
        """
    ).fetchall()
    con.close()
    tmp.rename(path)


def facts(store: Any) -> Any:
    """The given consents in force, as pyarrow ``(subject, category)``: what the peers join
    (the same records the gate decides from; the shape has no account settings or
    objections)."""
    import pyarrow as pa

    from consentry.state import CONSENT_CODES

    state = store.state()
    wanted = {state.pairs.get((PURPOSE, c)): c for c in CATEGORIES}
    given = CONSENT_CODES["given"]
    subjects: list[str] = []
    categories: list[str] = []
    for s, records in state.consents.items():
        for pair, packed in records.items():
            category = wanted.get(pair)
            # A record's status is its low two bits (consentry.state.pack).
            if category is not None and packed & 3 == given:
                subjects.append(s)
                categories.append(category)
    return pa.table({"subject": subjects, "category": categories})


def duckdb_join(manifest: str, consents: Any, out: Path) -> int:
    """Hand-written DuckDB: the items with a subject lacking consent (anti-join), then the
    manifest split by a semi/anti-join on them."""
    import duckdb

    out.mkdir(parents=True)
    con = duckdb.connect()
    con.execute("SET threads=2; SET preserve_insertion_order=false; SET memory_limit='3GB'")
    con.register("consents", consents)
    con.execute(f"CREATE VIEW m AS SELECT * FROM read_parquet('{manifest}')")
    con.execute(
        f"""
        CREATE TEMP TABLE bad AS
        SELECT DISTINCT item_id FROM (
            SELECT item_id, category, unnest(subject_ids) AS subject FROM m
        ) u ANTI JOIN consents c USING (subject, category)
        UNION SELECT item_id FROM m WHERE list_contains(labels, '{PROTECTED}')
        """
    )
    ((n,),) = con.execute(
        f"COPY (SELECT * FROM m ANTI JOIN bad USING (item_id)) TO '{out}/allowed.parquet' "
        "(FORMAT parquet)"
    ).fetchall()
    con.execute(
        f"COPY (SELECT item_id FROM m SEMI JOIN bad USING (item_id)) TO '{out}/excluded.parquet' "
        "(FORMAT parquet)"
    )
    con.close()
    return int(n)


def polars_join(manifest: str, consents: Any, out: Path) -> int:
    import polars as pl

    out.mkdir(parents=True)
    m = pl.scan_parquet(manifest)
    c = pl.from_arrow(consents).lazy()
    units = m.select("item_id", "category", pl.col("subject_ids").alias("subject")).explode(
        "subject"
    )
    lacking = units.join(c, on=["subject", "category"], how="anti").select("item_id")
    labelled = m.filter(pl.col("labels").list.contains(PROTECTED)).select("item_id")
    bad = pl.concat([lacking, labelled]).unique()
    allowed = m.join(bad, on="item_id", how="anti").collect()
    allowed.write_parquet(out / "allowed.parquet")
    m.join(bad, on="item_id", how="semi").select("item_id").collect().write_parquet(
        out / "excluded.parquet"
    )
    return allowed.height


def pandas_join(manifest: str, consents: Any, out: Path) -> int:
    import pandas as pd

    out.mkdir(parents=True)
    df = pd.read_parquet(manifest)
    c = consents.to_pandas()
    c["ok"] = True
    units = df[["item_id", "category", "subject_ids"]].explode("subject_ids")
    units = units.merge(
        c, left_on=["subject_ids", "category"], right_on=["subject", "category"], how="left"
    )
    bad = set(units.loc[units["ok"].isna(), "item_id"])
    bad |= set(df.loc[df["labels"].map(lambda x: PROTECTED in x), "item_id"])
    hit = df["item_id"].isin(bad)
    df[~hit].to_parquet(out / "allowed.parquet", index=False)
    df.loc[hit, ["item_id"]].to_parquet(out / "excluded.parquet", index=False)
    return int((~hit).sum())


def duckdb_copy(manifest: str, out: Path) -> int:
    import duckdb

    out.mkdir(parents=True)
    con = duckdb.connect()
    con.execute("SET threads=2; SET preserve_insertion_order=false; SET memory_limit='3GB'")
    ((n,),) = con.execute(
        f"COPY (SELECT * FROM read_parquet('{manifest}')) TO '{out}/copy.parquet' (FORMAT parquet)"
    ).fetchall()
    return int(n)


def allowed_ids(path: Path) -> Any:
    """The sorted allowed item ids of an output (one file or a folder of them)."""
    import duckdb

    pattern = f"{path}/*.parquet" if path.is_dir() else str(path)
    rows = duckdb.sql(f"SELECT item_id FROM read_parquet('{pattern}') ORDER BY item_id")
    return rows.fetchnumpy()["item_id"]


def run_shape(store: Any, manifest: Path, work: Path, rounds: int, pandas_max: int,
              rows: int) -> dict[str, Any]:  # fmt: skip
    """Alternating rounds of the gate and its peers in this process; wall and CPU seconds,
    best of ``rounds``; the allowed sets compared."""
    import numpy as np

    started = time.perf_counter()
    consents = facts(store)
    facts_s = time.perf_counter() - started

    def gate(out: Path) -> int:
        r = store.gate(str(manifest), purpose=PURPOSE, out=str(out), threads=2,
                       memory_limit="3GB")  # fmt: skip
        timings["gate"].append(dict(r.extra.get("cpu", {})))
        return int(r.allowed)

    timings: dict[str, list[Any]] = {"gate": []}
    runs: dict[str, Any] = {
        "gate": gate,
        "duckdb-join": lambda out: duckdb_join(str(manifest), consents, out),
        "polars": lambda out: polars_join(str(manifest), consents, out),
        "duckdb-copy": lambda out: duckdb_copy(str(manifest), out),
    }
    if rows <= pandas_max:
        runs["pandas"] = lambda out: pandas_join(str(manifest), consents, out)
    figures: dict[str, dict[str, list[float]]] = {k: {"wall": [], "cpu": []} for k in runs}
    allowed: dict[str, int] = {}
    reference = None
    for r in range(rounds):
        for name, fn in runs.items():
            out = work / f"shape-{name}"
            if out.exists():
                shutil.rmtree(out)
            w0, c0 = time.perf_counter(), time.process_time()
            allowed[name] = fn(out)
            figures[name]["wall"].append(time.perf_counter() - w0)
            figures[name]["cpu"].append(time.process_time() - c0)
            if r == 0 and name != "duckdb-copy":
                ids = allowed_ids(out / "allowed.parquet")
                if reference is None:
                    reference = ids
                elif not np.array_equal(ids, reference):
                    raise AssertionError(f"{name}'s allowed set differs from the gate's")
            shutil.rmtree(out)
    return {"facts_s": facts_s, "allowed": allowed, "figures": figures,
            "gate_cpu_stages": timings["gate"], "allowed_sets_identical": True}  # fmt: skip
