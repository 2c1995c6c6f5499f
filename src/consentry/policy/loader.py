"""Reading policy YAML into validated :class:`~consentry.policy.model.Policy` objects.

Every field is checked; an unknown key, purpose, category or label is an error that names it,
says where it is, and suggests the nearest known name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from ..canonical import canonical_json, sha256_hex
from ..errors import InvalidInput, PolicyError, UnknownName, suggest
from ..taxonomy import DEFAULT_TAXONOMY, Taxonomy, covers
from ..times import format_time, parse_time
from .model import Basis, Notice, Parties, Policy, Protection, Recipient, RecipientRole, Rule

TOP_KEYS = {
    "id",
    "version",
    "effective",
    "language",
    "controller",
    "categories",
    "purposes",
    "labels",
    "rules",
    "protected",
    "notices",
    "recipients",
    "retention",
    "gpc",
}
REQUIRED_TOP = ("id", "version", "effective", "language", "rules")
RULE_KEYS = {
    "id",
    "purposes",
    "categories",
    "basis",
    "objection",
    "account_enable",
    "account_consent",
    "parties",
    "reconsent",
    "expires_after",
}
PROTECTED_KEYS = {"labels", "purposes"}
GPC_KEYS = {"objects_to"}
NOTICE_KEYS = {"title", "summary", "rules", "machine_translated"}
CONTROLLER_KEYS = {"name", "contact", "url", "jurisdiction", "rights_url"}
RECIPIENT_KEYS = {"name", "role", "purposes", "url"}
#: ISO 3166-1 alpha-2 (or EU), optionally with an ISO 3166-2 subdivision: US, EU, US-CA
_JURISDICTION = re.compile(r"^[A-Z]{2}(-[A-Z0-9]{1,3})?$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_URL = re.compile(r"^https?://[^\s/]+\S*$")
CONSENT_ONLY = ("account_consent", "reconsent", "expires_after")
_RULE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_LANG = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")


def load_policies(source: str | Path) -> list[Policy]:
    """Every policy version in a YAML file, oldest ``effective`` first.

    ``source`` is a path (a ``Path``, or a string ending in .yaml/.yml) or YAML text. A file
    may hold several versions of one policy as a multi-document stream (``---``).
    """
    if isinstance(source, Path) or (
        "\n" not in source and source.endswith((".yaml", ".yml", ".json"))
    ):
        path = Path(source)
        if not path.is_file():
            raise PolicyError(f"policy file {path} does not exist", hint="check the path")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            line = path.read_bytes()[: exc.start].count(b"\n") + 1
            raise PolicyError(
                f"policy file {path} is not UTF-8 text: byte {exc.start} (line {line}) is "
                f"0x{exc.object[exc.start]:02x}",
                hint="save the policy as UTF-8",
            ) from None
        except OSError as exc:
            raise PolicyError(
                f"policy file {path} cannot be read: {exc.strerror or exc}",
                hint="check the file's permissions",
            ) from None
        return parse_policies(text, where=str(path))
    return parse_policies(source)


def parse_policies(text: str, *, where: str = "<policy>") -> list[Policy]:
    """Every policy version in YAML text, oldest ``effective`` first."""
    import yaml  # here: reading a policy stored as JSON (every decision) needs no YAML

    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise PolicyError(
            f"{where}: not valid YAML{at}: {getattr(exc, 'problem', exc)}",
            hint="check indentation and quoting near that line",
        ) from None
    if not documents:
        raise PolicyError(f"{where}: no policy document found", hint="see docs/policy-format.md")
    policies = [parse_policy(doc, where=f"{where}[{i}]") for i, doc in enumerate(documents)]
    ids = {p.id for p in policies}
    if len(ids) > 1:
        raise PolicyError(
            f"{where}: one file holds one policy, found ids {sorted(ids)}",
            hint="put each policy in its own file",
        )
    versions = [p.version for p in policies]
    dupes = sorted({v for v in versions if versions.count(v) > 1})
    if dupes:
        raise PolicyError(
            f"{where}: version {dupes[0]!r} appears twice", hint="versions are unique"
        )
    return sorted(policies, key=lambda p: p.effective)


def load_policy(source: str | Path) -> Policy:
    """The single policy version in ``source`` (an error if there are several)."""
    policies = load_policies(source)
    if len(policies) != 1:
        raise PolicyError(
            f"expected one policy version, found {len(policies)}",
            hint="use load_policies() for multi-document files",
        )
    return policies[0]


def parse_policy(doc: Any, *, where: str = "policy") -> Policy:
    """Validate one policy document (already parsed from YAML or JSON)."""
    try:
        return _parse_policy(doc, where)
    except UnknownName as exc:  # an unknown purpose, category or label is a policy error here
        raise PolicyError(exc.message, hint=exc.hint, **exc.details) from None


def _parse_policy(doc: Any, where: str) -> Policy:
    if not isinstance(doc, Mapping):
        raise PolicyError(f"{where}: a policy is a mapping, got {type(doc).__name__}")
    _check_keys(doc, TOP_KEYS, where)
    for key in REQUIRED_TOP:
        if key not in doc:
            raise PolicyError(f"{where}: missing required key {key!r}", field=key)
    policy_id = _string(doc["id"], f"{where}.id")
    version = _string(doc["version"], f"{where}.version")
    effective = _time(doc["effective"], f"{where}.effective")
    language = _language(doc["language"], f"{where}.language")
    taxonomy = _taxonomy(doc, where)
    controller = _controller(doc.get("controller", {}), f"{where}.controller")
    rules = _rules(doc["rules"], taxonomy, where)
    protected = _protected(doc.get("protected", []), taxonomy, where)
    notices = _notices(doc.get("notices", {}), language, rules, where)
    recipients = _recipients(doc.get("recipients"), taxonomy, rules, f"{where}.recipients")
    retention = _retention(doc.get("retention", {}), taxonomy, f"{where}.retention")
    gpc = _gpc(doc.get("gpc"), taxonomy, where)
    normalised = dict(doc)
    normalised["effective"] = format_time(effective)
    normalised["version"] = version
    document = _jsonable(normalised)
    return Policy(
        id=policy_id,
        version=version,
        effective=effective,
        language=language,
        taxonomy=taxonomy,
        rules=rules,
        protected=protected,
        notices=notices,
        controller=controller,
        recipients=recipients,
        retention=retention,
        gpc_objects_to=gpc,
        document=document,
        digest=sha256_hex(canonical_json(document)),
    )


def _check_keys(mapping: Mapping[Any, Any], allowed: set[str], where: str) -> None:
    for key in mapping:
        if key not in allowed:
            near = suggest(str(key), allowed)
            raise PolicyError(
                f"{where}: unknown key {key!r}",
                hint=f"did you mean {near!r}?" if near else f"allowed keys: {sorted(allowed)}",
                field=str(key),
            )


def _string(value: Any, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float) or str(value) == "":
        raise PolicyError(f"{where}: expected a non-empty string, got {value!r}")
    return str(value)


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise PolicyError(f"{where}: expected true or false, got {value!r}")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not value:
        raise PolicyError(f"{where}: expected a non-empty list, got {value!r}")
    return value


def _time(value: Any, where: str) -> datetime:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise PolicyError(f"{where}: {value} has no time zone", hint="add 'Z' for UTC")
        return parse_time(value, field=where)
    if isinstance(value, date):
        return parse_time(value.isoformat(), field=where)
    if not isinstance(value, str):
        raise PolicyError(f"{where}: expected an RFC 3339 timestamp, got {value!r}")
    try:
        return parse_time(value, field=where)
    except InvalidInput as exc:
        raise PolicyError(exc.message, hint=exc.hint) from None


def _language(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _LANG.match(value):
        raise PolicyError(f"{where}: {value!r} is not a language tag", hint="use e.g. en, id, fr")
    return value


def _taxonomy(doc: Mapping[str, Any], where: str) -> Taxonomy:
    extra: dict[str, list[str]] = {}
    for key in ("categories", "purposes", "labels"):
        values = doc.get(key, [])
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise PolicyError(f"{where}.{key}: expected a list of names, got {values!r}")
        extra[key] = values
    try:
        return DEFAULT_TAXONOMY.extended(**extra)
    except Exception as exc:
        raise PolicyError(f"{where}: {exc}") from None


def _controller(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise PolicyError(f"{where}: expected a mapping with name, contact, url, jurisdiction")
    _check_keys(value, CONTROLLER_KEYS, where)
    out = {k: _string(v, f"{where}.{k}") for k, v in value.items()}
    if "jurisdiction" in out and not _JURISDICTION.match(out["jurisdiction"]):
        raise PolicyError(
            f"{where}.jurisdiction: {out['jurisdiction']!r} is not a country code",
            hint="an ISO 3166 code such as US, DE or US-CA, or EU",
            field="jurisdiction",
        )
    if "contact" in out and not (_EMAIL.match(out["contact"]) or _URL.match(out["contact"])):
        raise PolicyError(
            f"{where}.contact: {out['contact']!r} is neither an e-mail address nor a URL",
            hint="e.g. privacy@example.com",
            field="contact",
        )
    for key in ("url", "rights_url"):
        if key in out:
            _url(out[key], f"{where}.{key}")
    return out


def _url(value: str, where: str) -> str:
    if not _URL.match(value):
        raise PolicyError(f"{where}: {value!r} is not an http(s) URL", hint="e.g. https://...")
    return value


#: The ISO 8601 durations policies write (weeks, days, hours, minutes, whole seconds), read
#: without pydantic so that deciding (``consentry check``) does not import it at start-up; any
#: other form goes to pydantic, which gives the same timedelta for these.
_PLAIN_DURATION = re.compile(
    r"^P(?:(\d{1,6})W)?(?:(\d{1,7})D)?(?:T(?:(\d{1,8})H)?(?:(\d{1,9})M)?(?:(\d{1,10})S)?)?$"
)


def _duration(value: Any, where: str) -> timedelta:
    """A positive ISO 8601 duration (``P365D``), else PolicyError naming ``where``."""
    plain = _PLAIN_DURATION.match(value) if isinstance(value, str) else None
    if plain is not None and value not in ("P", "PT") and not value.endswith("T"):
        w, d, h, m, sec = (int(x or 0) for x in plain.groups())
        out = timedelta(weeks=w, days=d, hours=h, minutes=m, seconds=sec)
    else:
        from pydantic import TypeAdapter, ValidationError

        try:
            out = TypeAdapter(timedelta).validate_python(value)
        except ValidationError:
            raise PolicyError(
                f"{where}: {value!r} is not an ISO 8601 duration", hint="write days, e.g. P365D"
            ) from None
    if out <= timedelta(0):
        raise PolicyError(f"{where}: must be positive")
    return out


def _recipients(
    value: Any, taxonomy: Taxonomy, rules: tuple[Rule, ...], where: str
) -> tuple[Recipient, ...] | None:
    """Who receives the data. A third party may not be named for a purpose that a
    ``prohibited`` rule forbids outright (the record would contradict the policy)."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise PolicyError(f"{where}: expected a list (an empty list: nobody but the controller)")
    out = []
    for i, raw in enumerate(value):
        at = f"{where}[{i}]"
        if not isinstance(raw, Mapping):
            raise PolicyError(f"{at}: expected a mapping with name, role, purposes")
        _check_keys(raw, RECIPIENT_KEYS, at)
        for key in ("name", "role"):
            if key not in raw:
                raise PolicyError(f"{at}: missing required key {key!r}", field=key)
        try:
            role = RecipientRole(raw["role"])
        except ValueError:
            roles = [r.value for r in RecipientRole]
            raise PolicyError(
                f"{at}.role: unknown role {raw['role']!r}", hint=f"one of {roles}", field="role"
            ) from None
        purposes = tuple(
            taxonomy.purpose(_string(p, f"{at}.purposes"), where=f"{at}.purposes")
            for p in (_list(raw["purposes"], f"{at}.purposes") if "purposes" in raw else [])
        )
        if role is RecipientRole.THIRD_PARTY:
            _not_prohibited(purposes, rules, at)
        url = _url(_string(raw["url"], f"{at}.url"), f"{at}.url") if "url" in raw else None
        out.append(Recipient(_string(raw["name"], f"{at}.name"), role, purposes, url))
    return tuple(out)


def _not_prohibited(purposes: tuple[str, ...], rules: tuple[Rule, ...], where: str) -> None:
    banned = [r for r in rules if r.basis is Basis.PROHIBITED]
    for purpose in purposes or ("",):
        for rule in banned:
            if any(covers(p, purpose) or covers(purpose, p) for p in rule.purposes):
                raise PolicyError(
                    f"{where}: a third party receives data for {purpose or 'every purpose'!r}, "
                    f"but rule {rule.id!r} prohibits {', '.join(rule.purposes)}",
                    hint="name the purposes the third party receives data for, outside the "
                    "prohibited ones",
                )


def _retention(value: Any, taxonomy: Taxonomy, where: str) -> dict[str, timedelta]:
    if not isinstance(value, Mapping):
        raise PolicyError(f"{where}: expected a mapping of category to ISO 8601 duration")
    return {
        taxonomy.category(_string(k, where), where=where): _duration(v, f"{where}.{k}")
        for k, v in value.items()
    }


def _rules(value: Any, taxonomy: Taxonomy, where: str) -> tuple[Rule, ...]:
    rules: list[Rule] = []
    owners: dict[tuple[str, str], str] = {}
    for i, raw in enumerate(_list(value, f"{where}.rules")):
        rule = _rule(raw, f"{where}.rules[{i}]", taxonomy, where)
        if any(r.id == rule.id for r in rules):
            raise PolicyError(
                f"{where}.rules[{rule.id}]: rule id {rule.id!r} is used twice",
                hint="rule ids are unique",
            )
        for pair in ((p, c) for p in rule.purposes for c in rule.categories):
            if pair in owners:
                raise PolicyError(
                    f"{where}.rules[{rule.id}]: ({pair[0]}, {pair[1]}) is also covered by rule "
                    f"{owners[pair]!r}",
                    hint="two rules with the same purpose and category would be ambiguous",
                )
            owners[pair] = rule.id
        rules.append(rule)
    return tuple(rules)


def _rule(raw: Any, at: str, taxonomy: Taxonomy, where: str) -> Rule:
    """One rule of ``rules`` (``at`` names it by position until its id is known)."""
    if not isinstance(raw, Mapping):
        raise PolicyError(f"{at}: a rule is a mapping, got {raw!r}")
    _check_keys(raw, RULE_KEYS, at)
    for key in ("id", "purposes", "categories", "basis"):
        if key not in raw:
            raise PolicyError(f"{at}: missing required key {key!r}", field=key)
    rule_id = _string(raw["id"], f"{at}.id")
    at = f"{where}.rules[{rule_id}]"
    if not _RULE_ID.match(rule_id):
        raise PolicyError(f"{at}: rule ids are lower-case letters, digits, '-' and '_'")
    purposes = tuple(
        taxonomy.purpose(_string(p, f"{at}.purposes"), where=f"{at}.purposes")
        for p in _list(raw["purposes"], f"{at}.purposes")
    )
    categories = tuple(
        taxonomy.category(_string(c, f"{at}.categories"), where=f"{at}.categories")
        for c in _list(raw["categories"], f"{at}.categories")
    )
    basis = _basis(raw, at)
    parties_raw = raw.get("parties", "all" if basis is Basis.CONSENT else "owner")
    try:
        parties = Parties(parties_raw)
    except ValueError:
        raise PolicyError(f"{at}.parties: {parties_raw!r} is not 'all' or 'owner'") from None
    return Rule(
        id=rule_id,
        purposes=purposes,
        categories=categories,
        basis=basis,
        objection=_bool(raw.get("objection", True), f"{at}.objection"),
        account_enable=_bool(raw.get("account_enable", False), f"{at}.account_enable"),
        account_consent=_bool(raw.get("account_consent", False), f"{at}.account_consent"),
        parties=parties,
        reconsent=_bool(raw.get("reconsent", False), f"{at}.reconsent"),
        expires_after=_expires_after(raw.get("expires_after"), at),
    )


def _basis(raw: Mapping[str, Any], at: str) -> Basis:
    """The rule's basis, and the keys only some bases take."""
    try:
        basis = Basis(raw["basis"])
    except ValueError:
        near = suggest(str(raw["basis"]), [b.value for b in Basis])
        raise PolicyError(
            f"{at}.basis: unknown basis {raw['basis']!r}",
            hint=f"did you mean {near!r}?" if near else f"one of {[b.value for b in Basis]}",
        ) from None
    if basis is not Basis.CONSENT:
        for key in CONSENT_ONLY:
            if raw.get(key):
                raise PolicyError(
                    f"{at}.{key}: only a consent rule can set {key}, this rule is {basis}",
                    hint=f"remove {key} or change the basis to consent",
                )
    if "objection" in raw and basis is not Basis.LEGITIMATE_INTEREST:
        raise PolicyError(
            f"{at}.objection: only a legitimate_interest rule takes objections",
            hint="remove objection",
        )
    return basis


def _expires_after(expires: Any, at: str) -> timedelta | None:
    """A consent's validity (an ISO 8601 duration), or None when the rule sets none."""
    return None if expires is None else _duration(expires, f"{at}.expires_after")


def _protected(value: Any, taxonomy: Taxonomy, where: str) -> tuple[Protection, ...]:
    if not isinstance(value, list):
        raise PolicyError(f"{where}.protected: expected a list, got {value!r}")
    out = []
    for i, raw in enumerate(value):
        at = f"{where}.protected[{i}]"
        if not isinstance(raw, Mapping):
            raise PolicyError(f"{at}: expected a mapping with labels and purposes")
        _check_keys(raw, PROTECTED_KEYS, at)
        labels = frozenset(
            taxonomy.label(_string(x, f"{at}.labels"), where=f"{at}.labels")
            for x in _list(raw.get("labels"), f"{at}.labels")
        )
        purposes = tuple(
            taxonomy.purpose(_string(x, f"{at}.purposes"), where=f"{at}.purposes")
            for x in _list(raw.get("purposes"), f"{at}.purposes")
        )
        out.append(Protection(labels=labels, purposes=purposes))
    return tuple(out)


def _gpc(value: Any, taxonomy: Taxonomy, where: str) -> tuple[str, ...] | None:
    """What a Global Privacy Control signal means under the policy (issue 16 §5): the
    purposes the person objects to, or refuses, by sending it. None: the policy says nothing
    (the signal is recorded and changes nothing)."""
    if value is None:
        return None
    at = f"{where}.gpc"
    if not isinstance(value, Mapping):
        raise PolicyError(
            f"{at}: expected a mapping like {{objects_to: [ai.training.third_party]}}, "
            f"got {value!r}",
            field="gpc",
        )
    _check_keys(value, GPC_KEYS, at)
    names = _list(value.get("objects_to"), f"{at}.objects_to")
    if not names:
        raise PolicyError(
            f"{at}.objects_to: name at least one purpose (leave gpc out for none)",
            field="gpc.objects_to",
        )
    purposes = [
        taxonomy.purpose(_string(x, f"{at}.objects_to"), where=f"{at}.objects_to") for x in names
    ]
    return tuple(dict.fromkeys(purposes))


def _notices(value: Any, language: str, rules: tuple[Rule, ...], where: str) -> dict[str, Notice]:
    if not isinstance(value, Mapping):
        raise PolicyError(f"{where}.notices: expected a mapping of language to notice")
    if value and language not in value:
        raise PolicyError(
            f"{where}.notices: no notice in the authoritative language {language!r}",
            hint=f"add notices.{language}",
        )
    rule_ids = {r.id for r in rules}
    out = {}
    for lang, raw in value.items():
        at = f"{where}.notices.{lang}"
        _language(lang, at)
        if not isinstance(raw, Mapping):
            raise PolicyError(f"{at}: expected a mapping with title, summary, rules")
        _check_keys(raw, NOTICE_KEYS, at)
        texts = raw.get("rules", {})
        if not isinstance(texts, Mapping):
            raise PolicyError(f"{at}.rules: expected a mapping of rule id to text")
        for rid in texts:
            if rid not in rule_ids:
                near = suggest(str(rid), rule_ids)
                raise PolicyError(
                    f"{at}.rules: no rule {rid!r}",
                    hint=f"did you mean {near!r}?" if near else "notice texts name rule ids",
                )
        missing = sorted(rule_ids - set(texts))
        if missing:
            raise PolicyError(
                f"{at}.rules: no text for rule {missing[0]!r}",
                hint="every rule needs a plain-language text in every notice language",
            )
        machine = _bool(raw.get("machine_translated", False), f"{at}.machine_translated")
        if lang == language and machine:
            raise PolicyError(f"{at}: the authoritative language cannot be machine_translated")
        out[lang] = Notice(
            language=lang,
            title=_string(raw.get("title"), f"{at}.title"),
            summary=_string(raw.get("summary"), f"{at}.summary"),
            rules={k: _string(v, f"{at}.rules.{k}") for k, v in texts.items()},
            machine_translated=machine,
        )
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, date):
        return value.isoformat()
    return value
