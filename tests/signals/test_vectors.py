"""The worked examples of RFC 9309, the aipref drafts and the TDMRep report, as named vectors."""

from __future__ import annotations

import json
from typing import Any

import pytest

from consentry.signals import RobotsTxt, TdmRepFile, combine_preferences, evaluate
from consentry.signals.aipref import parse_content_usage

from .conftest import ids, load_vectors

RFC9309 = load_vectors("rfc9309.json")
AIPREF = load_vectors("aipref.json")
DRAFTS = load_vectors("aipref_drafts.json")
TDMREP = load_vectors("tdmrep.json")
ERRATA = load_vectors("datadiligence.json")


@pytest.mark.parametrize("vector", RFC9309["vectors"], ids=ids(RFC9309["vectors"]))
def test_rfc9309(vector: dict[str, Any]) -> None:
    robots = RobotsTxt.parse(RFC9309["files"][vector["file"]])
    url = "https://example.com" + vector["path"]
    answer = robots.check(url, vector["user_agent"])
    assert answer.allowed is vector["allowed"]
    # the same answer through evaluate(): a robots.txt denial denies every purpose
    decision = evaluate(
        url,
        user_agent=vector["user_agent"],
        purpose="train-ai",
        robots=RFC9309["files"][vector["file"]],
    )
    assert (decision.decision == "deny") is (not vector["allowed"])
    if not vector["allowed"]:
        assert decision.signal == "robots.txt"
        assert decision.evidence.startswith("robots.txt line ")


@pytest.mark.parametrize("vector", AIPREF["fields"], ids=ids(AIPREF["fields"]))
def test_aipref_vocab_fields(vector: dict[str, Any]) -> None:
    assert parse_content_usage(vector["field"]) == vector["expected"]
    # as a header field, train-ai decides (or not) the train-ai purpose
    decision = evaluate(
        "https://example.com/a",
        user_agent="ExampleBot",
        purpose="train-ai",
        headers={"Content-Usage": vector["field"]},
    )
    expected = vector["expected"].get("train-ai")
    wanted = (
        vector.get("train_ai_decision") or {None: "unset", True: "allow", False: "deny"}[expected]
    )
    assert decision.decision == wanted


@pytest.mark.parametrize("vector", DRAFTS["vectors"], ids=ids(DRAFTS["vectors"]))
def test_aipref_drafts(vector: dict[str, Any]) -> None:
    """Each draft's labels, read as that draft defined them, with the draft in the evidence."""
    for purpose, wanted in vector["decisions"].items():
        decision = evaluate(
            "https://example.com/a",
            user_agent="ExampleBot",
            purpose=purpose,
            headers={"Content-Usage": vector["field"]},
        )
        assert decision.decision == wanted, (purpose, decision)
        draft = vector.get("evidence", {}).get(purpose)
        if draft:
            assert draft in decision.evidence, decision.evidence
    # the same statement in robots.txt (attach §3) gives the same answers
    robots = "User-Agent: *\nContent-Usage: / " + vector["field"] + "\n"
    for purpose, wanted in vector["decisions"].items():
        decision = evaluate(
            "https://example.com/a", user_agent="ExampleBot", purpose=purpose, robots=robots
        )
        assert decision.decision == wanted, (purpose, decision)


@pytest.mark.parametrize("vector", AIPREF["combining"], ids=ids(AIPREF["combining"]))
def test_aipref_combining(vector: dict[str, Any]) -> None:
    assert combine_preferences(vector["statements"]) == vector["expected"]


@pytest.mark.parametrize("vector", AIPREF["robots"], ids=ids(AIPREF["robots"]))
def test_aipref_attach_robots(vector: dict[str, Any]) -> None:
    text = AIPREF["robots_files"][vector["file"]]
    robots = RobotsTxt.parse(text)
    url = "https://example.com" + vector["path"]
    assert robots.check(url, vector["user_agent"]).allowed is vector["crawl"]
    assert robots.content_usage(url, vector["user_agent"]).preferences == vector["usage"]
    decision = evaluate(url, user_agent=vector["user_agent"], purpose="train-ai", robots=text)
    if not vector["crawl"]:
        assert (decision.decision, decision.signal) == ("deny", "robots.txt")
    else:
        expected = vector["usage"].get("train-ai")
        assert decision.decision == {None: "unset", True: "allow", False: "deny"}[expected]
        if expected is not None:
            assert decision.signal == "robots.txt content-usage"
            assert "Content-Usage:" in decision.evidence


@pytest.mark.parametrize("vector", TDMREP["vectors"], ids=ids(TDMREP["vectors"]))
def test_tdmrep(vector: dict[str, Any]) -> None:
    tdm_file = TDMREP["files"].get(vector.get("file", ""))
    decision = evaluate(
        "https://provider.com" + vector["path"],
        user_agent="ExampleBot",
        purpose="train-ai",
        tdmrep=json.dumps(tdm_file) if tdm_file is not None else None,
        headers=vector.get("headers"),
        html=vector.get("html"),
    )
    assert decision.decision == vector["decision"], decision
    if vector["decision"] != "unset":
        assert decision.signal == "tdmrep"
    if "evidence_contains" in vector:
        assert vector["evidence_contains"] in decision.evidence


def test_tdmrep_file_lookup_reports_the_rule() -> None:
    rules = TdmRepFile.parse(json.dumps(TDMREP["files"]["three-groups"]))
    found = rules.lookup("https://provider.com/directory-b/html/x.html")
    assert found is not None
    assert found.reservation == 1
    assert found.policy == "https://provider.com/policies/policy.json"
    assert found.evidence.startswith("tdmrep.json rule 2:")


@pytest.mark.parametrize("vector", ERRATA["vectors"], ids=ids(ERRATA["vectors"]))
def test_datadiligence_errata_answered_correctly(vector: dict[str, Any]) -> None:
    decision = evaluate(
        "https://example.com/art.png",
        user_agent=vector["user_agent"],
        purpose="train-ai",
        headers=vector["headers"],
    )
    assert decision.decision == vector["expected"]
    if vector["expected"] == "deny":
        assert decision.evidence  # the header that decided


@pytest.mark.parametrize("vector", ERRATA["vectors"], ids=ids(ERRATA["vectors"]))
def test_datadiligence_really_answers_these_wrongly(vector: dict[str, Any]) -> None:
    rules = pytest.importorskip("datadiligence.rules", reason="datadiligence not installed")
    headers = vector["headers"]
    allowed = rules.XRobotsTagHeader(vector["user_agent"]).is_allowed(
        headers=headers
    ) and rules.TDMRepHeader().is_allowed(headers=headers)
    assert allowed is vector["datadiligence_allows"]
    consentry_allows_use = vector["expected"] != "deny"  # unset does not forbid use
    assert (allowed != consentry_allows_use) is vector["datadiligence_wrong"]


SIGNAL = load_vectors("contentsignal.json")


@pytest.mark.parametrize("vector", SIGNAL["vectors"], ids=ids(SIGNAL["vectors"]))
def test_content_signal(vector: dict[str, Any]) -> None:
    text = SIGNAL["files"][vector["file"]]
    decision = evaluate(
        "https://example.com" + vector["path"],
        user_agent=vector.get("user_agent", "ExampleBot"),
        purpose=vector["purpose"],
        robots=text,
    )
    assert decision.decision == vector["decision"], decision
    if "signal" in vector:
        assert decision.signal == vector["signal"], decision
    if decision.signal == "robots.txt content-signal":
        assert "Content-Signal:" in decision.evidence


def test_content_signal_parse_and_serialize() -> None:
    from consentry.signals import parse_content_signal, serialize_content_signal

    assert parse_content_signal("search=yes, ai-train=no, ai-input=no") == {
        "search": True,
        "ai-train": False,
        "ai-input": False,
    }
    assert parse_content_signal("ai-train=no, ai-train=yes") == {"ai-train": True}  # last wins
    assert parse_content_signal("") == {}
    value = serialize_content_signal({"ai-train": False, "ai-input": False, "search": True})
    assert value == "search=yes, ai-input=no, ai-train=no"
    assert parse_content_signal(value) == {"search": True, "ai-input": False, "ai-train": False}
    with pytest.raises(ValueError, match="unknown Content-Signal keys"):
        serialize_content_signal({"train-ai": False})
