"""The answer of an evaluation: allow, deny or unset, which signal decided and the evidence."""

from __future__ import annotations

from typing import Final, NamedTuple

ALLOW: Final = "allow"
DENY: Final = "deny"
UNSET: Final = "unset"

# Signal names, in the order their findings are reported.
ROBOTS: Final = "robots.txt"
ROBOTS_CONTENT_USAGE: Final = "robots.txt content-usage"
ROBOTS_CONTENT_SIGNAL: Final = "robots.txt content-signal"
CONTENT_USAGE: Final = "content-usage"
TDMREP: Final = "tdmrep"
X_ROBOTS_TAG: Final = "x-robots-tag"
HTML_META: Final = "html meta"
AI_TXT: Final = "ai.txt"
C2PA: Final = "c2pa"
FETCH: Final = "fetch"

SIGNALS: tuple[str, ...] = (
    ROBOTS,
    CONTENT_USAGE,
    ROBOTS_CONTENT_USAGE,
    ROBOTS_CONTENT_SIGNAL,
    TDMREP,
    X_ROBOTS_TAG,
    HTML_META,
    AI_TXT,
    C2PA,
)


class Finding(NamedTuple):
    """What one signal says: its decision and the evidence (the line, header or entry)."""

    signal: str
    decision: str
    evidence: str


class UrlDecision(NamedTuple):
    """The combined answer for one URL, user agent and purpose.

    ``decision`` is ``deny`` when any signal denies (the most restrictive wins, as the aipref
    vocabulary combines statements), else ``allow`` when any allows, else ``unset``. ``signal``
    and ``evidence`` name the finding that decided; ``findings`` holds every signal that said
    something. ``error`` is set when something needed could not be fetched. (A named tuple:
    immutable, and cheap to build, which matters when checking millions of header sets.)
    """

    url: str
    user_agent: str
    purpose: str
    decision: str
    signal: str
    evidence: str
    findings: tuple[Finding, ...] = ()
    error: str = ""

    @property
    def allowed(self) -> bool:
        return self.decision == ALLOW

    @property
    def denied(self) -> bool:
        return self.decision == DENY

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready mapping (findings as a list of objects)."""
        return {
            "url": self.url,
            "user_agent": self.user_agent,
            "purpose": self.purpose,
            "decision": self.decision,
            "signal": self.signal,
            "evidence": self.evidence,
            "error": self.error,
            "findings": [
                {"signal": f.signal, "decision": f.decision, "evidence": f.evidence}
                for f in self.findings
            ],
        }


def combine(
    url: str, user_agent: str, purpose: str, findings: list[Finding], error: str = ""
) -> UrlDecision:
    """The most restrictive of ``findings``: the first deny, else the first allow, else unset."""
    first_allow = None
    for f in findings:
        if f.decision == DENY:
            return UrlDecision(
                url, user_agent, purpose, DENY, f.signal, f.evidence, tuple(findings), error
            )
        if first_allow is None and f.decision == ALLOW:
            first_allow = f
    if first_allow is not None:
        return UrlDecision(
            url,
            user_agent,
            purpose,
            ALLOW,
            first_allow.signal,
            first_allow.evidence,
            tuple(findings),
            error,
        )
    evidence = "no signal states a preference" if not error else f"not checked: {error}"
    return UrlDecision(url, user_agent, purpose, UNSET, "", evidence, tuple(findings), error)
