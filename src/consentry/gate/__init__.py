"""The training-data gate: bulk decisions over a manifest, lineage, and withdrawal impact.

::

    result = store.gate("manifest.parquet", purpose="ai.training", out="datasets/run-42")
    result.allowed, result.excluded_by_reason, result.dataset_id

The DuckDB engine (:mod:`consentry.gate.duck`) runs on one machine; the Spark engine
(:mod:`consentry.gate.spark`) beyond it. Both answer every item exactly as
:meth:`consentry.Store.check` would. See ``docs/gate.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInput
from .decisions import REASONS, SOURCE_OPT_OUT
from .manifest import read_manifest, write_manifest
from .result import GateResult, LineageRecord
from .verify import VerifyReport, verify_output

if TYPE_CHECKING:
    from ..store import Store

ENGINES = ("duckdb", "spark")


def run_gate(
    store: Store,
    manifest: Any,
    *,
    purpose: str,
    out: str | Path,
    engine: str = "duckdb",
    **options: Any,
) -> GateResult:
    """Run the gate with the named engine (see :meth:`consentry.Store.gate`)."""
    if engine == "duckdb":
        from .duck import gate

        return gate(store, manifest, purpose=purpose, out=Path(out), **options)
    if engine == "spark":
        from .spark import gate_to_directory

        return gate_to_directory(store, manifest, purpose=purpose, out=Path(out), **options)
    raise InvalidInput(f"unknown engine {engine!r}", hint="use duckdb or spark", field="engine")


__all__ = [
    "ENGINES",
    "REASONS",
    "SOURCE_OPT_OUT",
    "GateResult",
    "LineageRecord",
    "VerifyReport",
    "read_manifest",
    "run_gate",
    "verify_output",
    "write_manifest",
]
