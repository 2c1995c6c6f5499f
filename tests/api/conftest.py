"""Fixtures for the HTTP API tests (shared with tests/web through api_support)."""

from api_support import api, make_api

__all__ = ["api", "make_api"]
