"""Small helpers the routers share: JSON responses and the JSON form of ledger events."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

from ..ledger.events import CONSENT_KINDS, Event


def dumps(data: Any) -> bytes:
    """Compact UTF-8 JSON, as every answer of the service is written."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str).encode()


def json_response(
    data: Any,
    status: int = 200,
    headers: dict[str, str] | None = None,
    *,
    media_type: str = "application/json",
) -> Response:
    """A JSON response serialised once with the standard library (no re-validation)."""
    return Response(dumps(data), status_code=status, media_type=media_type, headers=headers)


def event_out(event: Event) -> dict[str, Any]:
    """An event as the API answers it: its JSON form and its receipt's URL."""
    return with_receipt_url(event.to_dict())


def with_receipt_url(data: dict[str, Any]) -> dict[str, Any]:
    """An event's JSON form (:meth:`Event.to_dict`) with ``receipt_url``: consent events link
    their signed receipt, others have none."""
    receipted = data["kind"] in CONSENT_KINDS
    return data | {"receipt_url": f"/v1/receipts/{data['id']}" if receipted else None}
