"""Liveness, readiness and Prometheus metrics (no credentials needed)."""

from __future__ import annotations

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import Response

from ...errors import ConsentryError
from ..common import json_response
from ..deps import Svc
from ..models import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="The process answers")
async def healthz() -> Response:
    return json_response({"status": "ok"})


@router.get(
    "/readyz",
    response_model=Health,
    responses={503: {"model": Health}},
    summary="The store answers and has a policy in effect",
)
def readyz(svc: Svc) -> Response:
    try:
        seq = svc.store.head_seq()
        version = svc.store.policy().version
    except ConsentryError as exc:
        return json_response({"status": "unavailable", "detail": str(exc)}, 503)
    except Exception as exc:  # the database does not answer
        return json_response(
            {"status": "unavailable", "detail": f"the store does not answer: {type(exc).__name__}"},
            503,
        )
    store = svc.store
    warnings = store.key_warnings()
    if svc.checkpointer.error:
        warnings.append(f"the last checkpoint failed: {svc.checkpointer.error}")
    return json_response(
        {
            "status": "ok",
            "ledger_seq": seq,
            "policy_version": version,
            "keys": store.key_custody(),
            "warnings": warnings,
        }
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
def metrics(svc: Svc) -> Response:
    return Response(svc.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
