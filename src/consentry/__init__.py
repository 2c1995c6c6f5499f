"""consentry: use people's data for AI only where they, their organisation and the platform's
terms allow it — and prove it afterwards."""

from .decide import Decision, Reason, SubjectDecision
from .errors import ConsentryError
from .policy import Policy, load_policies, load_policy
from .store import Store

__all__ = [
    "ConsentryError",
    "Decision",
    "Policy",
    "Reason",
    "Store",
    "SubjectDecision",
    "load_policies",
    "load_policy",
]
__version__ = "0.1.0"
