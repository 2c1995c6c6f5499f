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
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from api_support import Api, bearer, sign
from hypothesis import HealthCheck, given, settings
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
