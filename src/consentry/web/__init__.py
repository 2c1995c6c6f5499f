"""The preference centre (``/me``) and the admin console (``/admin``): server-rendered HTML,
plain CSS, no JavaScript, in every language that has a catalog under ``translations/``."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"


def mount(app: FastAPI) -> None:
    """Add the web pages and their static files to ``app``."""
    from .pages import html_error, router

    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.state.html_error = html_error
