"""consentry: use people's data for AI only where they, their organisation and the platform's
terms allow it — and prove it afterwards.

The names below are imported when first used (PEP 562), so that importing a small module such
as ``consentry.errors`` — or starting the ``consentry`` command — does not load the database
layer.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for type checkers and IDEs: the names as if imported eagerly
    from .decide import Decision as Decision
    from .decide import Reason as Reason
    from .decide import SubjectDecision as SubjectDecision
    from .errors import ConsentryError as ConsentryError
    from .policy import Policy as Policy
    from .policy import load_policies as load_policies
    from .policy import load_policy as load_policy
    from .store import Store as Store

_WHERE = {
    "ConsentryError": ".errors",
    "Decision": ".decide",
    "Policy": ".policy",
    "Reason": ".decide",
    "Store": ".store",
    "SubjectDecision": ".decide",
    "load_policies": ".policy",
    "load_policy": ".policy",
}

__all__ = sorted(_WHERE)
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value  # the next look-up is a plain attribute
    return value
