"""A consentry webhook receiver: verify the Standard Webhooks signature, handle each message
once, and act on withdrawals (stop using the data; retrain or unlearn what used it).

    CONSENTRY_WEBHOOK_SECRET=whsec_... PORT=8080 python withdrawal_receiver.py

Standard library only; with the `standardwebhooks` package, `verified` is
`standardwebhooks.Webhook(secret).verify(body, headers)`.
"""

import base64
import hashlib
import hmac
import json
import os
import sqlite3
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SECRET = base64.b64decode(os.environ["CONSENTRY_WEBHOOK_SECRET"].removeprefix("whsec_"))
NARROWING = {
    "org.consentry.consent.withdrawn",
    "org.consentry.consent.refused",
    "org.consentry.objection.raised",
}

# Delivery is at least once: remember what was handled (here in SQLite), skip repeats.
handled = sqlite3.connect("handled.db", check_same_thread=False, isolation_level=None)
handled.execute("CREATE TABLE IF NOT EXISTS handled (id TEXT PRIMARY KEY)")


def verified(headers, body: bytes) -> bool:
    """Standard Webhooks: v1 = base64(HMAC-SHA256(secret, "{id}.{timestamp}.{body}"))."""
    msg_id, stamp = headers.get("webhook-id", ""), headers.get("webhook-timestamp", "0")
    if not stamp.isdigit() or abs(time.time() - int(stamp)) > 300:  # replayed or stale
        return False
    signed = f"{msg_id}.{stamp}.".encode() + body
    expected = base64.b64encode(hmac.new(SECRET, signed, hashlib.sha256).digest()).decode()
    given = headers.get("webhook-signature", "").split()
    return any(hmac.compare_digest(s.removeprefix("v1,"), expected) for s in given)


def act(message: dict) -> None:
    """What this platform does about a change (replace the prints with the real calls)."""
    event = message["data"]
    if message["type"] in NARROWING:
        print(json.dumps({"stop_using": event["subject"], "purpose": event["purpose"],
                          "categories": event["categories"]}), flush=True)
    impact = event.get("impact") or {}
    for dataset in impact.get("datasets", []):
        if dataset.get("needs_action", True):
            print(json.dumps({"retrain_or_unlearn": dataset["dataset_id"],
                              "models": [m["id"] for m in dataset["models"]]}), flush=True)


class Hook(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        if not verified(self.headers, body):
            self.send_response(401)  # not from consentry, or altered on the way
        else:
            message = json.loads(body)  # a CloudEvent: id, type, subject, data, ...
            known = handled.execute("SELECT 1 FROM handled WHERE id = ?", (message["id"],))
            if known.fetchone() is None:
                act(message)  # raise here and consentry retries (any non-2xx answer)
                handled.execute("INSERT OR IGNORE INTO handled VALUES (?)", (message["id"],))
            self.send_response(204)
        self.send_header("content-length", "0")
        self.end_headers()


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ.get("PORT", "8080"))), Hook)
    print(f"listening on {server.server_address[1]}", flush=True)
    server.serve_forever()
