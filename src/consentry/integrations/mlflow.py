"""MLflow (the ``[mlflow]`` extra): gated datasets as MLflow dataset inputs, consentry models
linked to MLflow runs.

``log_dataset(dataset_id, context="training")`` logs a dataset the gate built as an input of
the active MLflow run: name = the dataset's name, source = its ``allowed`` file, digest = the
item-id digest of its lineage record (MLflow's tracking schema keeps 36 characters of a
digest; the whole one is in the tags), and the ``consentry`` facts as the input's tags
(``consentry.dataset_id``, ``.purpose``, ``.as_of``, ``.policy_version``, ``.ledger_seq``,
``.record_sha256``, ``.output_sha256``, counts). ``link_model`` (what
``consentry model register --mlflow-run RUN_ID`` calls) tags an MLflow run with the
consentry model and logs its datasets as the run's training inputs, so that in MLflow a run
shows the consented datasets it was trained on, and in consentry the model names the run
(its metadata ``mlflow_run_id``) — the path from a withdrawal to an MLflow run.

The tracking server is MLflow's own setting (``MLFLOW_TRACKING_URI``, or
``mlflow.set_tracking_uri``): a file store, SQLite, or a server.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInput

if TYPE_CHECKING:
    from ..lineage import DatasetInfo, ModelInfo
    from ..store import Store

#: MLflow's tracking schema stores at most this many characters of a dataset digest.
MLFLOW_DIGEST_CHARS = 36


def _mlflow() -> Any:
    try:
        import mlflow
    except ImportError:
        raise InvalidInput(
            "MLflow is not installed",
            hint="pip install 'consentry[mlflow]'",
        ) from None
    return mlflow


def dataset_tags(info: DatasetInfo) -> dict[str, str]:
    """The ``consentry`` facts of a dataset, as MLflow tags (strings)."""
    record = info.record.data
    counts = record.get("counts") or {}
    digests = record.get("digests") or {}
    tags = {
        "consentry.dataset_id": info.id,
        "consentry.purpose": info.purpose,
        "consentry.as_of": info.as_of,
        "consentry.policy_version": info.policy_version or "",
        "consentry.ledger_seq": str(info.ledger_seq),
        "consentry.record_sha256": info.record.sha256,
        "consentry.output_sha256": str(digests.get("output_sha256")),
        "consentry.digest_method": str(digests.get("method")),
        "consentry.items_allowed": str(counts.get("allowed")),
        "consentry.items_excluded": str(counts.get("excluded")),
    }
    return tags


def _source_path(info: DatasetInfo) -> str:
    outputs = info.record.data.get("outputs") or {}
    if outputs.get("dir") and (outputs.get("files") or {}).get("allowed"):
        return (Path(str(outputs["dir"])) / str(outputs["files"]["allowed"])).resolve().as_uri()
    return f"consentry:datasets/{info.id}"


def mlflow_dataset(info: DatasetInfo) -> Any:
    """The MLflow ``MetaDataset`` of a gated dataset (no data is read)."""
    mlflow = _mlflow()
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    digest = str((info.record.data.get("digests") or {}).get("output_sha256"))
    path = _source_path(info)
    with warnings.catch_warnings():  # MLflow warns that it picked the local-file source
        warnings.simplefilter("ignore")
        if path.startswith("file:"):
            source = resolve_dataset_source(path)
        else:
            source = mlflow.data.http_dataset_source.HTTPDatasetSource(path)
    # (mypy reads ``profile`` as abstract; MetaDataset defines it)
    return MetaDataset(source=source, name=info.name, digest=digest[:MLFLOW_DIGEST_CHARS])  # type: ignore[abstract]


def log_dataset(
    dataset_id: str,
    context: str = "training",
    *,
    store: Store | None = None,
    run_id: str | None = None,
) -> DatasetInfo:
    """Log the gated dataset ``dataset_id`` (an id, or a name: the latest) as an input of
    the active MLflow run (or of ``run_id``), with the ``consentry`` facts as its tags."""
    mlflow = _mlflow()
    from mlflow.entities import DatasetInput, InputTag

    info: DatasetInfo = _with_store(store, lambda s: s.dataset(dataset_id))
    dataset = mlflow_dataset(info)
    tags = {**dataset_tags(info), "mlflow.data.context": context}
    if run_id is None:
        run = mlflow.active_run()
        if run is None:
            raise InvalidInput(
                "no active MLflow run to log the dataset to",
                hint="call it inside `with mlflow.start_run():`, or pass run_id=",
            )
        run_id = run.info.run_id
    entity = DatasetInput(
        dataset=dataset._to_mlflow_entity(),
        tags=[InputTag(key=k, value=v) for k, v in tags.items()],
    )
    mlflow.tracking.MlflowClient().log_inputs(run_id, datasets=[entity])
    return info


def link_model(store: Store, model: ModelInfo, run_id: str) -> None:
    """Tag MLflow run ``run_id`` with the consentry model and log its datasets as the run's
    training inputs."""
    check_run(run_id)
    client = _mlflow().tracking.MlflowClient()
    client.set_tag(run_id, "consentry.model_id", model.id)
    client.set_tag(run_id, "consentry.model_name", model.name)
    if model.version:
        client.set_tag(run_id, "consentry.model_version", model.version)
    client.set_tag(run_id, "consentry.datasets", ",".join(model.datasets))
    for dataset_id in model.datasets:
        log_dataset(dataset_id, "training", store=store, run_id=run_id)


def check_run(run_id: str) -> None:
    """Refuse an MLflow run id the tracking store does not know (before recording a model)."""
    mlflow = _mlflow()
    try:
        mlflow.tracking.MlflowClient().get_run(run_id)
    except Exception as exc:
        raise InvalidInput(
            f"MLflow has no run {run_id!r} ({type(exc).__name__})",
            hint="give the id of a run in the tracking store MLFLOW_TRACKING_URI names",
            field="mlflow_run",
        ) from None


def _with_store(store: Store | None, use: Any) -> Any:
    if store is not None:
        return use(store)
    from ..store import Store as _Store

    with _Store(create=False) as own:
        return use(own)


__all__ = ["check_run", "dataset_tags", "link_model", "log_dataset", "mlflow_dataset"]
