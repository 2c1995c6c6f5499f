"""A consent record in the shape of the W3C DPV guide to ISO/IEC TS 27560 (JSON-LD).

The native receipt (:mod:`consentry.ledger.receipts`) is what consentry signs; this module
restates one consent event, with the policy version it was given under, in DPV terms, so
that a regulator's or a customer's tools read it without knowing consentry. Every field the
guide marks mandatory is filled; docs/concepts.md ("Consent records in DPV") says where each
one comes from. Purposes use DPV terms where a built-in purpose has one and consentry's own
IRIs otherwise; personal data categories are consentry's own IRIs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..taxonomy import PURPOSE_VOCABULARY, ancestors
from .events import CONSENT_STATUS, Event, Kind

if TYPE_CHECKING:
    from ..policy.model import Policy, Recipient

#: The profile a record declares in ``dct:conformsTo``.
PROFILE = "https://w3id.org/dpv/guides/consent-27560"
CONSENTRY = "https://consentry.dev/ns#"
CONTEXT: dict[str, Any] = {
    "dpv": "https://w3id.org/dpv#",
    "ai": "https://w3id.org/dpv/ai#",
    "eu-gdpr": "https://w3id.org/dpv/legal/eu/gdpr#",
    "loc": "https://w3id.org/dpv/loc#",
    "dct": "http://purl.org/dc/terms/",
    "foaf": "http://xmlns.com/foaf/0.1/",
    "time": "http://www.w3.org/2006/time#",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
    "cr": CONSENTRY,
    "purpose": "https://consentry.dev/purposes/",
    "category": "https://consentry.dev/categories/",
}
#: The consent's state after the event (DPV consent status), and whether processing may rely
#: on it (dpv:ConsentStatusValidForProcessing / InvalidForProcessing).
STATE = {
    Kind.CONSENT_GIVEN: ("dpv:ConsentGiven", True),
    Kind.CONSENT_REFUSED: ("dpv:ConsentRefused", False),
    Kind.CONSENT_WITHDRAWN: ("dpv:ConsentWithdrawn", False),
}
LEGAL_BASIS = {
    "consent": "dpv:Consent",
    "contract": "dpv:Contract",
    "legitimate_interest": "dpv:LegitimateInterest",
}
#: The GDPR article behind each basis, added where the jurisdiction applies the GDPR.
GDPR_BASIS = {
    "consent": "eu-gdpr:A6-1-a",
    "contract": "eu-gdpr:A6-1-b",
    "legitimate_interest": "eu-gdpr:A6-1-f",
}
#: EEA jurisdictions (ISO 3166-1 alpha-2) and "EU".
GDPR_JURISDICTIONS = frozenset(
    [
        "EU",
        "AT",
        "BE",
        "BG",
        "HR",
        "CY",
        "CZ",
        "DK",
        "EE",
        "FI",
        "FR",
        "DE",
        "GR",
        "HU",
        "IE",
        "IT",
        "LV",
        "LT",
        "LU",
        "MT",
        "NL",
        "PL",
        "PT",
        "RO",
        "SK",
        "SI",
        "ES",
        "SE",
        "IS",
        "LI",
        "NO",
    ]
)
RECIPIENT_CLASS = {
    "processor": "dpv:DataProcessor",
    "joint_controller": "dpv:JointDataControllers",
    "third_party": "dpv:ThirdParty",
}


def purpose_term(purpose: str) -> dict[str, Any]:
    """A purpose as DPV has it (the most specific DPV term that covers it), with consentry's
    own IRI when DPV has no term of its own for it."""
    for key in ancestors(purpose):
        term = PURPOSE_VOCABULARY.get(key, {}).get("dpv")
        if term is not None:
            if key == purpose:
                return {"@id": term}
            return {"@id": f"purpose:{purpose}", "@type": term}
    return {"@id": f"purpose:{purpose}", "@type": "dpv:Purpose"}


def _recipients(recipients: tuple[Recipient, ...] | None) -> list[dict[str, Any]]:
    if not recipients:
        # Said outright: an empty list is "nobody but the controller", not "unknown".
        return []
    return [
        {
            "@type": RECIPIENT_CLASS[str(r.role)],
            "foaf:name": r.name,
            **({"foaf:homepage": r.url} if r.url else {}),
        }
        for r in recipients
    ]


def _legal_basis(policy: Policy | None, event: Event) -> list[dict[str, str]]:
    rule = None
    if policy is not None and event.categories:
        rule = policy.rule_for(event.purpose or "", event.categories[0])
    basis = str(rule.basis) if rule is not None else "consent"
    out = [{"@id": LEGAL_BASIS.get(basis, "dpv:Consent")}]
    jurisdiction = policy.controller.get("jurisdiction", "") if policy is not None else ""
    if jurisdiction.split("-")[0] in GDPR_JURISDICTIONS and basis in GDPR_BASIS:
        out.append({"@id": GDPR_BASIS[basis]})
    return out


def _validity(policy: Policy | None, event: Event) -> dict[str, Any]:
    """How long the consent stands: the rule's ``expires_after``, else until withdrawn."""
    rule = None
    if policy is not None and event.categories:
        rule = policy.rule_for(event.purpose or "", event.categories[0])
    if rule is not None and rule.expires_after is not None:
        days = rule.expires_after.days
        return {"@type": "dpv:TemporalDuration", "time:hasDuration": f"P{days}D"}
    return {"@type": "dpv:UntilWithdrawalDuration"}


def _retention(policy: Policy | None, categories: tuple[str, ...]) -> list[dict[str, Any]]:
    out = []
    for category in categories:
        kept = policy.retention_for(category) if policy is not None else None
        if kept is not None:
            out.append(
                {
                    "@type": "dpv:StorageDuration",
                    "dpv:hasPersonalData": {"@id": f"category:{category}"},
                    "time:hasDuration": f"P{kept.days}D",
                }
            )
    return out


def _rights(rights_url: str | None) -> list[dict[str, Any]]:
    """The rights a person exercises at the preference centre: access and withdrawal."""
    where = {"@type": "dpv:RightExerciseNotice", "dpv:hasLocation": rights_url}
    return [
        {"@id": "eu-gdpr:A15", "dpv:isExercisedAt": where},
        {"@id": "eu-gdpr:A7-3", "dpv:isExercisedAt": where},
    ]


def dpv_record(
    event: Event,
    policy: Policy | None,
    *,
    receipt: Mapping[str, Any],
    served: Event | None = None,
    rights_url: str | None = None,
) -> dict[str, Any]:
    """The DPV-27560 JSON-LD record of a consent event (see the module docstring).

    ``receipt`` is the native receipt record (its notice digest and identifiers are reused);
    ``served`` the ``notice.served`` event the consent followed; ``rights_url`` where the
    person reads and changes their choices (the ``/me`` page)."""
    controller = dict(policy.controller) if policy is not None else {}
    rights_url = rights_url or controller.get("rights_url")
    state, valid = STATE[event.kind]
    notice = receipt.get("notice") or {}
    categories = tuple(event.categories)
    return {
        "@context": CONTEXT,
        "@id": f"urn:uuid:{event.id}",
        "@type": "dpv:ConsentRecord",
        "dct:conformsTo": {"@id": PROFILE},
        "dct:identifier": event.id,
        "cr:receiptIdentifier": f"urn:consentry:receipt:{event.id}:{event.hash}",
        "dct:created": event.at_text,
        "dpv:hasDataSubject": {"@type": "dpv:DataSubject", "dct:identifier": event.subject},
        "dpv:hasDataController": {
            "@type": "dpv:DataController",
            "foaf:name": controller.get("name"),
            "foaf:homepage": controller.get("url"),
            "dpv:hasContact": controller.get("contact"),
            "dpv:hasJurisdiction": controller.get("jurisdiction"),
        },
        "dpv:hasJurisdiction": {"@id": f"loc:{controller.get('jurisdiction')}"}
        if controller.get("jurisdiction")
        else None,
        "dpv:hasPurpose": [purpose_term(event.purpose or "")],
        "dpv:hasLegalBasis": _legal_basis(policy, event),
        "dpv:hasPersonalData": [{"@id": f"category:{c}"} for c in categories],
        "dpv:hasRecipient": _recipients(
            policy.recipients_for(event.purpose or "") if policy is not None else None
        ),
        "dpv:hasStorageCondition": _retention(policy, categories),
        "dpv:hasRight": _rights(rights_url),
        "cr:withdrawalMethod": {
            "dpv:hasLocation": rights_url,
            "dct:description": "the same switch that gave it, on the preference centre; or "
            'POST /v1/subjects/{subject}/consents with "action": "withdraw"',
        },
        "dpv:hasDuration": _validity(policy, event),
        "dpv:hasNotice": {
            "@type": "dpv:PrivacyNotice",
            "dct:identifier": f"{policy.id if policy is not None else ''}/{event.notice_version}",
            "dct:hasVersion": event.notice_version,
            "dct:language": event.language,
            "cr:sha256": notice.get("notice_sha256"),
            "cr:servedEvent": served.id if served is not None else None,
            "cr:servedAt": served.at_text if served is not None else None,
        },
        "dpv:hasIndicationMethod": event.method or "unspecified",
        "dpv:isIndicatedBy": event.actor,
        "cr:eventType": {
            "@id": f"cr:{str(event.kind).replace('.', '-')}",
            "dct:title": str(event.kind),
        },
        "cr:eventTime": event.at_text,
        "dpv:hasConsentStatus": {"@id": state},
        "cr:validForProcessing": valid,
        "cr:status": CONSENT_STATUS[event.kind],
        "cr:ledger": {"seq": event.seq, "hash": event.hash},
    }


#: The fields the DPV-27560 guide marks mandatory, as this record names them (the tests hold
#: every one filled; docs/concepts.md maps each to its source).
MANDATORY = (
    "dct:conformsTo",
    "dct:identifier",
    "cr:receiptIdentifier",
    "dpv:hasDataSubject",
    "dpv:hasDataController",
    "dpv:hasJurisdiction",
    "dpv:hasPurpose",
    "dpv:hasLegalBasis",
    "dpv:hasPersonalData",
    "dpv:hasRecipient",
    "dpv:hasRight",
    "cr:withdrawalMethod",
    "dpv:hasDuration",
    "dpv:hasNotice",
    "cr:eventType",
    "dpv:hasConsentStatus",
)
