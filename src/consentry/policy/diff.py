"""Explain, per rule and in plain language, what changed between two policy versions."""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any

from .model import Basis, Policy, Rule

#: What a (purpose, category) gets under a rule (see :func:`answer`), by how much it lets
#: happen without the person doing anything, lowest first.
LEVEL: dict[str | None, int] = {
    None: 0,
    "prohibited": 0,
    "consent": 1,
    "legitimate_interest": 2,
    "legitimate_interest_no_objection": 3,
    "contract": 4,
}

#: The words of a diff, per language the CLI and the API offer. Every value a diff holds
#: (answers, rule fields) has words here, so nothing prints as Python.
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
        "legitimate_interest_no_objection": "yes, and the person cannot object individually",
        "contract": "always, as part of the service",
        "purposes_added": "now also for {items}",
        "purposes_removed": "no longer for {items}",
        "categories_added": "now also covers {items}",
        "categories_removed": "no longer covers {items}",
        "basis": "now: {after} (before: {before})",
        "objection_on": "people can now object individually",
        "objection_off": "people can no longer object individually",
        "account_enable_on": "an account must now switch it on for its members",
        "account_enable_off": "an account no longer needs to switch it on",
        "account_consent_on": "an account can now consent for its members",
        "account_consent_off": "an account can no longer consent for its members",
        "parties_all": "every person in an item must now agree, not only its owner",
        "parties_owner": "only an item's owner must agree now, not every person in it",
        "reconsent_on": "consents given under earlier versions no longer count",
        "reconsent_off": "consents given under earlier versions count again",
        "expires_after": "a consent now lasts {after} (before: {before})",
        "days": "{n} days",
        "forever": "until it is withdrawn",
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
        "legitimate_interest_no_objection": "ya, dan orang tersebut tidak dapat "
        "mengajukan keberatan secara perorangan",
        "contract": "selalu, sebagai bagian dari layanan",
        "purposes_added": "kini juga untuk {items}",
        "purposes_removed": "tidak lagi untuk {items}",
        "categories_added": "kini juga mencakup {items}",
        "categories_removed": "tidak lagi mencakup {items}",
        "basis": "kini: {after} (sebelumnya: {before})",
        "objection_on": "orang kini dapat mengajukan keberatan secara perorangan",
        "objection_off": "orang tidak lagi dapat mengajukan keberatan secara perorangan",
        "account_enable_on": "akun kini harus mengaktifkannya untuk anggotanya",
        "account_enable_off": "akun tidak perlu lagi mengaktifkannya",
        "account_consent_on": "akun kini dapat memberi persetujuan untuk anggotanya",
        "account_consent_off": "akun tidak lagi dapat memberi persetujuan untuk anggotanya",
        "parties_all": "setiap orang dalam suatu item kini harus setuju, bukan hanya pemiliknya",
        "parties_owner": "kini hanya pemilik item yang harus setuju, bukan setiap orang di "
        "dalamnya",
        "reconsent_on": "persetujuan yang diberikan di versi sebelumnya tidak berlaku lagi",
        "reconsent_off": "persetujuan yang diberikan di versi sebelumnya berlaku kembali",
        "expires_after": "persetujuan kini berlaku {after} (sebelumnya: {before})",
        "days": "{n} hari",
        "forever": "sampai ditarik kembali",
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
        "legitimate_interest_no_objection": "oui, et la personne ne peut pas s'y "
        "opposer individuellement",
        "contract": "toujours, dans le cadre du service",
        "purposes_added": "vaut désormais aussi pour {items}",
        "purposes_removed": "ne vaut plus pour {items}",
        "categories_added": "couvre désormais aussi {items}",
        "categories_removed": "ne couvre plus {items}",
        "basis": "désormais : {after} (avant : {before})",
        "objection_on": "chacun peut désormais s'y opposer individuellement",
        "objection_off": "personne ne peut plus s'y opposer individuellement",
        "account_enable_on": "un compte doit désormais l'activer pour ses membres",
        "account_enable_off": "un compte n'a plus besoin de l'activer",
        "account_consent_on": "un compte peut désormais consentir pour ses membres",
        "account_consent_off": "un compte ne peut plus consentir pour ses membres",
        "parties_all": "chaque personne présente dans un élément doit désormais accepter, pas "
        "seulement son propriétaire",
        "parties_owner": "seul le propriétaire d'un élément doit désormais accepter, pas "
        "chaque personne présente",
        "reconsent_on": "les consentements donnés sous les versions précédentes ne comptent plus",
        "reconsent_off": "les consentements donnés sous les versions précédentes comptent à "
        "nouveau",
        "expires_after": "un consentement vaut désormais {after} (avant : {before})",
        "days": "{n} jours",
        "forever": "jusqu'à son retrait",
    },
}


def answer(rule: Rule | None) -> str | None:
    """What a rule gives the uses it decides, as a key of :data:`PHRASES`: its basis, and for
    legitimate interest whether people may object (``objection: false`` is its own answer,
    ``legitimate_interest_no_objection``: "you cannot object individually")."""
    if rule is None:
        return None
    if rule.basis is Basis.LEGITIMATE_INTEREST and not rule.objection:
        return "legitimate_interest_no_objection"
    return str(rule.basis)


@dataclass(frozen=True)
class Shift:
    """One (purpose, category) whose answer differs between the versions. ``before`` and
    ``now`` are the bases; ``before_answer`` and ``now_answer`` the answers (see
    :func:`answer`), which also say whether people may object."""

    purpose: str
    category: str
    before: str | None
    now: str | None
    rule: str | None
    before_answer: str | None = None
    now_answer: str | None = None


@dataclass(frozen=True)
class FieldChange:
    """One field of a rule that changed, as data (JSON values: lists, strings, booleans,
    days), for pages that say it in their own words."""

    field: str
    before: Any
    after: Any

    def words(self, t: dict[str | None, str]) -> str:
        """The change in words, from the phrases of one language."""
        name, before, after = self.field, self.before, self.after
        if name in ("purposes", "categories"):
            added = [x for x in after if x not in before]
            removed = [x for x in before if x not in after]
            parts = []
            if added:
                parts.append(t[f"{name}_added"].format(items=", ".join(added)))
            if removed:
                parts.append(t[f"{name}_removed"].format(items=", ".join(removed)))
            return "; ".join(parts)
        if name == "basis":
            return t["basis"].format(before=t[before], after=t[after])
        if name == "parties":
            return t[f"parties_{after}"]
        if name == "expires_after":

            def lasts(days: Any) -> str:
                return t["forever"] if days is None else t["days"].format(n=days)

            return t["expires_after"].format(before=lasts(before), after=lasts(after))
        return t[f"{name}_{'on' if after else 'off'}"]  # the yes/no fields

    def to_dict(self) -> dict[str, Any]:
        return {"field": self.field, "before": self.before, "after": self.after}


@dataclass(frozen=True)
class RuleChange:
    rule: str
    change: str  # added | removed | changed
    fields: tuple[FieldChange, ...] = ()
    text: str = ""

    def what(self, t: dict[str | None, str]) -> list[str]:
        """Each changed field in words."""
        return [f.words(t) for f in self.fields]


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
        """The diff as JSON data: ``what`` is each rule change in words (the diff's
        language), ``fields`` the same as data."""
        t = PHRASES[self.language]
        return {
            "from": self.old,
            "to": self.new,
            "language": self.language,
            "looser": [s.__dict__ for s in self.looser],
            "tighter": [s.__dict__ for s in self.tighter],
            "rules": [
                {
                    "rule": r.rule,
                    "change": r.change,
                    "what": r.what(t),
                    "fields": [f.to_dict() for f in r.fields],
                    "text": r.text,
                }
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
                        now=t[s.now_answer],
                        before=t[s.before_answer],
                        rule=s.rule or "-",
                    )
                )
            lines.append("")
        lines.append(t["rules"])
        for r in self.rules:
            text = t[r.change].format(rule=r.rule, what="; ".join(r.what(t)), text=r.text)
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
            before, now = answer(a), answer(b)
            basis_a = str(a.basis) if a else None
            basis_b = str(b.basis) if b else None
            if LEVEL[now] > LEVEL[before]:
                looser.append(Shift(p, c, basis_a, basis_b, b.id if b else None, before, now))
            elif LEVEL[now] < LEVEL[before]:
                rule = b.id if b else (a.id if a else None)
                tighter.append(Shift(p, c, basis_a, basis_b, rule, before, now))
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


def _what_changed(a: Rule, b: Rule) -> tuple[FieldChange, ...]:
    names = [f.name for f in dataclasses.fields(Rule) if f.name != "id"]
    out = []
    for name in names:
        if name == "objection" and not (a.basis is b.basis is Basis.LEGITIMATE_INTEREST):
            # Outside legitimate interest objection means nothing; a change of basis to or
            # from it is told by the basis's answer, which says whether people may object.
            continue
        va, vb = _value(name, a), _value(name, b)
        if va != vb:
            out.append(FieldChange(name, va, vb))
    return tuple(out)


def _value(name: str, rule: Rule) -> Any:
    """A rule field as JSON data: sorted lists, strings, booleans, days."""
    value = getattr(rule, name)
    if isinstance(value, tuple):
        return sorted(value)
    if name == "basis":
        return answer(rule)  # legitimate_interest_no_objection: people cannot object
    if name == "expires_after":
        return None if value is None else round(value.total_seconds() / 86400, 3)
    if isinstance(value, enum.Enum):
        return str(value.value)
    return value
