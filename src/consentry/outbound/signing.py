"""Standard Webhooks signatures (https://www.standardwebhooks.com/).

Each request carries ``webhook-id`` (the message id, the same on every retry),
``webhook-timestamp`` (Unix seconds of this attempt) and ``webhook-signature``:
``v1,<base64 of HMAC-SHA256 over "{id}.{timestamp}.{body}">`` keyed with the secret's bytes.
Secrets are written ``whsec_<base64 of 32 random bytes>``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time

from ..errors import InvalidInput, SignatureInvalid

SECRET_PREFIX = "whsec_"
#: How far a receiver lets ``webhook-timestamp`` be from its clock (the specification's advice).
TOLERANCE_S = 5 * 60


def new_secret() -> str:
    """A new signing secret, ``whsec_`` and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(os.urandom(32)).decode("ascii")


def secret_bytes(secret: str) -> bytes:
    """The key of a ``whsec_…`` secret."""
    text = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(text, validate=True)
    except ValueError:
        raise InvalidInput(
            "a webhook secret is whsec_ followed by base64", hint="use the secret as printed"
        ) from None
    if not key:
        raise InvalidInput("the webhook secret is empty", hint="use the secret as printed")
    return key


def sign(secret: str | bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value for one request."""
    key = secret if isinstance(secret, bytes) else secret_bytes(secret)
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def headers(
    secret: str | bytes, msg_id: str, body: bytes, now: float | None = None
) -> dict[str, str]:
    """The three Standard Webhooks headers for one attempt."""
    timestamp = int(time.time() if now is None else now)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
    }


def verify(secret: str, headers: dict[str, str], body: bytes, *, now: float | None = None) -> None:
    """Check a request as a receiver would: some ``v1`` signature in ``webhook-signature``
    (space-separated) matches, and the timestamp is within five minutes. Raises
    :class:`SignatureInvalid` otherwise."""
    lowered = {k.lower(): v for k, v in headers.items()}
    msg_id = lowered.get("webhook-id")
    stamp = lowered.get("webhook-timestamp")
    given = lowered.get("webhook-signature")
    if not (msg_id and stamp and given):
        raise SignatureInvalid("the request lacks the webhook-id/-timestamp/-signature headers")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise SignatureInvalid(f"webhook-timestamp {stamp!r} is not Unix seconds") from None
    if abs((time.time() if now is None else now) - timestamp) > TOLERANCE_S:
        raise SignatureInvalid("webhook-timestamp is more than five minutes off")
    expected = sign(secret, msg_id, timestamp, body).split(",", 1)[1]
    for candidate in given.split():
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return
    raise SignatureInvalid("no webhook-signature matches the body")
