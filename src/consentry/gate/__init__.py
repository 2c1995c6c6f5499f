"""The training-data gate: bulk decisions over a manifest, lineage, and withdrawal impact.

::

    result = store.gate("manifest.parquet", purpose="ai.training", out="datasets/run-42")
    result.allowed, result.excluded_by_reason, result.dataset_id

A run (:class:`~consentry.gate.run.GateRun`) is the same whichever engine does the heavy
lifting: the DuckDB engine (:mod:`consentry.gate.duck`) runs on one machine, the Spark engine
(:mod:`consentry.gate.spark`) beyond it. Both answer every item exactly as
:meth:`consentry.Store.check` would. See ``docs/gate.md``.
"""

from __future__ import annotations

from .decisions import REASONS, SOURCE_OPT_OUT
from .manifest import read_manifest, write_manifest
from .result import GateResult, LineageRecord
from .run import ENGINES, GateRun, run_gate
from .verify import VerifyReport, verify_output

__all__ = [
    "ENGINES",
    "REASONS",
    "SOURCE_OPT_OUT",
    "GateResult",
    "GateRun",
    "LineageRecord",
    "VerifyReport",
    "read_manifest",
    "run_gate",
    "verify_output",
    "write_manifest",
]
