"""Tables of the store (SQLAlchemy Core). Alembic migrations create them; this is their shape."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

# The ledger itself: append-only, hash-chained, gap-free `seq`.
events = Table(
    "events",
    metadata,
    Column(
        "seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False
    ),
    Column("id", String(36), nullable=False, unique=True),
    Column("at", String(32), nullable=False),  # RFC 3339, so the hashed form is the stored form
    Column("at_us", BigInteger, nullable=False),
    Column("kind", String(40), nullable=False),
    Column("actor", Text),
    Column("subject", Text),
    Column("account", Text),
    Column("purpose", Text),
    Column("categories", Text),  # canonical JSON list
    Column("status", String(40)),
    Column("policy_version", Text),
    Column("notice_version", Text),
    Column("language", String(35)),
    Column("method", Text),
    Column("payload", Text, nullable=False),  # canonical JSON object
    Column("idempotency_key", Text, unique=True),
    Column("request_hash", String(64)),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    # The personal fields (subject, actor, idempotency_key) are hashed through a salted
    # commitment, so that erasing them later leaves the chain and the log verifiable.
    Column("nonce", String(32)),
    Column("commitment", String(64)),  # set on every event (nullable only for migration)
    Column("mac", String(64)),  # HMAC of hash under the log key: made only by the store's writers
)
Index("ix_events_subject_seq", events.c.subject, events.c.seq)
Index("ix_events_account_seq", events.c.account, events.c.seq)
Index("ix_events_at_us", events.c.at_us)

# One row: the head of the chain. Appending locks it, which serialises writers on every backend.
ledger_head = Table(
    "ledger_head",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
    Column("at_us", BigInteger, nullable=False),
)

# Current state, derived from the ledger and updated in the same transaction.
consents = Table(
    "consents",
    metadata,
    Column("subject", Text, primary_key=True),
    Column("purpose", Text, primary_key=True),
    Column("category", Text, primary_key=True),
    Column("status", String(16), nullable=False),
    Column("at_us", BigInteger, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("notice_version", Text),
    Column("policy_version", Text),
)

objections = Table(
    "objections",
    metadata,
    Column("subject", Text, primary_key=True),
    Column("purpose", Text, primary_key=True),
    Column("category", Text, primary_key=True),  # "" = every category
    Column("status", String(16), nullable=False),  # raised | lifted
    Column("at_us", BigInteger, nullable=False),
    Column("seq", BigInteger, nullable=False),
)

memberships = Table(
    "memberships",
    metadata,
    Column("subject", Text, primary_key=True),
    Column("account", Text, primary_key=True),
    Column("at_us", BigInteger, nullable=False),
    Column("seq", BigInteger, nullable=False),
)
Index("ix_memberships_account", memberships.c.account)

# Pending invitations to join an account (``member.invited``), until the subject accepts or
# declines. Decisions ignore them: an invitee counts for nothing in the account.
invitations = Table(
    "invitations",
    metadata,
    Column("subject", Text, primary_key=True),
    Column("account", Text, primary_key=True),
    Column("at_us", BigInteger, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("invited_by", Text),  # the actor of the member.invited event
)
Index("ix_invitations_account", invitations.c.account)

account_settings = Table(
    "account_settings",
    metadata,
    Column("account", Text, primary_key=True),
    Column("purpose", Text, primary_key=True),
    Column("status", String(16), nullable=False),  # off | members_choose | on
    Column("at_us", BigInteger, nullable=False),
    Column("seq", BigInteger, nullable=False),
)

account_features = Table(
    "account_features",
    metadata,
    Column("account", Text, primary_key=True),
    Column("purpose", Text, primary_key=True),
    Column("status", String(16), nullable=False),  # enabled | disabled
    Column("at_us", BigInteger, nullable=False),
    Column("seq", BigInteger, nullable=False),
)

policies = Table(
    "policies",
    metadata,
    Column("version", Text, primary_key=True),
    Column("policy_id", Text, nullable=False),
    Column("effective_us", BigInteger, nullable=False),
    Column("digest", String(64), nullable=False),
    Column("document", Text, nullable=False),
    Column("at_us", BigInteger, nullable=False),
    Column("seq", BigInteger, nullable=False),
)

# The transparency log over the events (RFC 9162 Merkle tree): the hash of every complete
# subtree, level 0 being the leaves. Derived from the events and filled in off the write path by
# the checkpointer; proofs read it, verification recomputes it from the events.
tlog_nodes = Table(
    "tlog_nodes",
    metadata,
    Column("level", Integer, primary_key=True, autoincrement=False),
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary(32), nullable=False),
)

# Signed checkpoints (C2SP tlog-checkpoint notes) the store has issued, one per tree size.
checkpoints = Table(
    "checkpoints",
    metadata,
    Column("size", BigInteger, primary_key=True, autoincrement=False),
    Column("root", String(64), nullable=False),
    Column("at", String(32), nullable=False),
    Column("note", Text, nullable=False),
)

# Settings of the store itself (the receipt signing key, the store id).
meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

# Another id under which the platform knows a person (issue 16 §3): ``alias`` resolves to
# ``subject``, the person's primary id, from the ``subject.linked`` event ``seq`` on, until a
# ``subject.unlinked``. Decisions, the gate and impact read a person's choices through it.
subject_aliases = Table(
    "subject_aliases",
    metadata,
    Column("alias", Text, primary_key=True),
    Column("subject", Text, nullable=False),
    Column("at_us", BigInteger, nullable=False),
    Column("seq", BigInteger, nullable=False),
)
Index("ix_subject_aliases_subject", subject_aliases.c.subject)

STATE_TABLES = {
    "consents": consents,
    "objections": objections,
    "memberships": memberships,
    "invitations": invitations,
    "account_settings": account_settings,
    "account_features": account_features,
    "policies": policies,
    "subject_aliases": subject_aliases,
}

__all__ = ["STATE_TABLES", "metadata"]

# API keys for platform backends (`consentry keys create`): only a hash of the secret is kept.
# Not part of the ledger: keys are credentials, not events about people's data.
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),  # the public part of the key, e.g. "k_3f9a…"
    Column("name", Text, nullable=False),
    Column("role", String(32), nullable=False),
    Column("account", Text),
    Column("secret_hash", String(64), nullable=False),  # SHA-256 of the whole key
    Column("created_at", String(32), nullable=False),
    Column("created_by", Text),
    Column("revoked_at", String(32)),
)

# Web sessions (`/login`): the cookie carries the session id (MAC-ed); a request is served only
# while its row here is unexpired and unrevoked, so signing out ends a session at once.
# ``sid`` holds the SHA-256 of the session id, never the id itself.
web_sessions = Table(
    "web_sessions",
    metadata,
    Column("sid", String(64), primary_key=True),
    Column("subject", Text, nullable=False),
    Column("role", String(32), nullable=False),
    Column("account", Text),
    Column("created_at", String(32), nullable=False),
    Column("expires_at", BigInteger, nullable=False),  # Unix seconds
    Column("revoked_at", String(32)),
)
Index("ix_web_sessions_subject", web_sessions.c.subject)

# Lineage (`consentry gate`, `consentry model register`): what went into each training dataset
# and which models were trained on which datasets. Derived records, not ledger events: each
# dataset keeps the ledger position it was decided at (`ledger_seq`, `ledger_hash`) instead.
datasets = Table(
    "datasets",
    metadata,
    Column("id", String(36), primary_key=True),  # UUIDv7
    Column("name", Text, nullable=False),
    Column("purpose", Text, nullable=False),
    Column("as_of", String(32), nullable=False),  # the time decided at (RFC 3339)
    Column("as_of_us", BigInteger, nullable=False),
    Column("policy_version", Text),  # null when no version was in effect
    Column("ledger_seq", BigInteger, nullable=False),  # watermark: events up to this seq
    Column("ledger_hash", String(64), nullable=False),  # hash of event #ledger_seq
    Column("engine", String(16), nullable=False),
    Column("input_items", BigInteger, nullable=False),
    Column("output_items", BigInteger, nullable=False),
    Column("subjects", BigInteger, nullable=False),  # distinct subjects in the output
    Column("input_sha256", String(64), nullable=False),
    Column("output_sha256", String(64), nullable=False),
    Column("record", Text, nullable=False),  # canonical JSON of the whole lineage record
    Column("record_sha256", String(64), nullable=False),
    Column("created_at", String(32), nullable=False),
    Column("idempotency_key", Text, unique=True),
)
Index("ix_datasets_name", datasets.c.name)

# Which subjects' items each dataset holds: one row per (subject, dataset), looked up by
# subject (`consentry impact`). `categories` is JSON: {category: [items, items decided by them]}.
dataset_subjects = Table(
    "dataset_subjects",
    metadata,
    Column("subject", Text, primary_key=True),
    Column("dataset_id", String(36), ForeignKey("datasets.id"), primary_key=True),
    Column("items", BigInteger, nullable=False),
    Column("categories", Text, nullable=False),
)
Index("ix_dataset_subjects_dataset", dataset_subjects.c.dataset_id)

models = Table(
    "models",
    metadata,
    Column("id", String(36), primary_key=True),  # UUIDv7
    Column("name", Text, nullable=False),
    Column("version", Text),
    Column("created_at", String(32), nullable=False),
    Column("metadata", Text, nullable=False),  # JSON object
    Column("idempotency_key", Text, unique=True),
)
Index("ix_models_name", models.c.name)

model_datasets = Table(
    "model_datasets",
    metadata,
    Column("model_id", String(36), ForeignKey("models.id"), primary_key=True),
    Column("dataset_id", String(36), ForeignKey("datasets.id"), primary_key=True),
)
Index("ix_model_datasets_dataset", model_datasets.c.dataset_id)

# The transactional outbox (issue 15): one row per event, inserted by the append in the same
# transaction as the event, so that a message can neither be lost nor announce an event that did
# not commit. The row holds no personal data: the message is rendered from the event row when it
# is sent (see consentry.outbound.messages), so erasing an event's personal fields also erases
# them from every message not yet sent. ``impact`` is filled once, when a narrowing event is
# first handed to a subscription (the datasets and models it touches, as ``consentry impact``
# computes them), and every delivery of the message then carries the same impact.
outbox = Table(
    "outbox",
    metadata,
    Column(
        "seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False
    ),
    Column("event_id", String(36), nullable=False),
    Column("kind", String(40), nullable=False),
    Column("at_us", BigInteger, nullable=False),
    Column("impact", Text),  # canonical JSON, narrowing events only, once rendered
)

# Where outbound messages go: a webhook endpoint (http/https) or a broker stream (nats://).
# ``cursor_seq``: the outbox rows up to it have been matched against the subscription (a
# delivery row made for each that matches); a new subscription starts at the ledger's head.
webhook_subscriptions = Table(
    "webhook_subscriptions",
    metadata,
    Column("id", String(40), primary_key=True),  # "wh_…", or "nats_<stream>" for a broker sink
    Column("url", Text, nullable=False),
    Column("secret", Text),  # whsec_<base64>: the receiver verifies with it, so it is kept
    Column("types", Text, nullable=False),  # JSON list of type patterns; [] = every type
    Column("account", Text),  # only this account's events (account administrators' hooks)
    Column("timeout_s", Integer, nullable=False),
    Column("cursor_seq", BigInteger, nullable=False),
    Column("created_at", String(32), nullable=False),
    Column("created_by", Text),
)

# One row per (subscription, message) that matched: its delivery state. ``order_key`` is a
# keyed hash of the message's subject (or account): messages with one key are sent in ``seq``
# order, one after the other, and never while an earlier one is waiting for a retry.
# ``lease_until_us``: claimed by ``lease_owner`` until then (a worker that died lets it lapse).
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("subscription_id", String(40), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("order_key", String(32), nullable=False),
    Column("status", String(16), nullable=False),  # pending | delivered | failed
    Column("attempts", Integer, nullable=False),
    Column("next_at_us", BigInteger, nullable=False),
    Column("lease_owner", String(64)),
    Column("lease_until_us", BigInteger),
    Column("created_at_us", BigInteger, nullable=False),
    Column("delivered_at_us", BigInteger),
    Column("last_status", Integer),  # the endpoint's last HTTP status (None: no answer)
    Column("last_error", Text),
)
Index(
    "ix_webhook_deliveries_due",
    webhook_deliveries.c.subscription_id,
    webhook_deliveries.c.status,
    webhook_deliveries.c.next_at_us,
)
Index(
    "ix_webhook_deliveries_order",
    webhook_deliveries.c.subscription_id,
    webhook_deliveries.c.order_key,
    webhook_deliveries.c.seq,
)
