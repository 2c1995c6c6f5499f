"""robots.txt as RFC 9309 reads it, with the aipref ``Content-Usage`` rule of the attach draft.

- Groups are chosen by **exact** product-token match (case-insensitive), as RFC 9309 §2.2.1
  requires: ``Googlebot-Image`` does not use a ``googlebot`` group. Several matching groups are
  merged; with none, the ``*`` groups apply; with no ``*`` group either, nothing applies.
- Allow/Disallow are decided by Protego over the selected group's rules (longest match wins;
  an equally long Allow beats Disallow; ``*`` and ``$`` are supported; ``/robots.txt`` is always
  allowed). consentry also finds the deciding line so that the answer can quote it.
- ``Content-Usage: <path> <preferences>`` rules (draft-ietf-aipref-attach §3) use the same path
  matching: the longest matching path decides, and rules with equally long paths combine
  most-restrictively. They apply only to paths the group lets the crawler fetch.
- ``Content-Signal: <signals>`` lines (contentsignals.org, draft-romm-aipref-contentsignals-00:
  ``search``, ``ai-input``, ``ai-train``, each ``yes`` or ``no``) belong to their group like
  Content-Usage rules. The published form has no path; a leading ``/path`` is accepted and
  scopes the line as a Content-Usage path would. Unknown keys (Cloudflare's ``use=``) and
  values other than yes/no are ignored.
- Only the first 500 KiB are read (RFC 9309 §2.5).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from urllib.parse import urlsplit

from .aipref import combine_preferences, parse_content_usage
from .contentsignal import parse_content_signal

#: RFC 9309 §2.5: crawlers must parse at least the first 500 KiB; consentry reads exactly that.
MAX_ROBOTS_BYTES = 500 * 1024

_PRODUCT = re.compile(r"([A-Za-z][A-Za-z0-9_-]*)(?:/\S*)?")
_BROWSERISH = frozenset(
    {
        "mozilla",
        "applewebkit",
        "chrome",
        "safari",
        "gecko",
        "firefox",
        "khtml",
        "like",
        "compatible",
        "version",
        "mobile",
        "edg",
        "opera",
    }
)
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_HEX = frozenset("0123456789ABCDEFabcdef")
_KEEP = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~:/?#[]@!$&'()*+,;=%"
)


@lru_cache(maxsize=1024)
def product_token(user_agent: str) -> str:
    """The RFC 9309 product token of a user agent (``GPTBot`` for a full GPTBot header).

    A bare token is returned as given. In a full ``User-Agent`` header the first product that
    is not a browser compatibility marker (``Mozilla/5.0``, ``AppleWebKit`` …) is the token.

    >>> product_token("Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2)")
    'GPTBot'
    >>> product_token("ExampleBot/1.1")
    'ExampleBot'
    """
    text = user_agent.strip()
    match = _PRODUCT.fullmatch(text)
    if match:
        return str(match.group(1))
    for candidate in re.findall(r"[A-Za-z][A-Za-z0-9_-]*(?=/)", text):
        if candidate.lower() not in _BROWSERISH:
            return str(candidate)
    for candidate in re.findall(r"[A-Za-z][A-Za-z0-9_-]*", text):
        if candidate.lower() not in _BROWSERISH:
            return str(candidate)
    return text


_SIMPLE_URL = re.compile(r"https?://[^/?#]*(/[^?#]*(?:\?[^#]*)?)?").fullmatch
_PLAIN = re.compile(r"[A-Za-z0-9/._~=&;:@!',+()-]*").fullmatch


def normalize_path(value: str, *, pattern: bool = False) -> str:
    """Percent-encoding normalised for comparison (RFC 9309 §2.2.2).

    Escapes of unreserved characters are decoded, other escapes upper-cased, and octets outside
    ASCII (or not allowed in a URI) percent-encoded as UTF-8. ``*`` and ``$`` are encoded too
    (a pattern matches them verbatim as ``%2A``/``%24``), except where a pattern uses them as
    wildcards: ``*`` anywhere, ``$`` at its end.
    """
    if _PLAIN(value):
        return value  # nothing to decode or encode
    out: list[str] = []
    i, n = 0, len(value)
    while i < n:
        ch = value[i]
        if ch == "%" and i + 2 < n and value[i + 1] in _HEX and value[i + 2] in _HEX:
            decoded = chr(int(value[i + 1 : i + 3], 16))
            out.append(decoded if decoded in _UNRESERVED else "%" + value[i + 1 : i + 3].upper())
            i += 3
            continue
        if ch in "*$":
            # special in patterns ("*" anywhere, "$" at the end); matched verbatim as %2A/%24
            special = pattern and (ch == "*" or i == n - 1)
            out.append(ch if special else f"%{ord(ch):02X}")
        elif ch in _KEEP:
            out.append(ch)
        else:
            out.extend(f"%{b:02X}" for b in ch.encode("utf-8"))
        i += 1
    return "".join(out)


@lru_cache(maxsize=4096)
def url_path(url: str) -> str:
    """The path and query of ``url`` that robots.txt rules match against (RFC 9309 §2.2.2)."""
    if url.startswith("/"):
        path = url.partition("#")[0]
    elif (m := _SIMPLE_URL(url)) is not None:
        path = m.group(1) or "/"
    else:
        parts = urlsplit(url)
        path = parts.path or "/"
        if "?" in url.partition("#")[0]:
            path += "?" + parts.query
    return normalize_path(path)


@lru_cache(maxsize=4096)
def _compile(pattern: str) -> re.Pattern[str]:
    anchored = pattern.endswith("$")
    body = pattern[:-1] if anchored else pattern
    regex = ".*".join(re.escape(part) for part in body.split("*"))
    return re.compile(regex + ("$" if anchored else ""), re.DOTALL)


def pattern_matches(pattern: str, path: str) -> bool:
    """Whether a normalised robots.txt path pattern matches a normalised path."""
    if "*" not in pattern and not pattern.endswith("$"):
        return path.startswith(pattern)
    return _compile(pattern).match(path) is not None


@dataclass(frozen=True, slots=True)
class Rule:
    """One Allow, Disallow or Content-Usage line of a group."""

    kind: str  # "allow" | "disallow" | "content-usage" | "content-signal"
    pattern: str  # normalised path pattern
    line_no: int
    line: str  # the line as written (without its comment)
    preferences: tuple[tuple[str, bool], ...] = ()

    @property
    def evidence(self) -> str:
        return f"line {self.line_no}: {self.line}"


@dataclass(slots=True)
class Group:
    """A group: its user-agent lines and its rules."""

    agents: list[str] = field(default_factory=list)  # lower-cased product tokens or "*"
    rules: list[Rule] = field(default_factory=list)
    first_line: int = 0


@dataclass(frozen=True, slots=True)
class RobotsAnswer:
    """Whether a crawler may fetch a path, with the rule that decided (None: no rule matched)."""

    allowed: bool
    rule: Rule | None
    group: str  # which group applied: the token, "*", or "" when none did

    @property
    def evidence(self) -> str:
        if self.rule is not None:
            return self.rule.evidence
        if not self.group:
            return "no group applies to this crawler"
        return f"no rule of the {self.group!r} group matches"


@dataclass(frozen=True, slots=True)
class UsageAnswer:
    """The Content-Usage preferences for a path and the rules that set them."""

    preferences: dict[str, bool]
    rules: tuple[Rule, ...]


class _Selected:
    """The merged rules of the groups that apply to one product token."""

    __slots__ = ("_protego", "access", "name", "plain", "signals", "usage")

    def __init__(self, name: str, rules: list[Rule]) -> None:
        self.name = name
        self.access = [r for r in rules if r.kind in ("allow", "disallow")]
        # every pattern a plain prefix with nothing to decode: then, for a plain path, the
        # longest match (Allow on ties) is exactly Protego's answer, without its URL parsing
        self.plain = all(_PLAIN(r.pattern) for r in self.access)
        self.usage = [r for r in rules if r.kind == "content-usage"]
        self.signals = [r for r in rules if r.kind == "content-signal"]
        self._protego: object | None = None

    def can_fetch(self, url: str) -> bool:
        if self._protego is None:
            from protego import Protego

            lines = ["User-agent: *"]
            lines.extend(f"{r.kind.capitalize()}: {r.pattern}" for r in self.access)
            self._protego = Protego.parse("\n".join(lines))
        return bool(self._protego.can_fetch(url, "consentry"))  # type: ignore[attr-defined]


class RobotsTxt:
    """A parsed robots.txt. Build one with :meth:`parse`."""

    def __init__(self, groups: list[Group], *, truncated: bool = False) -> None:
        self.groups = groups
        self.truncated = truncated
        self._selected: dict[str, _Selected | None] = {}
        self._answers: dict[tuple[str, str], RobotsAnswer] = {}

    @classmethod
    def parse(cls, text: str | bytes) -> RobotsTxt:
        """Parse robots.txt content (bytes are decoded as UTF-8; only 500 KiB are read)."""
        return _parse_cached(text)

    # -- group selection ------------------------------------------------------------------

    def _select(self, token: str) -> _Selected | None:
        key = token.lower()
        if key in self._selected:
            return self._selected[key]
        matching = [g for g in self.groups if key in g.agents]
        name = token
        if not matching:
            matching = [g for g in self.groups if "*" in g.agents]
            name = "*"
        selected = None
        if matching:
            rules = [r for g in matching for r in g.rules]
            selected = _Selected(name, rules)
        self._selected[key] = selected
        return selected

    def applies(self, user_agent: str) -> str:
        """Which group applies to ``user_agent``: its token, ``*``, or ``""`` for none."""
        selected = self._select(product_token(user_agent))
        return selected.name if selected else ""

    # -- answers ----------------------------------------------------------------------------

    def check(self, url: str, user_agent: str) -> RobotsAnswer:
        """May ``user_agent`` fetch ``url``? With the deciding rule as evidence."""
        key = (url, user_agent)
        answer = self._answers.get(key)
        if answer is None:
            answer = self._check(url, user_agent)
            if len(self._answers) >= 512:
                self._answers.clear()
            self._answers[key] = answer
        return answer

    def _check(self, url: str, user_agent: str) -> RobotsAnswer:
        path = url_path(url)
        if path == "/robots.txt" or path.startswith("/robots.txt?"):
            return RobotsAnswer(True, None, "")
        selected = self._select(product_token(user_agent))
        if selected is None:
            return RobotsAnswer(True, None, "")
        best = _longest(selected.access, path)
        if selected.plain and _PLAIN(path):
            return RobotsAnswer(best is None or best.kind == "allow", best, selected.name)
        allowed = selected.can_fetch(url if "://" in url else "http://x" + url)
        if best is not None and (best.kind == "allow") != allowed:
            best = None  # Protego decided otherwise; do not quote a line that did not decide
        return RobotsAnswer(allowed, best, selected.name)

    def longest_rule(self, url: str, user_agent: str) -> Rule | None:
        """The Allow/Disallow rule with the longest pattern matching ``url`` (Allow on ties)."""
        selected = self._select(product_token(user_agent))
        return None if selected is None else _longest(selected.access, url_path(url))

    def can_fetch(self, url: str, user_agent: str) -> bool:
        return self.check(url, user_agent).allowed

    def content_usage(self, url: str, user_agent: str) -> UsageAnswer:
        """The Content-Usage preferences of the applicable group for ``url``.

        Empty when no rule matches, or when the crawler may not fetch ``url`` (attach §3.1:
        paths that cannot be crawled have no associated usage preferences).
        """
        selected = self._select(product_token(user_agent))
        if selected is None or not selected.usage:
            return UsageAnswer({}, ())
        return self._path_rules(selected.usage, url, user_agent)

    def content_signal(self, url: str, user_agent: str) -> UsageAnswer:
        """The Content-Signal preferences (key → allowed) of the applicable group for ``url``.

        Chosen like :meth:`content_usage`: the group of the crawler's token (else ``*``), the
        longest matching path (a line without a path is ``/``), equal paths combined
        most-restrictively, nothing for a path the crawler may not fetch.
        """
        selected = self._select(product_token(user_agent))
        if selected is None or not selected.signals:
            return UsageAnswer({}, ())
        return self._path_rules(selected.signals, url, user_agent)

    def _path_rules(self, rules: list[Rule], url: str, user_agent: str) -> UsageAnswer:
        path = url_path(url)
        longest = -1
        best: list[Rule] = []
        for rule in rules:
            if not pattern_matches(rule.pattern, path):
                continue
            size = len(rule.pattern)
            if size > longest:
                longest, best = size, [rule]
            elif size == longest:
                best.append(rule)
        if not best or not self.check(url, user_agent).allowed:
            return UsageAnswer({}, ())
        prefs = combine_preferences(dict(r.preferences) for r in best)
        return UsageAnswer(prefs, tuple(best))


def _longest(rules: list[Rule], path: str) -> Rule | None:
    best: Rule | None = None
    for rule in rules:
        if pattern_matches(rule.pattern, path) and (
            best is None
            or len(rule.pattern) > len(best.pattern)
            or (len(rule.pattern) == len(best.pattern) and rule.kind == "allow")
        ):
            best = rule
    return best


_WS = re.compile(r"[ \t]+")
_LINE = re.compile(r"^[ \t]*([A-Za-z-]+)[ \t]*:[ \t]*(.*?)[ \t]*$")


def _decode(text: str | bytes) -> tuple[str, bool]:
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    truncated = len(raw) > MAX_ROBOTS_BYTES
    if truncated:
        raw = raw[:MAX_ROBOTS_BYTES]
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    return raw.decode("utf-8", "replace"), truncated


@lru_cache(maxsize=256)
def _parse_cached(text: str | bytes) -> RobotsTxt:
    content, truncated = _decode(text)
    groups: list[Group] = []
    current: Group | None = None
    in_agents = False
    for line_no, raw_line in enumerate(content.splitlines(), start=1):
        line = raw_line.split("#", 1)[0]
        match = _LINE.match(line)
        if not match:
            continue
        key, value = match.group(1).lower(), match.group(2)
        if key in ("user-agent", "useragent"):
            if current is None or not in_agents:
                current = Group(first_line=line_no)
                groups.append(current)
                in_agents = True
            agent = value.strip()
            if agent == "*":
                current.agents.append("*")
            else:
                token = _PRODUCT.match(agent)
                if token:
                    current.agents.append(token.group(1).lower())
            continue
        if key == "sitemap":
            continue  # not part of any group
        in_agents = False
        if current is None:
            continue  # a rule before any user-agent line applies to nobody
        shown = line.strip()
        if key in ("allow", "disallow"):
            if value:
                current.rules.append(Rule(key, normalize_path(value, pattern=True), line_no, shown))
        elif key == "content-signal":
            path, signals = "/", value
            if value.startswith("/"):
                pieces = _WS.split(value, maxsplit=1)
                path, signals = pieces[0], pieces[1] if len(pieces) > 1 else ""
            current.rules.append(
                Rule(
                    "content-signal",
                    normalize_path(path, pattern=True),
                    line_no,
                    shown,
                    tuple(parse_content_signal(signals).items()),
                )
            )
        elif key == "content-usage":
            pieces = _WS.split(value, maxsplit=1)
            path, prefs = pieces[0], pieces[1] if len(pieces) > 1 else ""
            if not path.startswith("/"):
                # earlier drafts (and several generators) write the preferences without a path
                path, prefs = "/", value
            parsed = parse_content_usage(prefs.strip())
            current.rules.append(
                Rule(
                    "content-usage",
                    normalize_path(path, pattern=True),
                    line_no,
                    shown,
                    tuple(parsed.items()),
                )
            )
    return RobotsTxt(groups, truncated=truncated)
