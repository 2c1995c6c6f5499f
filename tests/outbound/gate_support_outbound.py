"""Gate a one-item dataset for a subject (the impact tests need one)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from consentry import Store


def gate_one(store: Store, out: Path, subject: str) -> str:
    manifest = pa.table(
        {
            "item_id": ["i1"],
            "subject_ids": [[subject]],
            "category": ["content.audio"],
            "labels": [[]],
        }
    )
    result = store.gate(manifest, purpose="ai.training", out=out)
    assert result.dataset_id is not None
    return str(result.dataset_id)
