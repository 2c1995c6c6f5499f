"""Every endpoint for every role: who may call it, and a clear refusal for everyone else."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from api_support import Api, bearer, sign

# The callers: bob and carol are members of acme; alice administers acme; zed administers
# globex; the service and platform_admin callers use API keys.
CALLERS = ("anonymous", "bob", "carol", "alice", "zed", "service", "platform")


def credentials(api: Api, caller: str) -> dict[str, str]:
    return {
        "anonymous": {},
        "bob": api.as_("bob"),
        "carol": api.as_("carol"),
        "alice": api.as_("alice", "account_admin", "acme"),
        "zed": api.as_("zed", "account_admin", "globex"),
        "service": api.service,
        "platform": api.platform,
    }[caller]


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    allowed: frozenset[str]
    ok: int = 200
    body: Any = None
    #: Prepare per call (e.g. make sure a member exists before removing it).
    setup: Callable[[Api], None] | None = None
    #: Callers refused with a 404, as if it did not exist (someone else's receipt).
    hidden: frozenset[str] = frozenset()

    def call(self, api: Api, caller: str) -> Any:
        if self.setup is not None:
            self.setup(api)
        path = self.path
        if "{receipt}" in path:
            path = path.format(receipt=_receipt(api))
        if "{dataset}" in path:
            path = path.format(dataset=_dataset_id(api))
        if "{model}" in path:
            path = path.format(model=_model_id(api))
        if "{webhook}" in path:
            path = path.format(webhook=_webhook_id(api))
        body = self.body(api) if callable(self.body) else self.body
        return api.client.request(self.method, path, json=body, headers=credentials(api, caller))


def _receipt(api: Api) -> str:
    found = [e for e in api.store.ledger.events(subjects=["bob"]) if e.kind == "consent.given"]
    if found:
        return found[-1].id
    return api.store.give_consent("bob", "ai.training", ["content"]).id


def _receipt_doc(api: Api) -> dict[str, Any]:
    return api.store.receipt(_receipt(api))


def _dan_is_member(api: Api) -> None:
    if "acme" not in api.store.state().accounts_of("dan"):
        api.store.add_member("dan", "acme")


def _dan_is_not_member(api: Api) -> None:
    if "acme" in api.store.state().accounts_of("dan"):
        api.store.remove_member("dan", "acme")


def _dan_is_invited(api: Api) -> None:
    _dan_is_not_member(api)
    if not api.store.invitations(subject="dan", account="acme"):
        api.store.invite_member("dan", "acme", actor="test")


GUEST = "bob-guest@example.com"


def _guest_is_bobs(api: Api) -> None:
    if api.store.state().person_of.get(GUEST) != "bob":
        api.store.link_subject("bob", GUEST)


def _guest_is_not_bobs(api: Api) -> None:
    if api.store.state().person_of.get(GUEST) == "bob":
        api.store.unlink_subject("bob", GUEST)


def _bob_is_invited_to_initech(api: Api) -> None:
    if "initech" in api.store.state().accounts_of("bob"):
        api.store.remove_member("bob", "initech")
    if not api.store.invitations(subject="bob", account="initech"):
        api.store.invite_member("bob", "initech", actor="test")


EVERYONE = frozenset(CALLERS) - {"anonymous"}
ANYONE = frozenset(CALLERS)
ALL_PUBLISH = """\
id: meetings
version: "2099-01"
effective: 2099-01-01T00:00:00Z
language: en
rules:
  - id: deliver-service
    purposes: [service.delivery]
    categories: [content]
    basis: contract
"""

ENDPOINTS = [
    Endpoint("GET", "/v1/policies", EVERYONE),
    Endpoint("POST", "/v1/policies", frozenset({"platform"}), 201, {"yaml": ALL_PUBLISH}),
    Endpoint("GET", "/v1/policies/diff?from=2023-07&to=2023-08", EVERYONE),
    Endpoint("GET", "/v1/policies/2023-08", EVERYONE),
    Endpoint("GET", "/v1/policies/2023-08/notices/fr", EVERYONE),
    Endpoint(
        "POST",
        "/v1/subjects/bob/consents",
        frozenset({"bob"}),
        201,
        {"action": "give", "purpose": "ai.training", "categories": ["content"]},
    ),
    Endpoint(
        "POST",
        "/v1/subjects/bob/notices",
        frozenset({"bob", "service"}),
        201,
        {"notice_version": "2023-08", "language": "fr"},
        # A day later each time: within a day the same notice is not recorded again (200).
        setup=lambda api: api.store.clock.advance(hours=25),
    ),
    Endpoint(
        "POST",
        "/v1/subjects/bob/objections",
        frozenset({"bob"}),
        201,
        # A lift: meetings.yaml 2023-08 lets nobody raise an objection (that is refused).
        {"purpose": "improvement", "categories": ["service_data"], "lift": True},
    ),
    Endpoint("GET", "/v1/subjects/bob", frozenset({"bob", "alice"})),
    # The store is made at the test clock's 2024-03-01: as_of before that has no answer (422).
    Endpoint("GET", "/v1/subjects/bob?as_of=2024-03-01T00:00:00Z", frozenset({"bob", "alice"})),
    Endpoint(
        "GET",
        "/v1/subjects/bob/export",
        frozenset({"bob", "platform"}),
        # Everyone else gets the answer for a subject that does not exist.
        hidden=frozenset({"carol", "alice", "zed", "service"}),
    ),
    Endpoint("GET", "/v1/subjects/bob/events", frozenset({"bob", "alice"})),
    # Who a person is: the platform's to say (issue 16 §3).
    Endpoint(
        "POST",
        "/v1/subjects/bob/aliases",
        frozenset({"service", "platform"}),
        201,
        {"alias": "bob-guest@example.com"},
        setup=_guest_is_not_bobs,
    ),
    Endpoint(
        "DELETE",
        "/v1/subjects/bob/aliases/bob-guest@example.com",
        frozenset({"service", "platform"}),
        setup=_guest_is_bobs,
    ),
    Endpoint("GET", "/v1/subjects/bob/aliases", frozenset({"bob", "service", "platform"})),
    # (recorded once per policy version: every call after the first answers 200)
    Endpoint(
        "POST",
        "/v1/subjects/bob/signals/gpc",
        frozenset({"service", "platform"}),
        setup=lambda api: api.store.record_gpc("bob"),
    ),
    Endpoint("GET", "/.well-known/gpc.json", ANYONE),
    Endpoint(
        "GET",
        "/v1/receipts/{receipt}",
        frozenset({"bob"}),
        hidden=frozenset({"carol", "alice", "zed"}),
    ),
    Endpoint("POST", "/v1/receipts/verify", EVERYONE, 200, _receipt_doc),
    Endpoint("GET", "/v1/accounts/acme", frozenset({"alice"})),
    Endpoint(
        "PUT",
        "/v1/accounts/acme/settings/ai.training",
        frozenset({"alice"}),
        200,
        {"setting": "members_choose"},
    ),
    Endpoint(
        "PUT",
        "/v1/accounts/acme/features/ai.feature.meeting_summary",
        frozenset({"alice"}),
        200,
        {"enabled": True},
    ),
    # The platform adds members; an administrator only invites (issue 9).
    Endpoint("PUT", "/v1/accounts/acme/members/dan", frozenset({"service", "platform"}), 201),
    Endpoint(
        "DELETE",
        "/v1/accounts/acme/members/dan",
        frozenset({"alice", "service", "platform"}),
        200,
        setup=_dan_is_member,
    ),
    Endpoint(
        "POST",
        "/v1/accounts/acme/invitations/dan",
        frozenset({"alice", "service", "platform"}),
        201,
        setup=_dan_is_not_member,
    ),
    Endpoint(
        "DELETE",
        "/v1/accounts/acme/invitations/dan",
        frozenset({"alice", "service", "platform"}),
        200,
        setup=_dan_is_invited,
    ),
    Endpoint("GET", "/v1/accounts/acme/invitations", frozenset({"alice", "service", "platform"})),
    Endpoint("GET", "/v1/subjects/bob/invitations", frozenset({"bob", "service"})),
    Endpoint(
        "POST",
        "/v1/subjects/bob/invitations/initech/accept",
        frozenset({"bob"}),
        201,
        setup=_bob_is_invited_to_initech,
    ),
    Endpoint(
        "POST",
        "/v1/subjects/bob/invitations/initech/decline",
        frozenset({"bob"}),
        201,
        setup=_bob_is_invited_to_initech,
    ),
    Endpoint("GET", "/v1/accounts/acme/summary", frozenset({"alice"})),
    Endpoint("GET", "/v1/accounts/acme/events", frozenset({"alice"})),
    Endpoint(
        "POST",
        "/v1/decisions",
        frozenset({"service"}),
        200,
        {"subject": "bob", "purpose": "ai.training", "category": "content.audio"},
    ),
    Endpoint(
        "POST",
        "/v1/decisions/batch",
        frozenset({"service"}),
        200,
        {"purpose": "ai.training", "category": "content.audio", "subjects": ["bob"]},
    ),
    Endpoint("POST", "/v1/ledger/verify", frozenset({"platform"})),
    # The transparency log is public, as a CT log's tree heads are: no personal data in it.
    Endpoint("GET", "/v1/ledger/checkpoint", ANYONE),
    Endpoint("GET", "/v1/ledger/consistency?first=1", ANYONE),
    Endpoint("GET", "/v1/ledger/public-keys", ANYONE),
    Endpoint("GET", "/.well-known/jwks.json", ANYONE),
    Endpoint("GET", "/healthz", ANYONE),
    Endpoint("GET", "/readyz", ANYONE),
    Endpoint("GET", "/metrics", ANYONE),
]


def _manifest(api: Api) -> dict[str, Any]:
    data = Path(api.settings.data_dir or ".")
    (data / "m").mkdir(parents=True, exist_ok=True)
    (data / "m" / "items.csv").write_text(
        'item_id,subject_ids,category\nr1,"[""bob""]",content.audio\n', encoding="utf-8"
    )
    return {"manifest": "m/items.csv", "purpose": "ai.training", "name": "ds"}


def _dataset_id(api: Api) -> str:
    found = api.store.datasets(name="seed")
    if found:
        return found[0].id
    body = _manifest(api)
    out = Path(api.settings.data_dir or ".") / "seed"
    return api.store.gate(
        str(Path(api.settings.data_dir or ".") / body["manifest"]),
        purpose="ai.training",
        out=out,
        dataset_name="seed",
    ).dataset_id


def _model_body(api: Api) -> dict[str, Any]:
    return {"name": "asr", "datasets": [_dataset_id(api)]}


def _model_id(api: Api) -> str:
    models = api.store.models()
    if models:
        return models[0].id
    return api.store.register_model("seed-model", [_dataset_id(api)]).id


LINEAGE_ENDPOINTS: list[Endpoint] = [
    Endpoint("POST", "/v1/datasets", frozenset({"service"}), 201, _manifest),
    Endpoint("GET", "/v1/datasets", frozenset({"service"})),
    Endpoint("GET", "/v1/datasets/{dataset}", frozenset({"service"})),
    Endpoint("POST", "/v1/models", frozenset({"service"}), 201, _model_body),
    Endpoint("GET", "/v1/models", frozenset({"service"})),
    Endpoint("GET", "/v1/models/{model}", frozenset({"service"})),
    Endpoint("GET", "/v1/subjects/bob/impact", frozenset({"bob", "service"})),
    Endpoint("GET", "/v1/subjects/bob/report", frozenset({"bob"})),
]


def _webhook_id(api: Api) -> str:
    """A platform-wide subscription (account administrators cannot see it: 404)."""
    from consentry.outbound import subscriptions

    found = [s for s in subscriptions.list_all(api.store) if s.account is None]
    if found:
        return found[0].id
    return subscriptions.create(api.store, "https://hooks.example.com/consentry").id


ADMINS = frozenset({"alice", "zed"})
WEBHOOK_ENDPOINTS: list[Endpoint] = [
    Endpoint(
        "POST",
        "/v1/webhooks",
        frozenset({"alice", "zed", "platform"}),
        201,
        {"url": "https://hooks.example.com/consentry"},
    ),
    Endpoint("GET", "/v1/webhooks", frozenset({"alice", "zed", "platform"})),
    Endpoint("GET", "/v1/webhooks/{webhook}", frozenset({"platform"}), hidden=ADMINS),
    Endpoint("GET", "/v1/webhooks/{webhook}/deliveries", frozenset({"platform"}), hidden=ADMINS),
    Endpoint(
        "POST",
        "/v1/webhooks/{webhook}/replay",
        frozenset({"platform"}),
        202,
        {"from_seq": 1},
        hidden=ADMINS,
    ),
    Endpoint("DELETE", "/v1/webhooks/{webhook}", frozenset({"platform"}), 204, hidden=ADMINS),
]


def all_endpoints() -> list[Endpoint]:
    return ENDPOINTS + LINEAGE_ENDPOINTS + WEBHOOK_ENDPOINTS


@pytest.fixture
def api(make_api: Callable[..., Api], tmp_path: Path) -> Api:
    return make_api(data_dir=str(tmp_path / "data"))


@pytest.mark.parametrize("endpoint", all_endpoints(), ids=lambda e: f"{e.method} {e.path}")
def test_every_role(api: Api, endpoint: Endpoint) -> None:
    for caller in CALLERS:
        response = endpoint.call(api, caller)
        if caller in endpoint.allowed:
            assert response.status_code == endpoint.ok, (caller, response.text)
            continue
        expected = 401 if caller == "anonymous" else 404 if caller in endpoint.hidden else 403
        assert response.status_code == expected, (caller, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["status"] == expected
        assert problem["detail"], problem
        if expected == 401:
            assert response.headers["www-authenticate"].startswith("Bearer")


def test_the_matrix_covers_every_route(api: Api) -> None:
    """A new endpoint must join the matrix above."""
    spec = api.client.get("/openapi.json").json()
    covered = {(e.method, e.path.split("?")[0]) for e in all_endpoints()}
    for path, operations in spec["paths"].items():
        for method in operations:
            concrete = (
                path.replace("{version}", "2023-08")
                .replace("{lang}", "fr")
                .replace("{subject}", "bob" if "/members/" not in path else "dan")
                .replace("{account}", "acme")
                .replace("{event_id}", "{receipt}")
                .replace(
                    "{purpose}",
                    "ai.training" if "settings" in path else "ai.feature.meeting_summary",
                )
            )
            assert (method.upper(), concrete) in covered or any(
                m == method.upper() and _same_route(p, path) for m, p in covered
            ), f"{method.upper()} {path} is not in the role matrix"


def _same_route(concrete: str, template: str) -> bool:
    a, b = concrete.strip("/").split("/"), template.strip("/").split("/")
    return len(a) == len(b) and all(x == y or y.startswith("{") for x, y in zip(a, b, strict=True))


def test_a_person_who_administers_an_account_is_still_a_person(api: Api) -> None:
    body = {"action": "give", "purpose": "ai.training", "categories": ["content"]}
    r = api.client.post("/v1/subjects/alice/consents", json=body, headers=api.alice)
    assert r.status_code == 201
    assert api.client.get("/v1/subjects/alice", headers=api.alice).status_code == 200


def test_account_admin_reads_only_its_own_members(api: Api) -> None:
    zed = api.as_("zed", "account_admin", "globex")
    r = api.client.get("/v1/subjects/bob", headers=zed)
    assert r.status_code == 403
    assert "not a member of account 'globex'" in r.json()["detail"]
    assert api.client.get("/v1/subjects/zed", headers=zed).status_code == 200


# The tokens are made when the test runs (a callable each), never at collection: a token
# signed then can expire before a loaded machine reaches the test.
@pytest.mark.parametrize(
    ("make_token", "message"),
    [
        (lambda: sign("bob", "subject", exp=time.time() - 3600), "expired"),
        (lambda: sign("bob", "subject", aud="someone-else"), "audience"),
        (lambda: sign("bob", "subject", secret="another-secret-" + "y" * 32), "not valid"),
        (lambda: sign("bob", "wizard"), "role 'wizard'"),
        (lambda: sign("alice", "account_admin"), "names its account"),
        (lambda: "not-a-jwt", "not a JWT"),
        (lambda: "csk_0000_notakey", "API key is not valid"),
    ],
    ids=["expired", "audience", "secret", "role", "account", "garbage", "key"],
)
def test_bad_credentials_say_what_is_wrong(
    api: Api, make_token: Callable[[], str], message: str
) -> None:
    r = api.client.get("/v1/policies", headers=bearer(make_token()))
    assert r.status_code == 401
    assert message in r.json()["detail"]
