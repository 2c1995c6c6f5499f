"""Fixtures for the web page tests: the API tests' support module, plus browser helpers."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))

from api_support import api, make_api

__all__ = ["api", "make_api"]
