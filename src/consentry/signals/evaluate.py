"""Deciding from what is given: :func:`evaluate` and :class:`Evaluator`.

Every signal that applies to the purpose is read and the most restrictive answer wins (the
aipref vocabulary's rule for combining statements): any deny → deny, else any allow → allow,
else unset. Within TDMRep its own precedence applies first (HTML meta over header over
``tdmrep.json``). A robots.txt that forbids the crawler to fetch the URL denies every purpose.

A purpose covers one or more of consentry's uses (:mod:`consentry.signals.vocab`). Which
signals count for which use:

=====================  ===========  ===========  ===========  ==========
signal                 train-genai  train-other  ai-input     search
=====================  ===========  ===========  ===========  ==========
robots.txt Disallow    deny         deny         deny         deny
Content-Usage          per label, as the draft that defined it (vocab.AIPREF_LABELS)
Content-Signal         ai-train     ai-train     ai-input     search
TDMRep                 yes          yes          yes          —
X-Robots-Tag / meta    noai,        noai,        noai,        noindex,
                       noimageai    noimageai    noimageai    none
ai.txt                 yes          yes          —            —
C2PA training-mining   per entry (vocab.CAWG_ENTRIES)                   —
=====================  ===========  ===========  ===========  ==========

For a purpose that covers several uses (``ai.training`` covers both kinds of training), a
vocabulary's statement denies when it denies any of them and allows only when it allows all.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from . import model, vocab
from .aipref import parse_content_usage
from .aitxt import check_aitxt
from .c2pa import check_manifest
from .htmlmeta import HtmlMeta, parse_html
from .model import ALLOW, DENY, UNSET, Finding, UrlDecision, combine
from .robots import RobotsTxt, product_token
from .tdmrep import TdmDeclaration, TdmRepFile, header_declaration, resolve
from .xrobots import denying_for, first_denying, parse_value

HeadersLike = Mapping[str, str] | Iterable[tuple[str, str]] | Any

_WANTED = frozenset({"content-usage", "tdm-reservation", "tdm-policy", "x-robots-tag"})


class SignalHeaders:
    """The response header fields consentry reads, found case-insensitively."""

    __slots__ = ("content_usage", "tdm_policy", "tdm_reservation", "x_robots_tag")

    def __init__(self) -> None:
        self.content_usage: list[str] = []
        self.tdm_reservation: str | None = None
        self.tdm_policy: str | None = None
        self.x_robots_tag: list[str] = []

    @classmethod
    def collect(cls, headers: HeadersLike) -> SignalHeaders:
        """From a mapping (any key case), pairs, or ``httpx``/``starlette`` headers."""
        out = cls()
        if headers is None:
            return out
        items: Iterable[tuple[Any, Any]]
        multi = getattr(headers, "multi_items", None)
        if multi is not None:
            items = multi()
        elif isinstance(headers, Mapping):
            items = headers.items()
        else:
            items = headers
        for key, value in items:
            if isinstance(key, bytes):
                key = key.decode("latin-1")
            low = key.lower()
            if low not in _WANTED:
                continue
            if isinstance(value, bytes):
                value = value.decode("latin-1")
            values = [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]
            if low == "content-usage":
                out.content_usage.extend(values)
            elif low == "x-robots-tag":
                out.x_robots_tag.extend(values)
            elif low == "tdm-reservation":
                if out.tdm_reservation is None:
                    out.tdm_reservation = values[0]
            elif out.tdm_policy is None:
                out.tdm_policy = values[0]
        return out


def _as_robots(value: RobotsTxt | str | bytes | None) -> RobotsTxt | None:
    if value is None or isinstance(value, RobotsTxt):
        return value
    return RobotsTxt.parse(value)


def _as_tdmrep(value: TdmRepFile | str | bytes | list[object] | None) -> TdmRepFile | None:
    if value is None or isinstance(value, TdmRepFile):
        return value
    return TdmRepFile.parse(value)


class Evaluator:
    """Evaluates signals for one crawler (user agent) and one purpose.

    Build it once and call :meth:`evaluate` per URL: the product token and the purpose's uses
    (:mod:`consentry.signals.vocab`) are worked out here, not on every call.
    """

    __slots__ = (
        "_cache",
        "denying",
        "label",
        "purpose",
        "tdm",
        "token",
        "training",
        "user_agent",
        "uses",
    )

    def __init__(self, *, user_agent: str, purpose: str) -> None:
        self.user_agent = user_agent
        self.token = product_token(user_agent)
        self.purpose = purpose
        #: consentry's uses this purpose covers (vocab.USES)
        self.uses = vocab.uses_of(purpose)
        #: what decisions name as their purpose: the caller's purpose as given
        self.label = purpose
        #: whether any use is training (ai.txt speaks only about training)
        self.training = any(u in vocab.TRAINING_USES for u in self.uses)
        #: whether TDMRep speaks about it (it reserves mining rights: not search)
        self.tdm = any(u != vocab.SEARCH for u in self.uses)
        #: X-Robots-Tag / robots meta directives that deny it
        self.denying = denying_for(self.uses)
        self._cache: dict[tuple[str | None, ...], tuple[str, str, str, tuple[Finding, ...]]] = {}

    # -- vocabularies ----------------------------------------------------------------------

    def aipref_answer(self, preferences: dict[str, bool]) -> tuple[str, str] | None:
        """(decision, note) of aipref ``preferences`` for this purpose's uses, or None.

        The note names each label that decided and the draft whose definition was applied.
        """
        rows: list[tuple[str, bool | None, str]] = []
        for use in self.uses:
            hit = vocab.read_use(preferences, use)
            if hit is None:
                rows.append((use, None, ""))
            else:
                said = f"{hit.label}={'y' if hit.allowed else 'n'}"
                rows.append((use, hit.allowed, f"{use}: {said} as {hit.drafts} defines it"))
        return _combine_uses(rows)

    def signal_answer(self, signals: dict[str, bool]) -> tuple[str, str] | None:
        """(decision, note) of Content-Signal ``signals`` (key → allowed) for this purpose."""
        rows = []
        for use in self.uses:
            said = None
            note = ""
            for key, covered in vocab.CONTENT_SIGNAL_KEYS.items():
                if use in covered and key in signals:
                    said = signals[key]
                    note = f"{use}: {key}={'yes' if said else 'no'}"
            rows.append((use, said, note))
        return _combine_uses(rows)

    # -- the pieces ------------------------------------------------------------------------

    def header_findings(
        self, headers: SignalHeaders
    ) -> tuple[list[Finding], TdmDeclaration | None]:
        """Findings of Content-Usage and X-Robots-Tag, and the TDMRep header declaration."""
        out: list[Finding] = []
        if headers.content_usage:
            # several field lines form one field (RFC 9110 §5.3), parsed as one Dictionary
            shown = ", ".join(headers.content_usage)
            answer = self.aipref_answer(parse_content_usage(shown))
            if answer is not None:
                out.append(
                    Finding(model.CONTENT_USAGE, answer[0], f"Content-Usage: {shown} ({answer[1]})")
                )
        for value in headers.x_robots_tag:
            hit = first_denying(parse_value(value), self.token, self.denying)
            if hit is not None:
                out.append(Finding(model.X_ROBOTS_TAG, DENY, "X-Robots-Tag: " + hit.source))
                break
        declaration = None
        if headers.tdm_reservation is not None and self.tdm:
            declaration = header_declaration(headers.tdm_reservation, headers.tdm_policy)
        return out, declaration

    def robots_findings(self, url: str, robots: RobotsTxt) -> tuple[list[Finding], bool]:
        """robots.txt findings and whether the crawler may fetch ``url`` at all."""
        answer = robots.check(url, self.token)
        if not answer.allowed:
            return [Finding(model.ROBOTS, DENY, "robots.txt " + answer.evidence)], False
        out: list[Finding] = []
        usage = robots.content_usage(url, self.token)
        said = self.aipref_answer(usage.preferences) if usage.preferences else None
        if said is not None:
            evidence = "robots.txt " + "; ".join(r.evidence for r in usage.rules)
            out.append(Finding(model.ROBOTS_CONTENT_USAGE, said[0], f"{evidence} ({said[1]})"))
        signal = robots.content_signal(url, self.token)
        said = self.signal_answer(signal.preferences) if signal.preferences else None
        if said is not None:
            evidence = "robots.txt " + "; ".join(r.evidence for r in signal.rules)
            out.append(Finding(model.ROBOTS_CONTENT_SIGNAL, said[0], f"{evidence} ({said[1]})"))
        return out, True

    def html_findings(self, meta: HtmlMeta) -> list[Finding]:
        out: list[Finding] = []
        for name, content in meta.robots(self.token):
            agent = None if name == "robots" else name
            hit = first_denying(parse_value(content, default_agent=agent), self.token, self.denying)
            if hit is not None:
                out.append(
                    Finding(model.HTML_META, DENY, f'<meta name="{name}" content="{content}">')
                )
                break
        return out

    @staticmethod
    def tdm_finding(declaration: TdmDeclaration | None) -> list[Finding]:
        if declaration is None:
            return []
        if declaration.reservation == 1:
            decision = DENY
        elif declaration.reservation == 0:
            decision = ALLOW
        else:
            return [Finding(model.TDMREP, UNSET, declaration.evidence + " (not 0 or 1: unset)")]
        evidence = declaration.evidence
        if declaration.source == "html meta":
            evidence = f"HTML meta {evidence}"
        return [Finding(model.TDMREP, decision, evidence)]

    # -- the whole answer ------------------------------------------------------------------

    def evaluate(
        self,
        url: str,
        *,
        headers: HeadersLike = None,
        robots: RobotsTxt | str | bytes | None = None,
        tdmrep: TdmRepFile | str | bytes | list[object] | None = None,
        html: str | bytes | HtmlMeta | None = None,
        aitxt: RobotsTxt | str | bytes | None = None,
        c2pa: Mapping[str, Any] | str | None = None,
        extra: Iterable[Finding] = (),
        error: str = "",
    ) -> UrlDecision:
        """Decide for ``url`` from the signals given; any of them may be omitted."""
        if (
            robots is None
            and tdmrep is None
            and html is None
            and aitxt is None
            and c2pa is None
            and not extra
            and not error
        ):
            return self.evaluate_headers(url, headers)
        label = self.label
        findings: list[Finding] = list(extra)
        tdm = self.tdm
        robots_txt = _as_robots(robots)
        if robots_txt is not None:
            found, fetchable = self.robots_findings(url, robots_txt)
            findings.extend(found)
            if not fetchable:
                return combine(url, self.token, label, findings, error)
        tdm_file = None
        if tdm:
            tdm_rules = _as_tdmrep(tdmrep)
            tdm_file = tdm_rules.lookup(url) if tdm_rules is not None else None
        tdm_header = None
        if headers is not None:
            found, tdm_header = self.header_findings(SignalHeaders.collect(headers))
            findings.extend(found)
        tdm_html = None
        if html is not None:
            meta = html if isinstance(html, HtmlMeta) else parse_html(html)
            findings.extend(self.html_findings(meta))
            if meta.tdm_reservation is not None and tdm:
                tdm_html = TdmDeclaration(
                    _reservation(meta.tdm_reservation),
                    meta.tdm_policy,
                    "html meta",
                    f'<meta name="tdm-reservation" content="{meta.tdm_reservation}">',
                )
        findings.extend(self.tdm_finding(resolve(tdm_file, tdm_header, tdm_html)))
        if aitxt is not None and self.training:
            answer = check_aitxt(_as_robots(aitxt) or RobotsTxt([]), url, self.token)
            if answer.decision != UNSET:
                findings.append(Finding(model.AI_TXT, answer.decision, answer.evidence))
        if c2pa is not None and tdm:
            c2pa_answer = check_manifest(c2pa, self.uses)
            findings.append(Finding(model.C2PA, c2pa_answer.decision, c2pa_answer.evidence))
        order = _ORDER
        findings.sort(key=lambda f: order.get(f.signal, 99))
        return combine(url, self.token, label, findings, error)

    def evaluate_headers(self, url: str, headers: HeadersLike) -> UrlDecision:
        """The fast path for a response's headers alone (same answer as :meth:`evaluate`)."""
        usage = robots_tag = reservation = policy = None
        if type(headers) is dict:
            items: Iterable[tuple[Any, Any]] = headers.items()
        elif headers is None:
            items = ()
        else:
            multi = getattr(headers, "multi_items", None)
            items = (
                multi()
                if multi is not None
                else (headers.items() if isinstance(headers, Mapping) else headers)
            )
        lowered = _LOWER
        for low, value in [(low, v) for k, v in items if (low := lowered[k]) is not _SKIP]:
            if type(value) is not str:
                value = _text(value)
            if low == "content-usage":
                usage = value if usage is None else f"{usage}, {value}"
            elif low == "x-robots-tag":
                robots_tag = value if robots_tag is None else f"{robots_tag}\n{value}"
            elif low == "tdm-reservation":
                if reservation is None:
                    reservation = value
            elif policy is None:
                policy = value
        cache_key = (usage, robots_tag, reservation, policy)
        hit = self._cache.get(cache_key)
        if hit is None:
            signal_headers = SignalHeaders()
            if usage is not None:
                signal_headers.content_usage.append(usage)
            if robots_tag is not None:
                signal_headers.x_robots_tag.extend(robots_tag.split("\n"))
            signal_headers.tdm_reservation = reservation
            signal_headers.tdm_policy = policy
            found, declaration = self.header_findings(signal_headers)
            found.extend(self.tdm_finding(declaration))
            found.sort(key=lambda f: _ORDER.get(f.signal, 99))
            template = combine("", self.token, self.label, found)
            hit = (template.decision, template.signal, template.evidence, template.findings)
            if len(self._cache) > 8192:
                self._cache.clear()
            self._cache[cache_key] = hit
        return UrlDecision(url, self.token, self.label, hit[0], hit[1], hit[2], hit[3])


_SKIP = "\0skip"


class _Lowered(dict[Any, str]):
    """Header name → its lower-case form if consentry reads it, else ``_SKIP`` (memoised)."""

    def __missing__(self, key: Any) -> str:
        text = key.decode("latin-1") if isinstance(key, bytes) else str(key)
        low = text.lower()
        out = low if low in _WANTED else _SKIP
        if len(self) < 4096:
            self[key] = out
        return out


_LOWER = _Lowered()


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)


_ORDER = {name: i for i, name in enumerate((model.FETCH, *model.SIGNALS))}


def _combine_uses(rows: list[tuple[str, bool | None, str]]) -> tuple[str, str] | None:
    """One vocabulary's answer over several uses: any no denies; all yes allows; else None."""
    notes = [note for _use, said, note in rows if said is not None]
    if any(said is False for _use, said, _note in rows):
        return DENY, "; ".join(n for (_u, said, n) in rows if said is False)
    if rows and all(said is True for _use, said, _note in rows):
        return ALLOW, "; ".join(notes)
    return None


def _reservation(value: str) -> int | None:
    from .tdmrep import parse_reservation

    return parse_reservation(value)


@lru_cache(maxsize=64)
def evaluator(user_agent: str, purpose: str) -> Evaluator:
    """A cached :class:`Evaluator` for ``user_agent`` and ``purpose``."""
    return Evaluator(user_agent=user_agent, purpose=purpose)


def evaluate(
    url: str,
    *,
    user_agent: str,
    purpose: str,
    headers: HeadersLike = None,
    robots: RobotsTxt | str | bytes | None = None,
    tdmrep: TdmRepFile | str | bytes | list[object] | None = None,
    html: str | bytes | None = None,
    aitxt: RobotsTxt | str | bytes | None = None,
    c2pa: Mapping[str, Any] | str | None = None,
) -> UrlDecision:
    """Decide offline, from what is given, whether ``user_agent`` may use ``url`` for ``purpose``.

    ``purpose`` is an aipref category (``train-ai``, ``ai-use``, ``search``) or a consentry
    purpose such as ``ai.training.generative``. ``headers`` are the resource's response
    headers (any mapping, pairs, or httpx/starlette headers); ``robots``, ``tdmrep``, ``html``
    and ``aitxt`` are file contents (or parsed objects); ``c2pa`` is a manifest store.

    >>> evaluate("https://example.com/a", user_agent="ExampleBot", purpose="train-ai",
    ...          headers={"content-usage": "train-ai=n"}).decision
    'deny'
    """
    return evaluator(user_agent, purpose).evaluate(
        url, headers=headers, robots=robots, tdmrep=tdmrep, html=html, aitxt=aitxt, c2pa=c2pa
    )


def decision_json(decision: UrlDecision) -> str:
    """A decision as one line of JSON."""
    return json.dumps(decision.to_dict(), ensure_ascii=False)
