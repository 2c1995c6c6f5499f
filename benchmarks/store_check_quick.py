"""Store.check / check_many against Decider.check / codes in CPU time (process_time),
one tree per run: PYTHONPATH=<tree>/src python benchmarks/store_check_quick.py <label>.
(docs/performance.md, issue 13; the instruction counts are store_check_cpu.py)."""

import random
import sys
import tempfile
import time

from consentry import Store
from consentry.ledger.events import Draft, Kind

d = tempfile.mkdtemp()
s = Store(f"sqlite:///{d}/x.db")
s.init(
    policies=[
        str(
            __import__("pathlib").Path(__file__).resolve().parent.parent
            / "policies"
            / "meetings.yaml"
        )
    ]
)
v = s.policy().version
rng = random.Random(3)
drafts = []
for i in range(20000):
    u = f"u{i:05d}"
    drafts.append(Draft(kind=Kind.MEMBER_ADDED, subject=u, account=f"a{i % 50}"))
    if rng.random() < 0.3:
        drafts.append(
            Draft(
                kind=Kind.CONSENT_GIVEN,
                actor=u,
                subject=u,
                purpose="ai.training",
                categories=("content",),
                policy_version=v,
                notice_version=v,
                language="en",
                method="b",
            )
        )
s.append(drafts)
dec = s.decider()
asked = [f"u{rng.randrange(20000):05d}" for _ in range(20000)]
P, C = "ai.training", "content.audio"


def cpu(f, n):
    best = 1e9
    for _ in range(3):
        t = time.process_time()
        f()
        best = min(best, time.process_time() - t)
    return best / n


now = time.time_ns() // 1000
for s_ in asked:
    dec.check(s_, P, C, (), now)
    s.check(s_, P, C)
res = {}
for _round in range(2):
    res.setdefault("Decider.check", []).append(
        cpu(lambda: [dec.check(x, P, C, (), now) for x in asked], len(asked)) * 1e6
    )
    res.setdefault("Store.check", []).append(
        cpu(lambda: [s.check(x, P, C) for x in asked[:2000]], 2000) * 1e6
    )
    res.setdefault("Decider.codes", []).append(
        len(asked)
        / cpu(
            lambda: [dec.codes(asked[i : i + 500], P, C, (), now) for i in range(0, 20000, 500)], 1
        )
    )
    res.setdefault("Store.check_many", []).append(
        len(asked)
        / cpu(lambda: [s.check_many(asked[i : i + 500], P, C) for i in range(0, 20000, 500)], 1)
    )
print(sys.argv[1], {k: [round(x, 2) for x in v] for k, v in res.items()})
