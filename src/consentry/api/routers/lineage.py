"""Datasets gated from manifests, models registered on them, a subject's impact and report."""

from __future__ import annotations

from pathlib import Path as FilePath
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from ...errors import Forbidden, InvalidInput
from ...times import format_time
from ..auth import Role, require_role, require_self
from ..common import json_response, with_receipt_url
from ..context import Service
from ..deps import Caller, IdemKey, StrictRoute, Svc, scoped_key
from ..models import Name, problems

router = APIRouter(tags=["lineage"], route_class=StrictRoute)

Ref = Annotated[str, Path(min_length=1, max_length=200)]
SubjectId = Annotated[str, Path(min_length=1, max_length=512, examples=["u_123"])]


class GateIn(BaseModel):
    """Gate a manifest that is on the server, under the service's data directory."""

    model_config = ConfigDict(extra="forbid")
    manifest: str = Field(
        min_length=1,
        max_length=1000,
        examples=["manifests/meetings-2024-06.parquet"],
        description="Path of the manifest (a file, directory or glob), relative to the "
        "service's data directory (CONSENTRY_DATA_DIR).",
    )
    purpose: Name
    name: str = Field(min_length=1, max_length=200, examples=["meetings-asr-v2"])
    out: str | None = Field(
        None,
        max_length=1000,
        description="Output directory relative to the data directory (default: "
        "datasets/<name>/<UTC time>); it must not exist yet.",
    )
    as_of: Annotated[str, Field(max_length=64)] | None = Field(
        None,
        description="Decide as of a past moment instead of now: RFC 3339, -5m/-2h/-1d before "
        "now, or event:N; the future or before the first policy is refused (422).",
    )
    format: str | None = Field(None, max_length=20, description="parquet, csv, jsonl, arrow")


class ModelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200, examples=["meetings-asr"])
    datasets: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        min_length=1,
        max_length=1000,
        description="Ids (or names) of the datasets it was trained on.",
    )
    version: str | None = Field(None, max_length=200)
    metadata: dict[str, Any] = Field(default_factory=dict)


class DatasetOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    name: str
    purpose: str
    as_of: str
    policy_version: str | None
    ledger_seq: int
    input_items: int
    output_items: int
    excluded_items: int
    subjects: int
    created_at: str
    models: list[dict[str, Any]]


class DatasetList(BaseModel):
    datasets: list[DatasetOut]


class GateOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    dataset_id: str
    name: str
    purpose: str
    as_of: str
    ledger_seq: int
    counts: dict[str, Any]
    paths: dict[str, str]
    replayed: bool


class ModelOut(BaseModel):
    id: str
    name: str
    version: str | None
    created_at: str
    metadata: dict[str, Any]
    datasets: list[str]


class ModelList(BaseModel):
    models: list[ModelOut]


class ImpactOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    subject: str
    known: bool
    checked_at: str
    ledger_seq: int
    datasets: list[dict[str, Any]]
    models: list[dict[str, Any]]
    summary: dict[str, int]


class ReportOut(BaseModel):
    subject: str
    generated_at: str
    policy_version: str
    language: str
    machine_translated: bool
    accounts: list[str]
    uses: list[dict[str, Any]]
    protected: list[dict[str, Any]]
    history: list[dict[str, Any]]
    impact: dict[str, Any]
    ledger_seq: int


def _inside(svc: Service, relative: str, field: str) -> FilePath:
    """A path under the data directory, or a clear refusal."""
    if not svc.settings.data_dir:
        raise Forbidden(
            "this service gates no manifests: it has no data directory",
            hint="set CONSENTRY_DATA_DIR to the directory the gate may read and write",
        )
    root = FilePath(svc.settings.data_dir).resolve()
    candidate = FilePath(relative)
    if candidate.is_absolute() or ".." in candidate.parts:
        raise InvalidInput(
            f"{field}: give a path relative to the data directory, without '..'",
            field=field,
        )
    resolved = (root / candidate).resolve()
    if resolved != root and root not in resolved.parents:
        raise InvalidInput(f"{field}: the path leaves the data directory", field=field)
    return root / candidate


@router.post(
    "/v1/datasets",
    response_model=GateOut,
    status_code=201,
    responses=problems(401, 403, 404, 409, 422, 503),
    summary="Gate a manifest into a dataset (service)",
)
def gate(body: GateIn, svc: Svc, caller: Caller, key: IdemKey) -> Response:
    """Keep the manifest's items whose every subject allows ``purpose``; write them, the
    exclusions and ``report.json`` under the data directory, and record the dataset's
    lineage. Retrying with the same ``Idempotency-Key`` returns the first run."""
    require_role(caller, Role.SERVICE, action="gating a manifest")
    manifest = _inside(svc, body.manifest, "manifest")
    stamp = format_time(svc.store.clock()).replace(":", "").replace("-", "").replace(".", "")
    out = _inside(svc, body.out or f"datasets/{body.name}/{stamp}", "out")
    options: dict[str, Any] = {"idempotency_key": scoped_key(caller, key)}
    if body.format:
        options["format"] = body.format
    result = svc.store.gate(
        str(manifest),
        purpose=body.purpose,
        out=out,
        as_of=body.as_of,
        dataset_name=body.name,
        **options,
    )
    return json_response(result.to_dict(), 201)


@router.get(
    "/v1/datasets",
    response_model=DatasetList,
    responses=problems(401, 403, 503),
    summary="Datasets the gate built (service)",
)
def datasets(
    svc: Svc,
    caller: Caller,
    name: Annotated[str | None, Query(max_length=200)] = None,
    purpose: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int | None, Query(ge=1, le=10_000)] = None,
) -> Response:
    require_role(caller, Role.SERVICE, action="listing datasets")
    found = svc.store.datasets(name=name, purpose=purpose, limit=limit)
    return json_response({"datasets": [d.to_dict() for d in found]})


@router.get(
    "/v1/datasets/{ref}",
    response_model=DatasetOut,
    responses=problems(401, 403, 404, 503),
    summary="One dataset with its lineage record (service)",
)
def dataset(ref: Ref, svc: Svc, caller: Caller) -> Response:
    require_role(caller, Role.SERVICE, action="reading a dataset")
    return json_response(svc.store.dataset(ref).to_dict(record=True))


@router.post(
    "/v1/models",
    response_model=ModelOut,
    status_code=201,
    responses=problems(401, 403, 404, 409, 422, 503),
    summary="Register a model trained on datasets (service)",
)
def register_model(body: ModelIn, svc: Svc, caller: Caller, key: IdemKey) -> Response:
    require_role(caller, Role.SERVICE, action="registering a model")
    model = svc.store.register_model(
        body.name,
        body.datasets,
        version=body.version,
        metadata=body.metadata,
        idempotency_key=scoped_key(caller, key),
    )
    return json_response(model.to_dict(), 201)


@router.get(
    "/v1/models",
    response_model=ModelList,
    responses=problems(401, 403, 503),
    summary="Registered models (service)",
)
def models(svc: Svc, caller: Caller) -> Response:
    require_role(caller, Role.SERVICE, action="listing models")
    return json_response({"models": [m.to_dict() for m in svc.store.models()]})


@router.get(
    "/v1/models/{ref}",
    response_model=ModelOut,
    responses=problems(401, 403, 404, 503),
    summary="One model (service)",
)
def model(ref: Ref, svc: Svc, caller: Caller) -> Response:
    require_role(caller, Role.SERVICE, action="reading a model")
    return json_response(svc.store.model(ref).to_dict())


@router.get(
    "/v1/subjects/{subject}/impact",
    response_model=ImpactOut,
    responses=problems(401, 403, 422, 503),
    summary="The datasets and models that used a subject's data",
)
def impact(subject: SubjectId, svc: Svc, caller: Caller) -> Response:
    """For the person themself, and for the service (a withdrawal tells the pipeline which
    datasets and models need retraining or unlearning)."""
    if caller.role is not Role.SERVICE:
        require_self(caller, subject, action="reading a subject's impact")
    return json_response(svc.store.impact(subject).to_dict())


@router.get(
    "/v1/subjects/{subject}/report",
    response_model=ReportOut,
    responses=problems(401, 403, 422, 503),
    summary="A subject's transparency report",
)
def report(
    subject: SubjectId,
    svc: Svc,
    caller: Caller,
    lang: Annotated[str | None, Query(min_length=2, max_length=35)] = None,
) -> Response:
    """Everything the preference centre shows, as one document: each use of the person's
    data with its basis and what it means for them now, what never happens, the history of
    their choices and where their data went."""
    require_self(caller, subject, action="reading a transparency report")
    report = svc.store.transparency_report(subject, language=lang, decider=svc.snapshot.decider())
    # The history's consent events link their receipts, as every event list of the API does.
    report["history"] = [with_receipt_url(event) for event in report["history"]]
    return json_response(report)
