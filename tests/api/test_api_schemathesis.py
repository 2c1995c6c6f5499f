"""Property-based run of the OpenAPI description (schemathesis): no 5xx, every response matches
its documented status, content type and schema, and invalid input is refused with a 4xx.

Each operation is called with a credential that can reach it (a subject token for the
generated subject, an account_admin token for the generated account, the service or
platform_admin key), so generated data gets past authentication into the library. Both
valid (positive) and invalid (negative) requests are generated. Schema-valid requests may
still be refused with a 422 (an unknown purpose name is valid JSON Schema but not a purpose
the policy knows), so schemathesis's "positive data acceptance" check is left out.

The operations are driven through schemathesis's strategies with Hypothesis directly (its
pytest plugin does not run under pytest 9 yet).

``test_contract_for_every_role`` runs schemathesis's own engine (its coverage phase: boundary
values, missing and extra fields, wrong types, undeclared methods) with ONE role's credential
for every operation, for each role in turn: what that role may not do must be refused as the
schema says (401/403/404 problems), and what it may do must answer as documented.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from api_support import Api, bearer, sign
from hypothesis import HealthCheck, given, settings
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import StopReason, events
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from consentry.api import Settings, create_app

pytestmark = pytest.mark.slow

EXAMPLES = 20


def _cases() -> list[tuple[str, GenerationMode]]:
    spec = create_app(Settings(database_url="sqlite://")).openapi()
    cases = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            label = f"{method.upper()} {path}"
            cases.append((label, GenerationMode.POSITIVE))
            if operation.get("parameters") or operation.get("requestBody"):
                cases.append((label, GenerationMode.NEGATIVE))
    return cases


def credentials_for(api: Api, case: Any) -> dict[str, str]:
    path = case.operation.path
    params = case.path_parameters or {}
    if path.startswith("/v1/decisions") or "/members/" in path:
        return api.service
    if path.startswith(("/v1/ledger", "/v1/policies")) and case.method.upper() == "POST":
        return api.platform
    if "account" in params and isinstance(params["account"], str):
        return bearer(sign("admin", "account_admin", params["account"]))
    if "subject" in params and isinstance(params["subject"], str):
        return bearer(sign(params["subject"], "subject"))
    if path.startswith("/v1/receipts/"):
        return api.bob
    return api.service


@pytest.mark.parametrize(("label", "mode"), _cases(), ids=lambda v: getattr(v, "value", v))
def test_openapi(api: Api, label: str, mode: GenerationMode) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", api.client.app)
    operation = schema.find_operation_by_label(label)
    assert operation is not None, label

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        case.call_and_validate(
            headers=credentials_for(api, case), excluded_checks=[positive_data_acceptance]
        )

    run()


#: A deadline against a hang (not a speed check): a role's pass takes well under a minute on an
#: idle machine; if the engine is still running after this, it is stopped and the test fails.
ROLE_DEADLINE_S = 900


def _role_credentials(api: Api) -> dict[str, dict[str, str]]:
    return {
        "subject": api.bob,
        "account_admin": api.alice,
        "service": api.service,
        "platform_admin": api.platform,
    }


@pytest.mark.parametrize("role", ["subject", "account_admin", "service", "platform_admin"])
def test_contract_for_every_role(api: Api, role: str) -> None:
    config = SchemathesisConfig.from_dict(
        {
            "headers": _role_credentials(api)[role],
            "max-time": ROLE_DEADLINE_S,
            "generation": {"max-examples": 2, "deterministic": True, "database": "none"},
            # The coverage phase is bounded by the schema (it does not loop until a time limit
            # as the fuzzing phase does); the per-operation fuzzing is test_openapi above.
            "phases": {
                "examples": {"enabled": False},
                "fuzzing": {"enabled": False},
                "stateful": {"enabled": False},
            },
            # Schema-valid is not always valid: an unknown purpose name is refused (see above).
            "checks": {"positive_data_acceptance": {"enabled": False}},
        }
    )
    schema = schemathesis.openapi.from_asgi("/openapi.json", api.client.app, config=config)
    failures: list[str] = []
    checked = 0
    finished = False
    for event in schemathesis.engine.from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            for nodes in event.recorder.checks.values():
                for node in nodes:
                    checked += 1
                    if node.failure_info is not None:
                        failure = node.failure_info.failure
                        failures.append(
                            f"{event.recorder.label}: {node.name}: {failure.title}\n"
                            f"{failure.message}\n{node.failure_info.code_sample}"
                        )
        elif isinstance(event, events.NonFatalError | events.FatalError):
            failures.append(f"engine error: {event}")
        elif isinstance(event, events.EngineFinished):
            finished = True
            assert event.stop_reason is StopReason.COMPLETED, (
                f"the {role} pass stopped ({event.stop_reason}): past its {ROLE_DEADLINE_S} s "
                "deadline, or the server became unavailable"
            )
    assert finished and checked > 1000, (finished, checked)
    assert not failures, "\n\n".join(failures[:20])
