"""Spawning's ``/ai.txt``: robots.txt syntax, read as permission to use files for AI training.

``Disallow`` rules name paths or file types (``Disallow: *.jpg``) that must not be used to
train AI; ``Allow`` rules name what may. Groups are chosen as in robots.txt (exact product
token, else ``*``). A matching Disallow denies, a matching Allow allows, no match is unset. A
file without any ``User-Agent`` group (for example a Markdown "ai.txt" written for assistants)
says nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from .model import ALLOW, DENY, UNSET
from .robots import RobotsTxt, product_token


@dataclass(frozen=True, slots=True)
class AiTxtAnswer:
    decision: str
    evidence: str


def parse_aitxt(text: str | bytes) -> RobotsTxt:
    """Parse an ai.txt file (it is robots.txt syntax)."""
    return RobotsTxt.parse(text)


def check_aitxt(aitxt: RobotsTxt, url: str, user_agent: str) -> AiTxtAnswer:
    """What ai.txt says about training on ``url`` for ``user_agent``."""
    if not aitxt.groups:
        return AiTxtAnswer(UNSET, "ai.txt has no User-Agent groups")
    token = product_token(user_agent)
    if not aitxt.applies(token):
        return AiTxtAnswer(UNSET, "no ai.txt group applies")
    best = aitxt.longest_rule(url, token)
    if best is None:
        return AiTxtAnswer(UNSET, "no ai.txt rule matches")
    return AiTxtAnswer(ALLOW if best.kind == "allow" else DENY, "ai.txt " + best.evidence)
