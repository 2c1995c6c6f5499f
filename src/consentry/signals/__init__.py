"""Do-not-train signals: publish them for the platform's content, honour them when collecting.

Publishing::

    from consentry.signals import SignalsConfig, robots_txt, DoNotTrainMiddleware
    app = DoNotTrainMiddleware(app, config=SignalsConfig(), resolve=..., permits_training=...)

Honouring::

    from consentry.signals import evaluate, check_url
    evaluate(url, user_agent="ExampleBot", purpose="train-ai", headers=response.headers)
    check_url(url, user_agent="ExampleBot/1.0", purpose="train-ai")

See ``docs/signals.md``.
"""

from __future__ import annotations

from .aipref import combine_preferences, parse_content_usage
from .bulk import BulkReport, abulk_check, bulk_check, load_opt_outs, read_table, write_table
from .contentsignal import parse_content_signal, serialize_content_signal
from .crawlers import Crawler, CrawlerList, load_crawlers
from .evaluate import Evaluator, evaluate
from .fetch import SignalChecker, acheck_url, acheck_urls, check_url, check_urls
from .middleware import DoNotTrainMiddleware, ItemOwners, signals_app
from .model import ALLOW, DENY, UNSET, Finding, UrlDecision
from .publish import (
    SignalsConfig,
    ai_txt,
    html_meta,
    response_headers,
    robots_txt,
    tdmrep_json,
)
from .robots import RobotsTxt, product_token
from .tdmrep import TdmRepFile
from .vocab import AIPREF_CURRENT, USES, uses_of

__all__ = [
    "AIPREF_CURRENT",
    "ALLOW",
    "DENY",
    "UNSET",
    "USES",
    "BulkReport",
    "Crawler",
    "CrawlerList",
    "DoNotTrainMiddleware",
    "Evaluator",
    "Finding",
    "ItemOwners",
    "RobotsTxt",
    "SignalChecker",
    "SignalsConfig",
    "TdmRepFile",
    "UrlDecision",
    "abulk_check",
    "acheck_url",
    "acheck_urls",
    "ai_txt",
    "bulk_check",
    "check_url",
    "check_urls",
    "combine_preferences",
    "evaluate",
    "html_meta",
    "load_crawlers",
    "load_opt_outs",
    "parse_content_signal",
    "parse_content_usage",
    "product_token",
    "read_table",
    "response_headers",
    "robots_txt",
    "serialize_content_signal",
    "signals_app",
    "tdmrep_json",
    "uses_of",
    "write_table",
]
