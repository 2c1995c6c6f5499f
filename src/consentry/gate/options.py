"""A gate run's options: one validated dataclass for every engine.

``Store.gate(..., **options)`` and ``consentry gate`` build a :class:`GateOptions` with
:meth:`GateOptions.parse`, which refuses what no engine takes (a misspelt option) and what the
chosen engine does not take (``threads`` with Spark), so that no option is silently dropped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InvalidInput
from . import manifest as mf
from .result import digest_method

Progress = Callable[[str, float], None]

#: The digest both engines compute unless told otherwise: ``sorted`` (SHA-256 of the sorted
#: ids, a commitment to the set). ``multiset`` is the one-pass checksum. A recorded dataset
#: names its method, so ``gate verify`` checks it whichever default made it.
DEFAULT_DIGEST = "sorted"

#: Options one engine only takes, and that engine.
ENGINE_ONLY: Mapping[str, str] = {
    "threads": "duckdb",
    "memory_limit": "duckdb",
    "spark": "spark",
    "master": "spark",
    "broadcast_rows": "spark",
}

_HOW = {
    "threads": "give Spark its cores through the master (e.g. master='local[4]')",
    "memory_limit": "size Spark's memory with spark.driver.memory / spark.executor.memory",
    "spark": "it names a SparkSession; leave it out, or use engine='spark'",
    "master": "it names a Spark master; leave it out, or use engine='spark'",
    "broadcast_rows": "it tunes the Spark join; leave it out, or use engine='spark'",
}


@dataclass(frozen=True)
class GateOptions:
    """Everything a gate run is told, checked once for whichever engine runs it."""

    purpose: str
    out: Path
    engine: str = "duckdb"
    as_of: Any = None
    dataset_name: str | None = None
    #: Output format: parquet, csv, jsonl or arrow (the DuckDB engine only).
    format: str = "parquet"
    overwrite: bool = False
    #: Do-not-train signals: a signals file, or the opted-out URLs themselves.
    signals: Any = None
    #: ``sorted`` (``sorted-sha256-v1``) or ``multiset`` (``multiset-md5-v1``).
    digest: str = DEFAULT_DIGEST
    input_format: str | None = None
    progress: Progress | None = None
    idempotency_key: str | None = None
    #: DuckDB: threads and memory limit (default: every core, ``$CONSENTRY_GATE_MEMORY_LIMIT``).
    threads: int | None = None
    memory_limit: str | None = None
    #: Spark: the session (default: the active one, see ``spark.get_spark``), the master
    #: to start one on, and the largest decision table broadcast to executors.
    spark: Any = None
    master: str | None = None
    broadcast_rows: int | None = None

    @property
    def method(self) -> str:
        """The digest method's full name (``sorted-sha256-v1``, ``multiset-md5-v1``)."""
        return digest_method(self.digest)

    @classmethod
    def parse(cls, *, engine: str, formats: tuple[str, ...], **given: Any) -> GateOptions:
        """Options from keyword arguments, refusing any the engine would not use.

        ``formats`` are the output formats the engine writes."""
        names = {f.name for f in dataclasses.fields(cls)} - {"engine"}
        for name in given:
            if name not in names:
                raise InvalidInput(
                    f"unknown gate option {name!r}",
                    hint=f"the options are {', '.join(sorted(names))}",
                    field=name,
                )
        for name, only in ENGINE_ONLY.items():
            if given.get(name) is not None and only != engine:
                raise InvalidInput(
                    f"the {engine} engine does not take {name!r} (a {only} option)",
                    hint=_HOW[name],
                    field=name,
                )
        opts = cls(engine=engine, **given)
        fmt = mf.output_format(opts.format)
        if fmt not in formats:
            raise InvalidInput(
                f"the {engine} engine writes {', '.join(formats)}, not {fmt}",
                hint=f"pass one of {', '.join(formats)}",
                field="format",
            )
        opts.method  # noqa: B018 - validates the digest's name
        return dataclasses.replace(opts, out=Path(opts.out), format=fmt)


__all__ = ["DEFAULT_DIGEST", "ENGINE_ONLY", "GateOptions", "Progress"]
