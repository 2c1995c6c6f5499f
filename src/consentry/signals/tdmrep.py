"""W3C TDM Reservation Protocol (TDMRep, Final Community Group Report).

A ``tdm-reservation`` of ``1`` reserves text-and-data-mining rights (the EU DSM Directive
Art. 4 opt-out); ``0`` says they are not reserved; any other value is a protocol error and
counts as unset. ``tdm-policy`` is a URL where a licence may be had. Three places say it:

1. ``/.well-known/tdmrep.json``: an array of ``{"location", "tdm-reservation", "tdm-policy"}``
   rules; the **first** rule whose location pattern matches the path applies (patterns use the
   robots.txt ``*`` and ``$``);
2. the ``tdm-reservation`` / ``tdm-policy`` HTTP response header fields, which supersede the
   file;
3. ``<meta name="tdm-reservation">`` / ``<meta name="tdm-policy">`` in HTML, which supersede
   both.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..errors import InvalidInput
from .robots import normalize_path, pattern_matches, url_path


@dataclass(frozen=True, slots=True)
class TdmDeclaration:
    """A TDMRep declaration: ``reservation`` is 1, 0 or None (unset), with its source."""

    reservation: int | None
    policy: str | None
    source: str  # "tdmrep.json", "header" or "html meta"
    evidence: str


@dataclass(frozen=True, slots=True)
class TdmRule:
    location: str  # as written
    pattern: str  # normalised
    reservation: int | None
    policy: str | None
    index: int


class TdmRepFile:
    """A parsed ``/.well-known/tdmrep.json``."""

    def __init__(self, rules: list[TdmRule]) -> None:
        self.rules = rules

    @classmethod
    def parse(cls, data: str | bytes | list[object]) -> TdmRepFile:
        """Parse the file's JSON (text, bytes or the decoded array).

        Rules without a string ``location`` are skipped; a reservation other than 0 or 1 is
        kept as unset (a protocol error, not a parse failure).
        """
        if isinstance(data, (str, bytes)):
            try:
                decoded = json.loads(data)
            except ValueError as exc:
                raise InvalidInput(f"tdmrep.json is not JSON: {exc}") from exc
        else:
            decoded = data
        if not isinstance(decoded, list):
            raise InvalidInput(
                "tdmrep.json must be a JSON array of rules",
                hint='wrap the rules in brackets: [{"location": "/", "tdm-reservation": 1}]',
            )
        rules: list[TdmRule] = []
        for index, entry in enumerate(decoded):
            if not isinstance(entry, dict):
                continue
            location = entry.get("location")
            if not isinstance(location, str) or not location:
                continue
            raw = entry.get("tdm-reservation")
            reservation = raw if raw in (0, 1) and not isinstance(raw, bool) else None
            policy = entry.get("tdm-policy")
            rules.append(
                TdmRule(
                    location,
                    normalize_path(
                        location if location.startswith(("/", "*")) else "/" + location,
                        pattern=True,
                    ),
                    reservation,
                    policy if isinstance(policy, str) and policy else None,
                    index,
                )
            )
        return cls(rules)

    def lookup(self, url: str) -> TdmDeclaration | None:
        """The declaration of the first rule matching ``url``'s path, or None."""
        path = url_path(url)
        for rule in self.rules:
            if pattern_matches(rule.pattern, path):
                shown = json.dumps(
                    {"location": rule.location, "tdm-reservation": rule.reservation}
                    | ({"tdm-policy": rule.policy} if rule.policy else {})
                )
                return TdmDeclaration(
                    rule.reservation,
                    rule.policy,
                    "tdmrep.json",
                    f"tdmrep.json rule {rule.index + 1}: {shown}",
                )
        return None


def parse_reservation(value: str | None) -> int | None:
    """A ``tdm-reservation`` value as 1, 0 or None (absent or a protocol error)."""
    if value is None:
        return None
    value = value.strip()
    if value == "1":
        return 1
    if value == "0":
        return 0
    return None


def header_declaration(reservation: str | None, policy: str | None) -> TdmDeclaration | None:
    """The declaration made by ``tdm-reservation`` / ``tdm-policy`` response headers."""
    if reservation is None:
        return None
    shown = f"tdm-reservation: {reservation.strip()}"
    if policy:
        shown += f"; tdm-policy: {policy.strip()}"
    return TdmDeclaration(parse_reservation(reservation), policy or None, "header", shown)


def resolve(*declarations: TdmDeclaration | None) -> TdmDeclaration | None:
    """The declaration that applies: later arguments (header, then HTML) supersede earlier."""
    out = None
    for declaration in declarations:
        if declaration is not None:
            out = declaration
    return out
