"""Random event sequences: every decision of the store equals a small reference model's.

The reference model below is written straight from DESIGN.md with plain loops over the event
list: no compiled plans, no packed records, no current-state tables. If the two ever disagree,
one of them misreads the design.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consentry import Store
from consentry.errors import AsOfOutOfRange, InvalidInput, ObjectionIgnored
from consentry.ledger.events import Draft, Kind
from consentry.policy import Policy, load_policies
from support import TEST_POLICY, FakeClock, sqlite_store_url

POLICIES = load_policies(TEST_POLICY)
SUBJECTS = ["s0", "s1", "s2", "s3"]
ACCOUNTS = ["a0", "a1"]
START = datetime(2023, 12, 20, tzinfo=UTC)


@dataclass
class Ev:
    at: datetime
    kind: str
    subject: str | None = None
    account: str | None = None
    purpose: str | None = None
    categories: tuple[str, ...] = ()
    status: str | None = None


# -- the reference model ------------------------------------------------------------------------


def parts(key: str) -> int:
    return len(key.split(".")) if key else 0


def covers(general: str, specific: str) -> bool:
    return general == "" or specific == general or specific.startswith(general + ".")


def policy_at(t: datetime) -> Policy | None:
    # All versions are published at START (store init), so "published by t" is t >= START.
    live = [p for p in POLICIES if p.effective <= t and t >= START]
    return max(live, key=lambda p: p.effective) if live else None


def best_rule(policy: Policy, p: str, c: str) -> Any:
    best, best_spec = None, (-1, -1)
    for rule in policy.rules:
        for rp in rule.purposes:
            for rc in rule.categories:
                if covers(rp, p) and covers(rc, c):
                    spec = (parts(rp), parts(rc))
                    if spec > best_spec:
                        best, best_spec = rule, spec
    return best


def latest_record(events: list[Ev], kinds: set[str], subject: str, p: str, c: str) -> Ev | None:
    """The subject's most specific record for (p, c): purpose depth first, then category."""
    candidates: dict[tuple[str, str], Ev] = {}
    for e in events:
        if e.kind not in kinds or e.subject != subject or not covers(e.purpose or "", p):
            continue
        for cat in e.categories or ("",):
            if covers(cat, c):
                candidates[(e.purpose or "", cat)] = e  # later events overwrite
    if not candidates:
        return None
    key = max(candidates, key=lambda k: (parts(k[0]), parts(k[1])))
    return candidates[key]


def accounts_of(events: list[Ev], subject: str) -> list[str]:
    accounts: list[str] = []
    for e in events:
        if e.subject == subject and e.kind == "member.add" and e.account not in accounts:
            accounts.append(e.account or "")
        if e.subject == subject and e.kind == "member.remove" and e.account in accounts:
            accounts.remove(e.account or "")
    return accounts


def account_value(events: list[Ev], kind: str, account: str, p: str) -> Ev | None:
    best: Ev | None = None
    for e in events:
        if (
            e.kind == kind
            and e.account == account
            and covers(e.purpose or "", p)
            and (best is None or parts(e.purpose or "") >= parts(best.purpose or ""))
        ):
            best = e
    return best


def valid_from(policy: Policy, rule_id: str, t: datetime) -> datetime | None:
    out = None
    for other in POLICIES:
        if other.effective <= policy.effective and t >= START:
            same = other.rules_by_id.get(rule_id)
            if same is not None and same.reconsent:
                out = other.effective if out is None else max(out, other.effective)
    return out


def reference_one(events: list[Ev], policy: Policy, rule: Any, s: str, p: str, t: datetime) -> str:
    accounts = accounts_of(events, s)
    if rule.account_enable:
        if not accounts:
            return "not_enabled"
        for a in accounts:
            f = account_value(events, "feature", a, p)
            if f is None or f.status != "enabled":
                return "not_enabled"
    settings_ = {a: account_value(events, "setting", a, p) for a in accounts}
    if rule.basis != "contract" and any(v and v.status == "off" for v in settings_.values()):
        return "account_off"
    if rule.basis == "contract":
        return "contract"
    if rule.basis == "legitimate_interest":
        rec = latest_record(events, {"object"}, s, p, CURRENT_C[0])
        if rule.objection and rec is not None and rec.status == "raised":
            return "objection"
        return "legitimate_interest"
    vf = valid_from(policy, rule.id, t)
    expires = rule.expires_after
    rec = latest_record(events, {"consent"}, s, p, CURRENT_C[0])
    if rec is not None:
        if rec.status == "given":
            if vf is not None and rec.at < vf:
                return "stale_consent"
            if expires is not None and rec.at + expires <= t:
                return "expired"
            return "consent"
        return str(rec.status)
    # No account context: account consent counts only if every account of the subject with
    # a setting for the purpose set it on; the oldest such setting then decides.
    said = [v for v in settings_.values() if v is not None]
    if rule.account_consent and said and all(v.status == "on" for v in said):
        v = min(said, key=lambda v: v.at)
        if vf is not None and v.at < vf:
            return "stale_consent"
        if expires is not None and v.at + expires <= t:
            return "expired"
        return "account_consent"
    return "no_consent"


CURRENT_C = [""]


def reference(
    events: list[Ev], subjects: list[str], p: str, c: str, labels: tuple[str, ...], t: datetime
) -> tuple[str, str | None]:
    events = [e for e in events if e.at <= t]
    CURRENT_C[0] = c
    policy = policy_at(t)
    if policy is None:
        return "no_basis", subjects[0]
    protected = {
        label
        for prot in policy.protected
        if any(covers(pp, p) for pp in prot.purposes)
        for label in prot.labels
    }
    if protected & set(labels):
        return "protected_label", subjects[0]
    rule = best_rule(policy, p, c)
    if rule is None:
        return "no_basis", subjects[0]
    if rule.basis == "prohibited":
        return "prohibited", subjects[0]
    who = subjects if rule.parties == "all" else subjects[:1]
    answers = [(reference_one(events, policy, rule, s, p, t), s) for s in who]
    allow = {"contract", "legitimate_interest", "consent", "account_consent"}
    for reason, s in answers:
        if reason not in allow:
            return reason, s
    return answers[0]


# -- random operations --------------------------------------------------------------------------

cats = st.lists(
    st.sampled_from(["content", "content.audio", "content.video"]),
    min_size=1,
    max_size=2,
    unique=True,
)
op = st.one_of(
    st.tuples(
        st.just("consent"),
        st.sampled_from(["given", "refused", "withdrawn"]),
        st.sampled_from(SUBJECTS),
        st.sampled_from(["ai.training", "ai.training.generative", "ai"]),
        cats,
    ),
    st.tuples(
        st.just("object"),
        st.booleans(),
        st.sampled_from(SUBJECTS),
        st.sampled_from(["improvement", "improvement.product", "service.safety"]),
        st.lists(st.sampled_from(["service_data", "service_data.usage", "content"]), max_size=1),
    ),
    st.tuples(
        st.just("member"), st.booleans(), st.sampled_from(SUBJECTS), st.sampled_from(ACCOUNTS)
    ),
    st.tuples(
        st.just("setting"),
        st.sampled_from(["off", "members_choose", "on"]),
        st.sampled_from(ACCOUNTS),
        st.sampled_from(["ai", "ai.training", "improvement", "ai.feature.summary"]),
    ),
    st.tuples(
        st.just("feature"),
        st.booleans(),
        st.sampled_from(ACCOUNTS),
        st.sampled_from(["ai.feature", "ai.feature.summary"]),
    ),
)
steps = st.lists(st.tuples(st.integers(0, 24 * 25), op), min_size=1, max_size=14)

QUERIES = [
    (subjects, p, c, labels)
    for subjects in (["s0"], ["s1", "s2"], ["s3", "s0", "s1"])
    for p in (
        "ai.training",
        "ai.training.generative",
        "ai.training.feature",
        "ai.training.third_party",
        "improvement.product",
        "service.safety",
        "ai.feature.summary",
        "service.delivery",
    )
    for c in ("content.audio", "content.video", "service_data.usage")
    for labels in ((), ("health",))
]


def account_change(store: Store, kind: Kind, account: str, purpose: str, status: str) -> None:
    """Record an account setting or feature switch. One the policy gives no meaning is
    refused by the Store (issue 9); it is appended as a bulk import would (or an older ledger
    holds it), so the model still checks that decisions ignore it."""
    try:
        if kind is Kind.ACCOUNT_SETTING:
            store.set_account(account, purpose, status)
        else:
            store.set_feature(account, purpose, status == "enabled")
    except InvalidInput:
        store.append([Draft(kind=kind, account=account, purpose=purpose, status=status)])


def run(store: Store, clock: FakeClock, ops: list[tuple[int, tuple[Any, ...]]]) -> list[Ev]:
    events: list[Ev] = []
    for hours, (name, *args) in ops:
        clock.advance(hours=hours, microseconds=1)
        t = clock()
        if name == "consent":
            status, s, p, cs = args
            call = {
                "given": store.give_consent,
                "refused": store.refuse_consent,
                "withdrawn": store.withdraw_consent,
            }[status]
            call(s, p, cs)
            events.append(Ev(t, "consent", s, None, p, tuple(cs), status))
        elif name == "object":
            lift, s, p, cs = args
            try:
                store.object(s, p, cs, lift=lift)
            except ObjectionIgnored:  # the store refuses it; a ledger may still hold one
                kind = Kind.OBJECTION_LIFTED if lift else Kind.OBJECTION_RAISED
                store.append(
                    [
                        Draft(
                            kind=kind,
                            actor=s,
                            subject=s,
                            purpose=p,
                            categories=tuple(sorted(set(cs))),
                        )
                    ]
                )
            events.append(Ev(t, "object", s, None, p, tuple(cs), "lifted" if lift else "raised"))
        elif name == "member":
            add, s, a = args
            if add:
                store.add_member(s, a)
                events.append(Ev(t, "member.add", s, a))
            elif a in accounts_of(events, s):
                store.remove_member(s, a)
                events.append(Ev(t, "member.remove", s, a))
        elif name == "setting":
            value, a, p = args
            account_change(store, Kind.ACCOUNT_SETTING, a, p, value)
            events.append(Ev(t, "setting", None, a, p, (), value))
        else:
            on, a, p = args
            status = "enabled" if on else "disabled"
            account_change(store, Kind.ACCOUNT_FEATURE, a, p, status)
            events.append(Ev(t, "feature", None, a, p, (), status))
    return events


#: When the store's first policy version (v1, effective 2024-01-01) is in force: from its
#: effective time or its publication (at START), whichever is later.
FIRST_IN_FORCE = max(START, datetime(2024, 1, 1, tzinfo=UTC))


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(ops=steps, probe=st.integers(0, 13), later=st.integers(0, 24 * 60))
def test_store_agrees_with_the_reference_model(
    tmp_path_factory: Any,
    migrated_sqlite: Path,
    ops: list[tuple[int, tuple[Any, ...]]],
    probe: int,
    later: int,
) -> None:
    path = tmp_path_factory.mktemp("model") / "s.db"
    clock = FakeClock(START)
    store = Store(sqlite_store_url(migrated_sqlite, path), clock=clock)
    store.init(policies=[TEST_POLICY])
    events = run(store, clock, ops)
    clock.advance(hours=later)
    now = clock()
    fresh = Store(store.url, clock=clock)  # a snapshot loaded from the current-state tables
    times = [e.at for e in events] or [START + timedelta(days=probe)]
    past = times[min(probe, len(times) - 1)] + timedelta(microseconds=probe % 2)
    for subjects, p, c, labels in QUERIES:
        want = reference(events, subjects, p, c, labels, now)
        got = store.check(subjects, p, c, labels)
        assert (str(got.reason), got.subject) == want, (subjects, p, c, labels, "now")
        got_fresh = fresh.check(subjects, p, c, labels)
        assert (str(got_fresh.reason), got_fresh.subject) == want, (subjects, p, c, "fresh")
        if past > now or past < FIRST_IN_FORCE:  # no decision to replay: refused
            with pytest.raises(AsOfOutOfRange):
                store.check(subjects, p, c, labels, as_of=past)
            continue
        want_past = reference(events, subjects, p, c, labels, past)
        got_past = store.check(subjects, p, c, labels, as_of=past)
        assert (str(got_past.reason), got_past.subject) == want_past, (subjects, p, c, "past")
    fresh.close()
    store.close()
