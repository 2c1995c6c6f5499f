"""OpenLineage run events (spec 2-0-2, through ``openlineage-python``) for gate runs and
model registrations, so that Marquez, DataHub and the like show consentry's datasets.

A gate run is a job ``consentry.gate.<dataset name>`` whose run id is the dataset's id: a
``START`` event when it begins, then ``COMPLETE`` (or ``FAIL``, with an ``errorMessage``
facet). Its input is the manifest, its outputs the ``allowed`` and ``excluded`` files, each
with a schema facet (read from the Parquet file), row-count statistics and a dataset-version
facet holding the item-id digest of the lineage record. The run carries a custom ``consentry``
facet: purpose, ``as_of``, policy version, ledger seq and hash, counts per reason and the
digests (schema: docs/schemas/ConsentryRunFacet.json). ``model register`` emits a run of job
``consentry.model.<name>`` (run id = the model's id) whose inputs are its datasets' allowed
files and whose output is the model.

Off by default. On when ``CONSENTRY_OPENLINEAGE=on``, or when the client's own settings are
there (``OPENLINEAGE_URL``, ``OPENLINEAGE_CONFIG``, ``OPENLINEAGE__TRANSPORT__TYPE``) and
``CONSENTRY_OPENLINEAGE`` is not ``off``; the transport is whatever those settings say (HTTP,
a file, the console, Kafka...), exactly as for any OpenLineage client. The job namespace is
``OPENLINEAGE_NAMESPACE`` (default ``consentry``). A transport that fails is logged and never
fails the gate: lineage is reported, not transacted.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..gate.result import GateResult
    from ..gate.run import GateRun
    from ..lineage import ModelInfo
    from ..store import Store

log = logging.getLogger("consentry.openlineage")

SWITCH = "CONSENTRY_OPENLINEAGE"
PRODUCER = "https://github.com/consentry/consentry"
FACET_SCHEMA = (
    "https://github.com/consentry/consentry/blob/main/docs/schemas/ConsentryRunFacet.json"
    "#/$defs/ConsentryRunFacet"
)
_CLIENT_SETTINGS = ("OPENLINEAGE_URL", "OPENLINEAGE_CONFIG", "OPENLINEAGE__TRANSPORT__TYPE")


def enabled(environ: Mapping[str, str] | None = None) -> bool:
    """Whether to emit (see the module docstring)."""
    env = os.environ if environ is None else environ
    switch = (env.get(SWITCH) or "").strip().lower()
    if switch in ("on", "true", "1", "yes"):
        return True
    if switch in ("off", "false", "0", "no"):
        return False
    return any(env.get(name) for name in _CLIENT_SETTINGS)


def namespace() -> str:
    return os.environ.get("OPENLINEAGE_NAMESPACE") or "consentry"


def _facet_class() -> Any:
    """The ``consentry`` run facet, built on the client's own ``RunFacet`` (so it carries
    ``_producer`` and ``_schemaURL`` and serialises like the standard facets)."""
    import attr
    from openlineage.client.generated.base import RunFacet

    @attr.define
    class ConsentryRunFacet(RunFacet):
        purpose: str
        asOf: str
        policyVersion: str | None
        ledgerSeq: int
        ledgerHash: str | None
        datasetId: str | None = attr.field(default=None)
        recordSha256: str | None = attr.field(default=None)
        counts: dict[str, Any] = attr.field(factory=dict)
        digests: dict[str, Any] = attr.field(factory=dict)
        models: list[dict[str, Any]] = attr.field(factory=list)

        @staticmethod
        def _get_schema() -> str:
            return FACET_SCHEMA

    return ConsentryRunFacet


def consentry_facet(record: Mapping[str, Any], **extra: Any) -> Any:
    """The ``consentry`` run facet of a lineage record."""
    counts = record.get("counts") or {}
    return _facet_class()(
        purpose=str(record.get("purpose")),
        asOf=str(record.get("as_of")),
        policyVersion=record.get("policy_version"),
        ledgerSeq=int((record.get("ledger") or {}).get("seq") or 0),
        ledgerHash=(record.get("ledger") or {}).get("hash"),
        datasetId=record.get("dataset_id"),
        recordSha256=extra.pop("record_sha256", None),
        counts={
            "input": counts.get("input"),
            "allowed": counts.get("allowed"),
            "excluded": counts.get("excluded"),
            "allowedByReason": dict(counts.get("allowed_by_reason") or {}),
            "excludedByReason": dict(counts.get("excluded_by_reason") or {}),
        },
        digests=dict(record.get("digests") or {}),
        producer=PRODUCER,
        **extra,
    )


class Emitter:
    """Builds and emits the run events; one per process is enough (:func:`emitter`)."""

    def __init__(self, client: Any | None = None) -> None:
        from openlineage.client import OpenLineageClient

        self.client = client if client is not None else OpenLineageClient()

    def emit(self, event: Any) -> bool:
        """Emit one event; a failing transport is logged, never raised."""
        try:
            self.client.emit(event)
        except Exception as exc:  # lineage is reported, not transacted: the run stands
            log.warning("OpenLineage: could not emit %s: %s", type(event).__name__, exc)
            return False
        return True

    # -- gate runs ------------------------------------------------------------------------

    def gate_start(self, job: GateRun) -> None:
        from openlineage.client.event_v2 import RunState

        o = job.options
        name = o.dataset_name or Path(o.out).name
        self.emit(
            _run_event(
                RunState.START,
                job.dataset_id,
                f"consentry.gate.{name}",
                inputs=[_manifest_dataset(job.manifest, None)],
                facets={},
            )
        )

    def gate_fail(self, job: GateRun, error: BaseException) -> None:
        from openlineage.client.event_v2 import RunState
        from openlineage.client.generated.error_message_run import ErrorMessageRunFacet

        o = job.options
        name = o.dataset_name or Path(o.out).name
        facet = ErrorMessageRunFacet(
            message=f"{type(error).__name__}: {error}"[:2000], programmingLanguage="python"
        )
        self.emit(
            _run_event(
                RunState.FAIL,
                job.dataset_id,
                f"consentry.gate.{name}",
                inputs=[_manifest_dataset(job.manifest, None)],
                facets={"errorMessage": facet},
            )
        )

    def gate_complete(self, result: GateResult) -> None:
        from openlineage.client.event_v2 import RunState

        record = result.lineage.data
        self.emit(
            _run_event(
                RunState.COMPLETE,
                result.dataset_id,
                f"consentry.gate.{result.name}",
                inputs=[_manifest_dataset(record.get("source"), record)],
                outputs=_gate_outputs(record),
                facets={"consentry": consentry_facet(record, record_sha256=result.lineage.sha256)},
            )
        )

    # -- models ---------------------------------------------------------------------------

    def model_registered(self, store: Store, model: ModelInfo) -> None:
        from openlineage.client.event_v2 import OutputDataset, RunState
        from openlineage.client.generated.dataset_version_dataset import (
            DatasetVersionDatasetFacet,
        )

        datasets = [store.dataset(d) for d in model.datasets]
        inputs = [_allowed_input(d.record.data) for d in datasets]
        first = datasets[0].record.data if datasets else {}
        facet = consentry_facet(
            first,
            models=[{"id": model.id, "name": model.name, "version": model.version}],
        )
        facet.datasetId = None  # a model run: its datasets are its inputs
        facet.counts = {"datasets": [d.id for d in datasets]}
        output = OutputDataset(
            namespace=namespace(),
            name=f"models/{model.name}",
            facets={
                "version": DatasetVersionDatasetFacet(
                    datasetVersion=model.version or model.id, producer=PRODUCER
                )
            },
        )
        self.emit(
            _run_event(
                RunState.COMPLETE,
                model.id,
                f"consentry.model.{model.name}",
                inputs=inputs,
                outputs=[output],
                facets={"consentry": facet},
            )
        )


_EMITTER: tuple[tuple[str | None, ...], Emitter] | None = None
_SETTINGS = (*_CLIENT_SETTINGS, "OPENLINEAGE_DISABLED", "OPENLINEAGE_NAMESPACE", SWITCH)


def emitter() -> Emitter | None:
    """The process's emitter when OpenLineage is on (None when off, or when the
    ``openlineage-python`` package, the ``[openlineage]`` extra, is not installed). Made
    again when the settings change."""
    global _EMITTER
    if not enabled():
        return None
    key = tuple(os.environ.get(name) for name in _SETTINGS)
    if _EMITTER is None or _EMITTER[0] != key:
        try:
            _EMITTER = (key, Emitter())
        except ImportError:
            log.warning("OpenLineage is on but openlineage-python is not installed: "
                        "pip install 'consentry[openlineage]'")  # fmt: skip
            return None
    return _EMITTER[1]


def around_gate(job: GateRun, run: Callable[[], GateResult]) -> GateResult:
    """Run a gate job between its START and its COMPLETE (or FAIL) events."""
    em = emitter()
    if em is None:
        return run()
    em.gate_start(job)
    try:
        result = run()
    except BaseException as exc:
        em.gate_fail(job, exc)
        raise
    if not result.replayed:  # a replayed run did nothing: its events were sent the first time
        em.gate_complete(result)
    return result


def after_model(store: Store, model: ModelInfo) -> None:
    """Emit a registered model's run (when OpenLineage is on)."""
    em = emitter()
    if em is not None:
        try:
            em.model_registered(store, model)
        except Exception as exc:  # e.g. a dataset removed meanwhile: report, do not fail
            log.warning("OpenLineage: model %s not emitted: %s", model.id, exc)


# -- datasets ---------------------------------------------------------------------------------


def _run_event(
    state: Any,
    run_id: str,
    job_name: str,
    *,
    inputs: list[Any],
    outputs: list[Any] | None = None,
    facets: dict[str, Any],
) -> Any:
    from openlineage.client.event_v2 import Job, Run, RunEvent

    return RunEvent(
        eventType=state,
        eventTime=datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        run=Run(runId=run_id, facets=facets),
        job=Job(namespace=namespace(), name=job_name),
        inputs=inputs,
        outputs=outputs or [],
        producer=PRODUCER,
    )


def _manifest_dataset(source: Any, record: Mapping[str, Any] | None) -> Any:
    """The manifest as an input dataset (a file, or an in-memory table named by the run)."""
    from openlineage.client.event_v2 import InputDataset
    from openlineage.client.generated.dataset_version_dataset import DatasetVersionDatasetFacet
    from openlineage.client.generated.input_statistics_input_dataset import (
        InputStatisticsInputDatasetFacet,
    )

    path = source.get("manifest") if isinstance(source, Mapping) else source
    if isinstance(path, str | Path):
        ns, name = "file", str(Path(path).resolve())
    else:
        ns, name = namespace(), "manifests/in-memory"
    facets: dict[str, Any] = {}
    input_facets: dict[str, Any] = {}
    if record is not None:
        digests = record.get("digests") or {}
        facets["version"] = DatasetVersionDatasetFacet(
            datasetVersion=str(digests.get("input_sha256")), producer=PRODUCER
        )
        input_facets["inputStatistics"] = InputStatisticsInputDatasetFacet(
            rowCount=int((record.get("counts") or {}).get("input") or 0), producer=PRODUCER
        )
        schema = _schema(Path(path)) if isinstance(path, str | Path) else None
        if schema is not None:
            facets["schema"] = schema
    return InputDataset(namespace=ns, name=name, facets=facets, inputFacets=input_facets)


def _gate_outputs(record: Mapping[str, Any]) -> list[Any]:
    """The allowed and excluded files as output datasets."""
    from openlineage.client.event_v2 import OutputDataset
    from openlineage.client.generated.dataset_version_dataset import DatasetVersionDatasetFacet
    from openlineage.client.generated.output_statistics_output_dataset import (
        OutputStatisticsOutputDatasetFacet,
    )

    outputs = record.get("outputs") or {}
    counts = record.get("counts") or {}
    digests = record.get("digests") or {}
    found = []
    for kind, digest in (("allowed", "output_sha256"), ("excluded", "excluded_sha256")):
        if not outputs.get("files", {}).get(kind):
            continue
        path = Path(outputs["dir"]) / outputs["files"][kind]
        facets: dict[str, Any] = {
            "version": DatasetVersionDatasetFacet(
                datasetVersion=str(digests.get(digest)), producer=PRODUCER
            )
        }
        schema = _schema(path)
        if schema is not None:
            facets["schema"] = schema
        stats = OutputStatisticsOutputDatasetFacet(
            rowCount=int(counts.get(kind) or 0),
            size=path.stat().st_size if path.is_file() else None,
            fileCount=1 if path.is_file() else None,
            producer=PRODUCER,
        )
        found.append(
            OutputDataset(
                namespace="file",
                name=str(path.resolve()),
                facets=facets,
                outputFacets={"outputStatistics": stats},
            )
        )
    return found


def _allowed_input(record: Mapping[str, Any]) -> Any:
    """A dataset's allowed file as a model run's input (the same name as the gate's output,
    so the two runs join up in a lineage graph)."""
    from openlineage.client.event_v2 import InputDataset
    from openlineage.client.generated.dataset_version_dataset import DatasetVersionDatasetFacet

    outputs = record.get("outputs") or {}
    if outputs.get("dir") and outputs.get("files", {}).get("allowed"):
        ns = "file"
        name = str((Path(outputs["dir"]) / outputs["files"]["allowed"]).resolve())
    else:
        ns, name = namespace(), f"datasets/{record.get('dataset_id')}"
    version = (record.get("digests") or {}).get("output_sha256")
    return InputDataset(
        namespace=ns,
        name=name,
        facets={
            "version": DatasetVersionDatasetFacet(datasetVersion=str(version), producer=PRODUCER)
        },
    )


def _schema(path: Path) -> Any | None:
    """The schema facet of a Parquet file (None for other formats or a missing file)."""
    if path.suffix != ".parquet" or not path.is_file():
        return None
    import pyarrow.parquet as pq
    from openlineage.client.generated.schema_dataset import (
        SchemaDatasetFacet,
        SchemaDatasetFacetFields,
    )

    try:
        schema = pq.read_schema(path)
    except Exception:  # unreadable: the event goes without its schema
        return None
    fields = [
        SchemaDatasetFacetFields(name=f.name, type=str(f.type), ordinal_position=i + 1)
        for i, f in enumerate(schema)
    ]
    return SchemaDatasetFacet(fields=fields, producer=PRODUCER)


__all__ = [
    "Emitter",
    "after_model",
    "around_gate",
    "consentry_facet",
    "emitter",
    "enabled",
]
