"""Decisions: one item, or a batch, with the reason, rule and events behind each."""

from __future__ import annotations

from collections import Counter
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined,unused-ignore]
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from ...decide import ALLOW_REASONS, Decider, Decision, Reason
from ...errors import InvalidInput
from ..auth import Role, require_role
from ..common import dumps, json_response
from ..context import Service
from ..deps import BEARER, StrictRoute, authenticate, caller_of, json_body, parse_json
from ..metrics import Metrics
from ..models import BatchIn, BatchOut, DecisionIn, DecisionOut, problems

router = APIRouter(prefix="/v1/decisions", tags=["decisions"], route_class=StrictRoute)


@router.post(
    "",
    response_model=DecisionOut,
    responses=problems(401, 403, 404, 422, 503),
    summary="Decide one item",
    openapi_extra={**BEARER, **json_body(DecisionIn)},
)
async def decide(request: Request) -> Response:
    """Allow or deny ``purpose`` on an item of ``category`` whose subjects are given (the first
    is its owner), always with the reason, the rule and the ledger events that decided it.
    ``as_of`` decides at a past time; ``explain`` adds event ids and the rule's notice."""
    headers = request.headers
    body = await decide_one(
        request.app.state.service,
        headers.get("authorization"),
        headers.get("content-type"),
        await request.body(),
    )
    return Response(body, media_type="application/json")


async def decide_one(
    svc: Service, authorization: str | None, content_type: str | None, raw: bytes
) -> bytes:
    """``POST /v1/decisions`` from its raw parts to its JSON answer; errors are raised.

    The route above and the ASGI fast path (:mod:`consentry.api.fastpath`) both call this:
    one implementation, whichever way the request arrives."""
    caller = caller_of(svc, authorization)
    require_role(caller, Role.SERVICE, action="deciding")
    body = parse_json(content_type, raw, DecisionIn)
    people = body.people()
    if body.as_of is not None or body.explain:
        # Replaying the ledger, or naming events by id, reads the database: in a thread.
        data = await run_in_threadpool(_decide_with_reads, svc, body, people)
    else:
        decider = await svc.snapshot.adecider(body.min_seq)

        def check() -> tuple[Decision, int]:
            decision = decider.check(
                people, body.purpose, body.category, body.labels, account=body.account
            )
            return decision, decider.state.seq

        decision, seq = await svc.snapshot.arun_locked(check)
        svc.metrics.decision(decision.reason, decision.allowed)
        data = decision.to_dict()
        data["ledger_seq"] = seq
    return dumps(data)


def _decide_with_reads(svc: Service, body: DecisionIn, people: list[str]) -> dict[str, Any]:
    if body.as_of is not None:
        decision = svc.store.check(
            people, body.purpose, body.category, body.labels, as_of=body.as_of,
            account=body.account,
        )  # fmt: skip
        seq = svc.store.head_seq()
    else:
        decider = svc.snapshot.decider(body.min_seq)
        with svc.snapshot.lock:
            decision = decider.check(
                people, body.purpose, body.category, body.labels, account=body.account
            )
            seq = decider.state.seq
    svc.metrics.decision(decision.reason, decision.allowed)
    data: dict[str, Any] = svc.store.explain(decision) if body.explain else decision.to_dict()
    data["ledger_seq"] = seq
    return data


@router.post(
    "/batch",
    response_model=BatchOut,
    responses=problems(401, 403, 404, 422, 503),
    summary="Decide many items at once",
    openapi_extra={**BEARER, **json_body(BatchIn)},
)
async def decide_batch(request: Request) -> Response:
    """``subjects``: one single-subject decision each for the top-level purpose and category
    (the fast path: a pipeline asking about a million rows sends them in batches). ``items``:
    each item its own subjects and, optionally, its own purpose, category and labels."""
    svc, caller = authenticate(request)
    require_role(caller, Role.SERVICE, action="deciding")
    raw = await request.body()
    # Validating and deciding ten thousand items takes milliseconds: in a thread, not on the
    # event loop that answers everyone else.
    return await run_in_threadpool(_decide_batch, svc, request.headers.get("content-type"), raw)


def _decide_batch(svc: Service, content_type: str | None, raw: bytes) -> Response:
    body = parse_json(content_type, raw, BatchIn)
    limit = svc.settings.batch_max_items
    n = len(body.subjects if body.subjects is not None else body.items or [])
    if n > limit:
        raise InvalidInput(
            f"a batch holds at most {limit} decisions, this one {n}",
            hint="split it into several requests",
            field="subjects" if body.subjects else "items",
        )
    decider = svc.snapshot.decider(body.min_seq)
    if body.subjects is not None and not body.explain:
        return Response(
            _subject_batch(svc, decider, body, body.subjects), media_type="application/json"
        )
    results: list[dict[str, object]] = []
    allowed_count = 0
    now = decider.now_us()
    seq = decider.state.seq
    if body.subjects is not None:
        purpose, category = _need(body.purpose, "purpose"), _need(body.category, "category")
        for chunk in _chunks(body.subjects):
            # The lock is taken per chunk, so that single decisions (and catch-ups) waiting
            # for it never wait for a whole batch.
            with svc.snapshot.lock:
                for s in chunk:
                    d = decider.check([s], purpose, category, body.labels, now, body.account)
                    results.append(d.to_dict())
                    allowed_count += d.allowed
    else:
        items = body.items or []
        for start in range(0, len(items), CHUNK):
            with svc.snapshot.lock:
                for i, item in enumerate(items[start : start + CHUNK], start):
                    purpose = _need(item.purpose or body.purpose, f"items[{i}].purpose")
                    category = _need(item.category or body.category, f"items[{i}].category")
                    labels = item.labels if item.labels is not None else body.labels
                    account = item.account if item.account is not None else body.account
                    d = decider.check(item.subjects, purpose, category, labels, now, account)
                    allowed_count += d.allowed
                    if body.explain:
                        results.append(d.to_dict())
                    else:
                        results.append(
                            {"subject": d.subject, "allowed": d.allowed, "reason": d.reason.value}
                        )
    _count(svc.metrics, results)
    if body.explain:
        for result in results:
            result["ledger_seq"] = seq
    return json_response(
        {
            "ledger_seq": seq,
            "count": len(results),
            "allowed": allowed_count,
            "denied": len(results) - allowed_count,
            "results": results,
        }
    )


#: For each reason code, the end of its result object, ready to write.
_TAILS = tuple(
    f',"allowed":{"true" if r in ALLOW_REASONS else "false"},"reason":"{r.value}"}}' for r in Reason
)
_ALLOW_CODES = tuple(i for i, r in enumerate(Reason) if r in ALLOW_REASONS)


def _subject_batch(svc: Service, decider: Decider, body: BatchIn, subjects: list[str]) -> bytes:
    """The fast path of a batch: one byte per decision from :meth:`Decider.codes`, and the
    JSON written directly (a result object per subject would cost more than deciding)."""
    purpose, category = _need(body.purpose, "purpose"), _need(body.category, "category")
    now = decider.now_us()
    seq = decider.state.seq
    codes = bytearray()
    for chunk in _chunks(subjects):
        with svc.snapshot.lock:  # per chunk: single decisions never wait for a whole batch
            codes += decider.codes(chunk, purpose, category, body.labels, now, body.account)
    tails, quote = _TAILS, encode_basestring_ascii
    results = ",".join(
        ['{"subject":' + quote(s) + tails[c] for s, c in zip(subjects, codes, strict=True)]
    )
    allowed = sum(codes.count(c) for c in _ALLOW_CODES)
    reasons = tuple(Reason)
    for code, n in Counter(codes).items():
        svc.metrics.decision(reasons[code].value, code in _ALLOW_CODES, n)
    head = (
        f'{{"ledger_seq":{seq},"count":{len(codes)},"allowed":{allowed},'
        f'"denied":{len(codes) - allowed},"results":['
    )
    return (head + results + "]}").encode("utf-8")


CHUNK = 2000


def _chunks(subjects: list[str]) -> list[list[str]]:
    return [subjects[i : i + CHUNK] for i in range(0, len(subjects), CHUNK)]


def _need(value: str | None, field: str) -> str:
    if value is None:
        raise InvalidInput(
            f"{field}: required (give it on the item or at the top of the batch)", field=field
        )
    return value


def _count(metrics: Metrics, results: list[dict[str, object]]) -> None:
    counts = Counter((str(r["reason"]), bool(r["allowed"])) for r in results)
    for (reason, allowed), n in counts.items():
        metrics.decision(reason, allowed, n)
