"""``<meta>`` signals in an HTML document's head: robots directives and TDMRep."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser

#: Only the start of a document is read; meta tags belong in the head.
MAX_HTML_CHARS = 512 * 1024


@dataclass(slots=True)
class HtmlMeta:
    """The signals found in an HTML head."""

    #: ``(name, content)`` of every ``<meta name=… content=…>``, name lower-cased.
    metas: list[tuple[str, str]] = field(default_factory=list)
    tdm_reservation: str | None = None
    tdm_policy: str | None = None

    def robots(self, token: str) -> list[tuple[str, str]]:
        """Meta robots tags binding crawler ``token``: ``name="robots"`` or ``name=<token>``."""
        low = token.lower()
        return [(n, c) for n, c in self.metas if n in ("robots", low)]


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.meta = HtmlMeta()
        self.done = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.done:
            return
        if tag == "body":
            self.done = True
            return
        if tag != "meta":
            return
        values = {k.lower(): (v or "") for k, v in attrs}
        name = values.get("name", "").strip().lower()
        if not name or "content" not in values:
            return
        content = values["content"]
        if name == "tdm-reservation":
            if self.meta.tdm_reservation is None:
                self.meta.tdm_reservation = content
        elif name == "tdm-policy":
            if self.meta.tdm_policy is None:
                self.meta.tdm_policy = content
        else:
            self.meta.metas.append((name, content))

    handle_startendtag = handle_starttag

    def handle_endtag(self, tag: str) -> None:
        if tag == "head":
            self.done = True


def parse_html(html: str | bytes) -> HtmlMeta:
    """The meta signals of an HTML document (bytes are decoded as UTF-8)."""
    if isinstance(html, bytes):
        html = html[: MAX_HTML_CHARS * 2].decode("utf-8", "replace")
    parser = _Parser()
    text = html[:MAX_HTML_CHARS]
    step = 8192
    for start in range(0, len(text), step):
        parser.feed(text[start : start + step])
        if parser.done:
            break
    parser.close()
    return parser.meta
