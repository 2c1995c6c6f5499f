"""consentry's HTTP service: the API under ``/v1``, the preference centre and admin console.

::

    from consentry.api import Settings, create_app

    app = create_app(Settings(database_url="sqlite:///consentry.db", jwt_secret="..."))
"""

from .app import create_app
from .settings import Settings

__all__ = ["Settings", "create_app"]
