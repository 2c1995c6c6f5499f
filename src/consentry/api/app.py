"""The FastAPI application: ``create_app(settings)``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from .. import __version__
from ..store import Store
from . import problems
from .context import Service
from .deps import RAW_BODIES
from .fastpath import PATH, DecisionFastPath
from .metrics import MetricsMiddleware
from .models import Problem
from .routers import (
    accounts,
    decisions,
    health,
    ledger,
    policies,
    receipts,
    rights,
    subjects,
    webhooks,
)
from .settings import Settings

DESCRIPTION = """\
consentry's HTTP API: the platform's backend asks for decisions and gates training data, its
users read and change their choices, its customers' administrators set their account's
controls, and its operators publish policies and verify the ledger.

Authenticate with `Authorization: Bearer <token>`: a JWT the platform signs for the caller
(claims `sub`, `role`, `account`, `exp`, `aud`) or an API key from `consentry keys create`.
Errors are RFC 9457 problem details (`application/problem+json`) that say what was wrong.
The preference centre is at `/me`, the admin console at `/admin`.
"""


def create_app(settings: Settings | None = None, *, store: Store | None = None) -> FastAPI:
    """The service: the API under ``/v1``, the web pages, health checks and metrics.

    ``store`` lets a caller share a :class:`Store` it already holds (tests, the demo);
    otherwise the app opens ``settings.database_url``.
    """
    settings = settings or Settings.from_env()
    service = Service(settings, store)

    deliverer = _deliverer(service)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        service.checkpointer.start()
        if deliverer is not None:
            deliverer.start()
        try:
            yield
        finally:
            if deliverer is not None:
                deliverer.stop()
            service.checkpointer.stop()
            if store is None:
                service.close()

    app = FastAPI(
        title="consentry",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        # Prometheus metrics (/metrics) are the service's telemetry; FastAPI's own OpenTelemetry
        # hooks would cost every request a provider look-up.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        openapi_tags=[
            {"name": "decisions", "description": "Allow or deny, with the reason"},
            {"name": "subjects", "description": "A person's choices and state"},
            {"name": "receipts", "description": "Signed consent receipts"},
            {"name": "accounts", "description": "An organisation's controls and members"},
            {"name": "policies", "description": "Policy versions, notices and diffs"},
            {"name": "lineage", "description": "Datasets, models and the impact on a person"},
            {"name": "ledger", "description": "The hash-chained event ledger"},
            {"name": "webhooks", "description": "Every change pushed to your endpoints"},
            {"name": "health", "description": "Liveness, readiness, metrics"},
        ],
    )
    app.state.service = service
    problems.install(app)
    # Routes match in order: the hot decision endpoints first, then the probes.
    for module in (
        decisions,
        health,
        subjects,
        receipts,
        accounts,
        policies,
        ledger,
        webhooks,
        rights,
    ):
        app.include_router(module.router)
    app.include_router(receipts.well_known)
    app.include_router(rights.public)
    _mount_lineage(app)
    _mount_web(app)
    decide_route = next(r for r in decisions.router.routes if getattr(r, "path", None) == PATH)
    app.add_middleware(DecisionFastPath, service=service, route=decide_route)
    app.add_middleware(MetricsMiddleware, metrics=service.metrics)
    _describe_problems(app)
    return app


PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}


def _describe_problems(app: FastAPI) -> None:
    """Make the OpenAPI description say what the service does: every error is a problem
    (``application/problem+json``), and any request with input may be refused with a 400
    (unreadable body) or 422 (invalid input naming the field)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas.setdefault(
            "Problem", Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        )
        for name, model in RAW_BODIES.items():
            body = model.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(body.pop("$defs", {}))
            schemas.setdefault(name, body)
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                takes_input = bool(operation.get("parameters") or operation.get("requestBody"))
                for code, text in (
                    (400, "The request could not be read"),
                    (422, "Invalid input; `field` names what was wrong"),
                    (500, "Internal error (logged; never a stack trace)"),
                ):
                    if code != 500 and not takes_input:
                        continue
                    responses.setdefault(str(code), {"description": text})
                for code, response in responses.items():
                    declared = response.get("content", {}).get("application/json", {})
                    ref = declared.get("schema", {}).get("$ref", "")
                    if code[0] in "45" and (not ref or ref.endswith("HTTPValidationError")):
                        response["content"] = {"application/problem+json": {"schema": PROBLEM_REF}}
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _deliverer(service: Service) -> Any:
    """The delivery worker this process runs (``CONSENTRY_DELIVER``, on by default), and the
    delivery metrics on /metrics either way."""
    from ..outbound.delivery import Deliverer, DeliveryConfig, delivery_enabled
    from ..outbound.metrics import DeliveryCollector

    service.metrics.add_collector(DeliveryCollector(service.store))
    if not delivery_enabled():
        return None
    return Deliverer(service.store, DeliveryConfig.from_env())


def _mount_lineage(app: FastAPI) -> None:
    from .routers import lineage

    app.include_router(lineage.router)


def _mount_web(app: FastAPI) -> None:
    from ..web import mount

    mount(app)


def app_from_env() -> FastAPI:
    """The factory ``consentry serve`` gives uvicorn (each worker builds its own app)."""
    return create_app(Settings.from_env())
