"""``consentry gate verify DIR``: check a gate's output directory against its lineage record.

Recomputes from the files what ``report.json`` states (counts, item-id digests, the subject
index) and, with a store, compares the report with the record the store kept for it.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInput, NotFound
from . import manifest as mf
from .duck import connect
from .measure import measure
from .result import REPORT_NAME, LineageRecord, md5_value, multiset_digest, record_digest

if TYPE_CHECKING:
    from ..store import Store


@dataclass
class VerifyReport:
    """The outcome of verifying one output directory."""

    out: Path
    dataset_id: str | None
    #: check name -> (ok, detail)
    checks: dict[str, tuple[bool, str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(ok for ok, _ in self.checks.values())

    @property
    def problems(self) -> list[str]:
        return [f"{name}: {detail}" for name, (ok, detail) in self.checks.items() if not ok]

    def check(self, name: str, ok: bool, detail: str) -> None:
        self.checks[name] = (ok, detail)

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "dataset_id": self.dataset_id,
            "ok": self.ok,
            "checks": [
                {"check": name, "ok": ok, "detail": detail}
                for name, (ok, detail) in self.checks.items()
            ],
        }


def read_report(out: Path) -> LineageRecord:
    path = out / REPORT_NAME
    if not out.is_dir():
        raise NotFound(f"{out} is not a directory", hint="pass a gate's output directory")
    if not path.exists():
        raise NotFound(
            f"{out} has no {REPORT_NAME}", hint="pass the directory `consentry gate --out` wrote"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"cannot read {path}: {exc}", hint="is it a gate report?") from None
    if not isinstance(data, dict) or "dataset_id" not in data:
        raise InvalidInput(f"{path} is not a gate report", hint="is it a gate report?")
    sha = str(data.pop("record_sha256", ""))
    return LineageRecord(data, sha)


def verify_output(out: str | Path, store: Store | None = None) -> VerifyReport:
    """Recompute an output directory's counts and digests and compare them with its report
    (and, with ``store``, the report with the stored lineage record and subject index)."""
    out = Path(out)
    record = read_report(out)
    d = record.data
    report = VerifyReport(out, str(d["dataset_id"]))
    report.check(
        "report",
        record_digest(d) == record.sha256,
        "report.json hashes to its record_sha256"
        if record_digest(d) == record.sha256
        else "report.json does not hash to its record_sha256: it was changed",
    )
    fmt = d["outputs"]["format"]
    files = {k: out / v for k, v in d["outputs"]["files"].items()}
    missing = [str(p) for p in files.values() if not p.exists()]
    if missing:
        report.check("files", False, f"missing: {', '.join(missing)}")
        return report
    report.check("files", True, ", ".join(sorted(p.name for p in files.values())))
    tmp = Path(tempfile.mkdtemp(prefix="consentry-verify-"))
    con = connect(None, None, tmp / "spill")
    try:
        allowed = mf.open_source(con, files["allowed"], tmp / "a", input_format=fmt)
        excluded = mf.open_source(con, files["excluded"], tmp / "e", input_format=fmt)
        shape = mf.check_shape(allowed)
        parties_all = [c for c, p in d["categories"].items() if p.get("parties") == "all"]
        m = measure(con, allowed, excluded, shape, parties_all, d["digests"]["method"])
    finally:
        con.close()
        shutil.rmtree(tmp, ignore_errors=True)
    counts = d["counts"]
    _same(report, "allowed items", counts["allowed"], m.allowed)
    _same(report, "excluded items", counts["excluded"], m.excluded)
    _same(report, "excluded by reason", counts["excluded_by_reason"], m.excluded_by_reason)
    digests = d["digests"]
    _same(report, "output digest", digests["output_sha256"], m.output_sha256)
    _same(report, "input digest", digests["input_sha256"], m.input_sha256)
    _same(report, "excluded digest", digests["excluded_sha256"], m.excluded_sha256)
    _same(report, "subjects", d["subjects"]["count"], m.subjects)
    _same(report, "subject index digest", d["subjects"]["index_sha256"], m.subjects_sha256)
    if store is not None:
        _against_store(report, store, record)
    return report


def _same(report: VerifyReport, name: str, expected: Any, found: Any) -> None:
    if expected == found:
        report.check(name, True, _short(expected))
    else:
        report.check(name, False, f"report says {_short(expected)}, files give {_short(found)}")


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if isinstance(value, dict) else str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _against_store(report: VerifyReport, store: Store, record: LineageRecord) -> None:
    from .. import lineage

    try:
        stored = lineage.get_dataset(store, record.dataset_id)
    except NotFound:
        report.check("store record", False, f"the store has no dataset {record.dataset_id}")
        return
    ok = stored.record.sha256 == record.sha256 and dict(stored.record.data) == dict(record.data)
    report.check(
        "store record",
        ok,
        f"matches record {stored.record.sha256[:16]}…"
        if ok
        else "the store's lineage record differs from report.json",
    )
    report.check(
        "store record digest",
        lineage.check_record(stored),
        "the stored record hashes to its digest"
        if lineage.check_record(stored)
        else "the stored record no longer hashes to its digest",
    )
    n = total = 0
    for subject, items, categories in lineage.dataset_index(store, record.dataset_id):
        n += 1
        total += md5_value(f"{subject}\t{items}\t{categories}")
    # The same line the SQL side digests (measure.index_line_sql): subject TAB items TAB cats.
    _same(report, "store subject index", record.data["subjects"]["index_sha256"],
          multiset_digest(n, total))  # fmt: skip
