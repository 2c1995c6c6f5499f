"""Explain, per rule and in plain language, what changed between two policy versions."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .model import Basis, Policy, Rule

#: How much a basis lets happen without the person doing anything, lowest first.
LEVEL = {
    None: 0,
    Basis.PROHIBITED: 0,
    Basis.CONSENT: 1,
    Basis.LEGITIMATE_INTEREST: 2,
    Basis.CONTRACT: 3,
}

PHRASES: dict[str, dict[str | None, str]] = {
    "en": {
        "title": "What changes from {old} to {new}",
        "looser": "Allowed more under {new} than under {old}:",
        "tighter": "Allowed less under {new} than under {old}:",
        "line": "{purpose} on {category}: {now} (before: {before}) [rule {rule}]",
        "none": "nothing",
        "rules": "Rules:",
        "added": "new rule {rule}: {text}",
        "removed": "rule {rule} is gone",
        "changed": "rule {rule} changed ({what}): {text}",
        "stale": "{count} recorded consent(s) under rule {rule} no longer count and must be "
        "asked for again",
        "no_stale": "No recorded consent becomes stale.",
        None: "never (no rule)",
        "prohibited": "never",
        "consent": "only with opt-in",
        "legitimate_interest": "yes, unless the person objects",
        "contract": "always, as part of the service",
    },
    "id": {
        "title": "Apa yang berubah dari {old} ke {new}",
        "looser": "Lebih banyak diizinkan di {new} daripada di {old}:",
        "tighter": "Lebih sedikit diizinkan di {new} daripada di {old}:",
        "line": "{purpose} pada {category}: {now} (sebelumnya: {before}) [aturan {rule}]",
        "none": "tidak ada",
        "rules": "Aturan:",
        "added": "aturan baru {rule}: {text}",
        "removed": "aturan {rule} dihapus",
        "changed": "aturan {rule} berubah ({what}): {text}",
        "stale": "{count} persetujuan tercatat di bawah aturan {rule} tidak berlaku lagi dan "
        "harus diminta ulang",
        "no_stale": "Tidak ada persetujuan tercatat yang menjadi kedaluwarsa.",
        None: "tidak pernah (tidak ada aturan)",
        "prohibited": "tidak pernah",
        "consent": "hanya dengan persetujuan (opt-in)",
        "legitimate_interest": "ya, kecuali orang tersebut keberatan",
        "contract": "selalu, sebagai bagian dari layanan",
    },
    "fr": {
        "title": "Ce qui change de {old} à {new}",
        "looser": "Permis davantage sous {new} que sous {old} :",
        "tighter": "Permis moins sous {new} que sous {old} :",
        "line": "{purpose} sur {category} : {now} (avant : {before}) [règle {rule}]",
        "none": "rien",
        "rules": "Règles :",
        "added": "nouvelle règle {rule} : {text}",
        "removed": "la règle {rule} disparaît",
        "changed": "la règle {rule} change ({what}) : {text}",
        "stale": "{count} consentement(s) enregistré(s) sous la règle {rule} ne comptent plus "
        "et doivent être redemandés",
        "no_stale": "Aucun consentement enregistré ne devient caduc.",
        None: "jamais (aucune règle)",
        "prohibited": "jamais",
        "consent": "seulement avec un consentement explicite",
        "legitimate_interest": "oui, sauf opposition de la personne",
        "contract": "toujours, dans le cadre du service",
    },
}


@dataclass(frozen=True)
class Shift:
    """One (purpose, category) whose answer differs between the versions."""

    purpose: str
    category: str
    before: str | None
    now: str | None
    rule: str | None


@dataclass(frozen=True)
class RuleChange:
    rule: str
    change: str  # added | removed | changed
    what: tuple[str, ...] = ()
    text: str = ""


@dataclass(frozen=True)
class PolicyDiff:
    old: str
    new: str
    language: str
    looser: tuple[Shift, ...]
    tighter: tuple[Shift, ...]
    rules: tuple[RuleChange, ...]
    stale: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "from": self.old,
            "to": self.new,
            "language": self.language,
            "looser": [s.__dict__ for s in self.looser],
            "tighter": [s.__dict__ for s in self.tighter],
            "rules": [
                {"rule": r.rule, "change": r.change, "what": list(r.what), "text": r.text}
                for r in self.rules
            ],
            "stale_consents": self.stale,
            "text": self.render(),
        }

    def render(self) -> str:
        """The diff as plain-language text in the diff's language."""
        t = PHRASES[self.language]
        lines = [t["title"].format(old=self.old, new=self.new), ""]
        for key, shifts in (("looser", self.looser), ("tighter", self.tighter)):
            lines.append(t[key].format(old=self.old, new=self.new))
            if not shifts:
                lines.append(f"  - {t['none']}")
            for s in shifts:
                lines.append(
                    "  - "
                    + t["line"].format(
                        purpose=s.purpose,
                        category=s.category,
                        now=t[s.now],
                        before=t[s.before],
                        rule=s.rule or "-",
                    )
                )
            lines.append("")
        lines.append(t["rules"])
        for r in self.rules:
            text = t[r.change].format(rule=r.rule, what=", ".join(r.what), text=r.text)
            lines.append(f"  - {text}")
        lines.append("")
        stale = [t["stale"].format(count=n, rule=rule) for rule, n in self.stale.items() if n]
        lines.extend(stale or [t["no_stale"]])
        return "\n".join(lines)


def diff_policies(
    old: Policy, new: Policy, *, language: str | None = None, stale: dict[str, int] | None = None
) -> PolicyDiff:
    """Compare two versions: shifts per (purpose, category), changes per rule, stale consents."""
    lang = language or new.language
    if lang not in PHRASES:
        from ..errors import unknown

        raise unknown("language", lang, PHRASES, where="policy diff")
    purposes = sorted({p for pol in (old, new) for r in pol.rules for p in r.purposes})
    categories = sorted({c for pol in (old, new) for r in pol.rules for c in r.categories})
    looser, tighter = [], []
    for p in purposes:
        for c in categories:
            a, b = old.rule_for(p, c), new.rule_for(p, c)
            # Only report pairs a rule names directly in one of the versions: others follow.
            if not (_names(a, p, c) or _names(b, p, c)):
                continue
            la, lb = LEVEL[a.basis if a else None], LEVEL[b.basis if b else None]
            before = str(a.basis) if a else None
            now = str(b.basis) if b else None
            if lb > la:
                looser.append(Shift(p, c, before, now, b.id if b else None))
            elif lb < la:
                tighter.append(Shift(p, c, before, now, b.id if b else (a.id if a else None)))
    notice = new.notices.get(lang) if new.notices else None
    old_rules, new_rules = old.rules_by_id, new.rules_by_id
    changes = []
    for rid in sorted(set(old_rules) | set(new_rules)):
        text = notice.rules.get(rid, "") if notice else ""
        if rid not in old_rules:
            changes.append(RuleChange(rid, "added", (), text))
        elif rid not in new_rules:
            changes.append(RuleChange(rid, "removed"))
        else:
            what = _what_changed(old_rules[rid], new_rules[rid])
            if what:
                changes.append(RuleChange(rid, "changed", what, text))
    return PolicyDiff(
        old.version,
        new.version,
        lang,
        tuple(looser),
        tuple(tighter),
        tuple(changes),
        dict(stale or {}),
    )


def _names(rule: Rule | None, purpose: str, category: str) -> bool:
    return rule is not None and purpose in rule.purposes and category in rule.categories


def _what_changed(a: Rule, b: Rule) -> tuple[str, ...]:
    fields = [f.name for f in dataclasses.fields(Rule) if f.name != "id"]
    out = []
    for name in fields:
        if name == "objection" and Basis.LEGITIMATE_INTEREST not in (a.basis, b.basis):
            continue  # objection means nothing outside legitimate interest
        va, vb = getattr(a, name), getattr(b, name)
        if isinstance(va, tuple):
            va, vb = set(va), set(vb)
        if va != vb:
            out.append(f"{name}: {_show(getattr(a, name))} -> {_show(getattr(b, name))}")
    return tuple(out)


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(value) + "]"
    return str(value)
