"""consentry's HTTP service: the API under ``/v1``, the preference centre and admin console.

::

    from consentry.api import Settings, create_app

    app = create_app(Settings(database_url="sqlite:///consentry.db", jwt_secret="..."))

The names are imported when first used, so that ``consentry keys …`` and ``consentry token``
(``consentry.api.cli``) do not load the web framework.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import create_app
    from .settings import Settings

__all__ = ["Settings", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from .app import create_app

        return create_app
    if name == "Settings":
        from .settings import Settings

        return Settings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
