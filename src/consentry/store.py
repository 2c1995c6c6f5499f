"""The library's front door: one :class:`Store` over a ledger, its policy and its decisions.

Everything the CLI, the HTTP API and the web pages do is a method here::

    from consentry import Store

    store = Store("sqlite:///consentry.db")
    store.init(policies=["policies/meetings.yaml"])
    store.give_consent("u1", "ai.training", ["content.audio"])
    store.check("u1", "ai.training", "content.audio").allowed
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from .canonical import canonical_json, sha256_hex
from .decide import Decider, Decision, Reason, SubjectDecision
from .errors import (
    AsOfOutOfRange,
    Conflict,
    InvalidInput,
    LedgerCorrupt,
    NotFound,
    NotInitialised,
    ObjectionIgnored,
    PolicyConflict,
    SignatureInvalid,
)
from .ids import new_id
from .ledger import audit, schema, verifying
from .ledger.changes import ChangeWatch, max_staleness_from_env
from .ledger.checkpoint import Checkpoint, NoteSigner, NoteVerifier, read_checkpoint
from .ledger.dpv import dpv_record
from .ledger.engine import DEFAULT_URL, sqlite_path
from .ledger.events import CONSENT_KINDS, NOTICE_SERVED, NOTICE_SHA256, Draft, Event, Kind
from .ledger.evidence import (
    ReceiptCheck,
    compare_with_event,
    evidence_for,
    verify_receipt_offline,
)
from .ledger.notices import consents_without_notice, last_served, last_served_id
from .ledger.receipts import (
    ReceiptSigner,
    build_receipt,
    jwks,
    key_id,
    new_private_key_pem,
    read_key_file,
)
from .ledger.store import Ledger, VerifyResult
from .ledger.transparency import TransparencyLog
from .policy.loader import load_policies
from .policy.model import Basis, Policy
from .policy.objections import objection_matters
from .state import CONSENT_NAMES, State, unpack
from .taxonomy import DEFAULT_TAXONOMY, Taxonomy, covers
from .textcheck import NUL, checked_id, refuse_bad_fields
from .times import Clock, format_time, from_us, parse_as_of, to_us, utcnow

if TYPE_CHECKING:
    from .gate import GateResult, VerifyReport
    from .gpc import GpcResult
    from .imports import ImportReport
    from .ledger.key_table import ApiKeyTable
    from .lineage import DatasetInfo, Impact, ModelInfo

ACCOUNT_SETTINGS = ("off", "members_choose", "on")
#: A person's consent choices by name (``Store.record_consent``), and the event each records.
CONSENT_ACTIONS: Mapping[str, Kind] = {
    "give": Kind.CONSENT_GIVEN,
    "refuse": Kind.CONSENT_REFUSED,
    "withdraw": Kind.CONSENT_WITHDRAWN,
}
#: The payload of a ``member.declined`` event that the account recorded (its invitation
#: withdrawn), not the person (see ``Store.withdraw_invitation``).
WITHDRAWN: Mapping[str, Any] = {"withdrawn": True}
SIGNING_KEY = "signing_key"
#: The public half of the receipt key, kept whichever way the private half is kept.
SIGNING_PUBLIC_KEY = "signing_public_key"
#: Where the receipt signing key lives when it is not kept in the database.
SIGNING_KEY_FILE_ENV = "CONSENTRY_SIGNING_KEY_FILE"
#: The transparency log's key (signs checkpoints, authenticates events) and its public half.
LOG_KEY = "log_key"
LOG_VERIFIER_KEY = "log_verifier_key"
LOG_ORIGIN = "log_origin"
LOG_KEY_FILE_ENV = "CONSENTRY_LOG_KEY_FILE"
#: An append-only directory every new checkpoint is also written to (ship it off the machine).
CHECKPOINT_DIR_ENV = "CONSENTRY_CHECKPOINT_DIR"
#: Where the web session signing key is kept (``Store.web_session_key``).
WEB_SESSION_KEY = "web_session_key"
#: A notice shown again to the same person, version and language within this time is not
#: recorded again (``Store.serve_notice``): one day, in microseconds.
NOTICE_SERVED_WINDOW_US = 24 * 3600 * 1_000_000
#: A rotated receipt key kept in the database, by kid (the first key is ``signing_key``).
SIGNING_KEY_PREFIX = "signing_key."


@dataclass(frozen=True)
class PublishResult:
    version: str
    digest: str
    published: bool  # False: this exact version was already published
    event: Event | None


def database_url(url: str | None = None) -> str:
    """The URL to use: the argument, else ``CONSENTRY_DATABASE_URL``, else the SQLite default."""
    return url or os.environ.get("CONSENTRY_DATABASE_URL") or DEFAULT_URL


class Store:
    """A consentry store: the ledger, the policy versions in it and decisions over them."""

    def __init__(
        self,
        url: str | None = None,
        *,
        clock: Clock | None = None,
        signing_key_file: str | Path | None = None,
        log_key_file: str | Path | None = None,
        checkpoint_dir: str | Path | None = None,
        create: bool = True,
        max_staleness: float | None = None,
    ) -> None:
        """``signing_key_file`` (else ``CONSENTRY_SIGNING_KEY_FILE``): sign receipts with the
        Ed25519 key in that file instead of one kept in the database; ``log_key_file`` (else
        ``CONSENTRY_LOG_KEY_FILE``): the same for the transparency log's key;
        ``checkpoint_dir`` (else ``CONSENTRY_CHECKPOINT_DIR``): the witness location every
        checkpoint is appended to (see docs/deploying.md). ``create=False`` refuses a SQLite
        file that does not exist (:class:`NotInitialised`) instead of creating an empty one:
        every command but ``init`` opens its store so. ``max_staleness`` (seconds; else
        ``CONSENTRY_MAX_STALENESS_MS``, else 5 ms): how long :meth:`check` and
        :meth:`check_many` may go without seeing a write made by another process (writes
        made in this process are seen by the next check; 0 looks every time; see
        :mod:`consentry.ledger.changes`)."""
        self.url = database_url(url)
        if not create:
            path = sqlite_path(self.url)
            if path is not None and not Path(path).exists():
                raise NotInitialised(
                    f"there is no store at {self.url}: the file {path} does not exist",
                    hint="create one with `consentry init --policy FILE`, or point --db (or "
                    "CONSENTRY_DATABASE_URL) at an existing store",
                    url=self.url,
                )
        key_file = signing_key_file or os.environ.get(SIGNING_KEY_FILE_ENV) or None
        self.signing_key_file = Path(key_file) if key_file else None
        log_file = log_key_file or os.environ.get(LOG_KEY_FILE_ENV) or None
        self.log_key_file = Path(log_file) if log_file else None
        witness = checkpoint_dir or os.environ.get(CHECKPOINT_DIR_ENV) or None
        self.checkpoint_dir = Path(witness) if witness else None
        self._log_signer: NoteSigner | None = None
        self.ledger = Ledger(self.url)
        self.clock: Clock = clock or utcnow
        self._lock = threading.RLock()
        self._state: State | None = None
        self._decider: Decider | None = None
        self._signer: ReceiptSigner | None = None
        self._receipt_keys: tuple[str, ...] = ()  # see receipt_public_keys
        self._keys_seen = 0
        self._initialised = False
        self._first_in_force: tuple[str, int] | None = None  # see _first_policy_in_effect
        self.ledger.on_commit = self._committed
        try:
            staleness = max_staleness_from_env(max_staleness)
        except ValueError as exc:
            raise InvalidInput(
                str(exc), hint="give a number of milliseconds >= 0", field="max_staleness"
            ) from None
        self._changes = ChangeWatch(self.ledger.engine, staleness)

    def __repr__(self) -> str:
        return f"<Store {self.url}>"

    @property
    def lock(self) -> threading.RLock:
        """Held while the in-memory state changes; hold it to read a consistent state."""
        return self._lock

    def close(self) -> None:
        self._changes.close()
        self.ledger.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- set-up ---------------------------------------------------------------------------

    def init(self, policies: Iterable[str | Path] = ()) -> list[PublishResult]:
        """Create the schema and the receipt signing key (both idempotent), publish policies.

        With a signing key file, the store registers that key's public half and never holds
        the private one; otherwise it creates a key and keeps it in its ``meta`` table.
        """
        signer = None
        if self.signing_key_file is not None:  # read first: a bad file creates nothing
            signer = ReceiptSigner(
                read_key_file(self.signing_key_file), source=str(self.signing_key_file)
            )
        self.ledger.migrate()
        if signer is not None:
            # A store that already keeps its own key stays with it (a file holding that same
            # key is fine); a new store registers the file's.
            embedded = self.ledger.get_meta(SIGNING_KEY)
            public = ReceiptSigner(embedded).public_key_b64() if embedded else None
            registered = self.ledger.set_meta_once(
                SIGNING_PUBLIC_KEY, public or signer.public_key_b64()
            )
            self._check_key_file(signer, registered)
        elif self.ledger.get_meta(SIGNING_PUBLIC_KEY) is None:
            pem = self.ledger.set_meta_once(SIGNING_KEY, new_private_key_pem())
            self.ledger.set_meta_once(SIGNING_PUBLIC_KEY, ReceiptSigner(pem).public_key_b64())
        self._init_log_key()
        results: list[PublishResult] = []
        for source in policies:
            results.extend(self.publish(source))
        return results

    def _require_init(self) -> None:
        if self._initialised:
            return
        if self.ledger.is_initialised():
            self._initialised = True  # a store never goes back to uninitialised
        else:
            raise NotInitialised(
                f"{self.url} is not a consentry store yet",
                hint="run `consentry init --policy policies/meetings.yaml` first",
            )

    # -- policies -------------------------------------------------------------------------

    def publish(
        self, source: str | Path | Policy, *, actor: str | None = None
    ) -> list[PublishResult]:
        """Publish every version in a policy file (or one :class:`Policy`).

        Re-publishing identical content is a no-op; different content under a published
        version, or a different policy id than the store's, is refused.
        """
        versions = [source] if isinstance(source, Policy) else load_policies(Path(source))
        results = []
        for policy in versions:
            results.append(self._publish_one(policy, actor))
        return results

    def _publish_one(self, policy: Policy, actor: str | None) -> PublishResult:
        state = self.state()
        for entry in state.policies:
            if entry.policy.id != policy.id:
                raise PolicyConflict(
                    f"this store holds policy {entry.policy.id!r}, not {policy.id!r}",
                    hint="use one store per policy id",
                )
            if entry.policy.version == policy.version:
                if entry.policy.digest == policy.digest:
                    return PublishResult(policy.version, policy.digest, False, None)
                raise PolicyConflict(
                    f"version {policy.version!r} is already published with different content",
                    hint="a published version is immutable: publish the change as a new version",
                    version=policy.version,
                )
        draft = Draft(
            kind=Kind.POLICY_PUBLISHED,
            actor=actor,
            policy_version=policy.version,
            payload={
                "policy_id": policy.id,
                "effective": policy.document["effective"],
                "effective_us": to_us(policy.effective),
                "digest": policy.digest,
                "document": dict(policy.document),
            },
            # The digest makes publishing idempotent across concurrent publishers too.
            idempotency_key=f"policy:{policy.id}:{policy.version}:{policy.digest}",
        )
        (event,) = self._append([draft])
        return PublishResult(policy.version, policy.digest, True, event)

    def policies(self) -> list[Policy]:
        """Every published version, in order of ``effective``."""
        return sorted((e.policy for e in self.state().policies), key=lambda p: p.effective)

    def policy(self, version: str | None = None, *, at: datetime | None = None) -> Policy:
        """A published version by name, else the one in effect ``at`` (default now)."""
        state = self.state()
        if version is not None:
            for published in state.policies:
                if published.policy.version == version:
                    return published.policy
            from .errors import unknown

            raise unknown("policy version", version, [e.policy.version for e in state.policies])
        entry, _ = state.policy_at(to_us(at or self.clock()))
        if entry is None:
            if state.policies:
                raise NotFound(
                    "no published policy version is in effect yet",
                    hint="check the versions' effective dates with `consentry policy show`",
                )
            raise NotFound(
                "no policy has been published", hint="run `consentry policy publish FILE`"
            )
        return entry.policy

    def _notice_policy(self) -> Policy:
        """The version a choice is recorded under: the one in effect, or before any takes
        effect, the first one scheduled (people may opt in ahead of a launch)."""
        with self._lock:
            if self._state is None:
                self.state()
            state = self._state
            assert state is not None
            entry, _ = state.policy_at(to_us(self.clock()))
            if entry is None:
                self._catch_up()  # someone may have published since we last looked
                entry, _ = state.policy_at(to_us(self.clock()))
        if entry is not None:
            return entry.policy
        upcoming = sorted((e.policy for e in state.policies), key=lambda p: p.effective)
        if not upcoming:
            raise NotFound(
                "no policy has been published", hint="run `consentry policy publish FILE`"
            )
        return upcoming[0]

    def taxonomy(self) -> Taxonomy:
        """Names known to any published version (the built-ins when none is published)."""
        taxonomy = DEFAULT_TAXONOMY
        for policy in self.policies():
            taxonomy = taxonomy.extended(
                categories=policy.taxonomy.categories,
                purposes=policy.taxonomy.purposes,
                labels=policy.taxonomy.labels,
            )
        return taxonomy

    def diff(self, old: str, new: str, *, language: str | None = None) -> Any:
        """What ``new`` allows that ``old`` did not, the reverse, and the consents made stale."""
        from .policy.diff import diff_policies

        a, b = self.policy(old), self.policy(new)
        return diff_policies(a, b, language=language, stale=self.stale_consents(b))

    def stale_consents(self, policy: Policy) -> dict[str, int]:
        """Per re-consent rule of ``policy``: how many given consents predate it."""
        out: dict[str, int] = {}
        reconsent = [r for r in policy.rules if r.reconsent]
        if not reconsent:
            return out
        cutoff = to_us(policy.effective)
        c = schema.consents.c
        with self.ledger.engine.connect() as conn:
            rows = conn.execute(
                select(c.purpose, c.category).where(c.status == "given", c.at_us < cutoff)
            ).all()
        for rule in reconsent:
            out[rule.id] = sum(1 for p, cat in rows if policy.rule_for(p, cat) is rule)
        return out

    # -- recording choices ----------------------------------------------------------------

    def give_consent(
        self,
        subject: str,
        purpose: str,
        categories: Sequence[str],
        **options: Any,
    ) -> Event:
        """Record that ``subject`` opted in to ``purpose`` for ``categories``."""
        return self._consent(Kind.CONSENT_GIVEN, subject, purpose, categories, **options)

    def refuse_consent(
        self, subject: str, purpose: str, categories: Sequence[str], **options: Any
    ) -> Event:
        """Record that ``subject`` was asked and said no."""
        return self._consent(Kind.CONSENT_REFUSED, subject, purpose, categories, **options)

    def withdraw_consent(
        self, subject: str, purpose: str, categories: Sequence[str], **options: Any
    ) -> Event:
        """Record that ``subject`` took back an opt-in (as easy as giving it)."""
        return self._consent(Kind.CONSENT_WITHDRAWN, subject, purpose, categories, **options)

    def _consent(
        self,
        kind: Kind,
        subject: str,
        purpose: str,
        categories: Sequence[str],
        *,
        notice_version: str | None = None,
        language: str | None = None,
        method: str = "api",
        actor: str | None = None,
        idempotency_key: str | None = None,
    ) -> Event:
        subject = _id(subject, "subject")
        if isinstance(categories, str):
            categories = [categories]
        if not categories:
            raise InvalidInput(
                "a consent names at least one data category",
                hint="e.g. --category content.audio",
                field="categories",
            )
        current = self._notice_policy()
        sent_notice, sent_language = notice_version, language
        purpose = current.taxonomy.purpose(purpose, where="consent")
        cats = tuple(sorted({current.taxonomy.category(c, where="consent") for c in categories}))
        notice_version = notice_version or current.version
        versions = [e.policy.version for e in self._state.policies] if self._state else []
        if notice_version not in versions:
            from .errors import unknown

            raise unknown("policy version", notice_version, versions, where="notice_version")
        language = language or current.language
        if current.notices and language not in current.notices:
            from .errors import unknown

            raise unknown("language", language, current.notices, where="notice")
        # The notice.served event this consent followed, named in its payload: the chain
        # then says the notice came first (see ledger/notices.py).
        served = last_served_id(self.ledger.read_engine(), subject, notice_version, language)
        payload = {NOTICE_SERVED: served} if served is not None else {}
        # A retry compares what the caller sent, not the versions in effect when it came.
        asked = {
            "kind": str(kind),
            "actor": actor or subject,
            "subject": subject,
            "purpose": purpose,
            "categories": list(cats),
            "notice_version": sent_notice,
            "language": sent_language,
            "method": method,
        }
        return self._append1(
            Draft(
                kind=kind,
                actor=actor or subject,
                subject=subject,
                purpose=purpose,
                categories=cats,
                policy_version=current.version,
                notice_version=notice_version,
                language=language,
                method=method,
                payload=payload,
                idempotency_key=idempotency_key,
                asked=asked,
            )
        )

    def serve_notice(
        self,
        subject: str,
        *,
        notice_version: str | None = None,
        language: str | None = None,
        method: str = "api",
        actor: str | None = None,
    ) -> tuple[Event, bool]:
        """Record that ``subject`` was shown the notice of ``notice_version`` (default: the
        version in effect) in ``language`` (default: its authoritative language): a
        ``notice.served`` event with the SHA-256 of the exact text shown.

        Rate-limited per subject, notice version and language: within
        :data:`NOTICE_SERVED_WINDOW_US` of the last such event, that event is returned and nothing
        is recorded (a page reload does not flood the ledger). Returns (event, recorded)."""
        subject = _id(subject, "subject")
        refuse_bad_fields({"notice_version": notice_version, "language": language})
        policy = self.policy(notice_version) if notice_version else self._notice_policy()
        if not policy.notices:
            raise InvalidInput(
                f"policy version {policy.version} has no notice to serve",
                hint="add notices to the policy (docs/policy-format.md)",
                field="notice_version",
            )
        notice = policy.notice(language)
        last = last_served(self.ledger.read_engine(), subject, policy.version, notice.language)
        now_us = to_us(self.clock())
        if last is not None and now_us - last.at_us < NOTICE_SERVED_WINDOW_US:
            return last, False
        current = self._notice_policy()
        event = self._append1(
            Draft(
                kind=Kind.NOTICE_SERVED,
                actor=actor or subject,
                subject=subject,
                policy_version=current.version,
                notice_version=policy.version,
                language=notice.language,
                method=method,
                payload={NOTICE_SHA256: notice.digest()},
            )
        )
        return event, True

    def consents_without_notice(self, *, limit: int | None = None) -> list[Event]:
        """Consents recorded with no earlier ``notice.served`` event for their subject, notice
        version and language (what ``consentry audit notices`` lists), oldest first."""
        self._require_init()
        return consents_without_notice(self.ledger.engine, limit=limit)

    def object(
        self,
        subject: str,
        purpose: str,
        categories: Sequence[str] = (),
        *,
        lift: bool = False,
        actor: str | None = None,
        idempotency_key: str | None = None,
    ) -> Event:
        """Record an objection (or lift one). No categories means every category."""
        subject = _id(subject, "subject")
        taxonomy = self.taxonomy()
        purpose = taxonomy.purpose(purpose, where="objection")
        cats = tuple(sorted({taxonomy.category(c, where="objection") for c in categories}))
        if not lift:  # lifting is always allowed: an old objection may outlive its rule
            policy = self._notice_policy()
            for category in cats or (None,):
                if not objection_matters(policy, purpose, category):
                    raise ignored_objection(policy, purpose, category)
        return self._append1(
            Draft(
                kind=Kind.OBJECTION_LIFTED if lift else Kind.OBJECTION_RAISED,
                actor=actor or subject,
                subject=subject,
                purpose=purpose,
                categories=cats,
                idempotency_key=idempotency_key,
            )
        )

    def record_consent(
        self,
        action: str,
        subject: str,
        purpose: str,
        categories: Sequence[str] = (),
        **options: Any,
    ) -> Event:
        """One of a person's choices by name, as the CLI, the API and the preference centre
        receive it: ``give``, ``refuse`` or ``withdraw`` a consent (``options`` as
        :meth:`give_consent`), ``object`` or ``lift`` an objection (``actor`` and
        ``idempotency_key`` only). The rules are the called method's: an objection the
        policy would ignore is refused (:class:`ObjectionIgnored`) whoever sends it."""
        if action in ("object", "lift"):
            extra = set(options) - {"actor", "idempotency_key"}
            if extra:
                raise InvalidInput(
                    f"an objection takes no {', '.join(sorted(extra))}", field=sorted(extra)[0]
                )
            return self.object(subject, purpose, categories, lift=action == "lift", **options)
        kind = CONSENT_ACTIONS.get(action)
        if kind is None:
            known = ", ".join([*CONSENT_ACTIONS, "object", "lift"])
            raise InvalidInput(f"unknown choice {action!r}: one of {known}", field="action")
        return self._consent(kind, subject, purpose, categories, **options)

    def add_member(
        self,
        subject: str,
        account: str,
        *,
        actor: str | None = None,
        idempotency_key: str | None = None,
    ) -> Event:
        """``subject`` joins ``account`` (its admins' settings now cap the subject)."""
        return self._membership(Kind.MEMBER_ADDED, subject, account, actor, idempotency_key)

    def remove_member(
        self,
        subject: str,
        account: str,
        *,
        actor: str | None = None,
        idempotency_key: str | None = None,
    ) -> Event:
        """``subject`` leaves ``account``."""
        return self._membership(Kind.MEMBER_REMOVED, subject, account, actor, idempotency_key)

    def invite_member(
        self,
        subject: str,
        account: str,
        *,
        actor: str | None = None,
        idempotency_key: str | None = None,
    ) -> Event:
        """Invite ``subject`` to ``account`` (what an account administrator may do). The
        invitee counts for nothing in the account until they accept."""
        subject, account = _id(subject, "subject"), _id(account, "account")
        if account in self.state().accounts_of(subject):
            raise Conflict(
                f"{subject!r} is already a member of {account!r}",
                hint="nothing to invite them to; list members with `consentry account show`",
            )
        return self._append1(
            Draft(
                kind=Kind.MEMBER_INVITED,
                actor=actor,
                subject=subject,
                account=account,
                idempotency_key=idempotency_key,
            )
        )

    def accept_invitation(
        self,
        subject: str,
        account: str,
        *,
        actor: str | None = None,
        idempotency_key: str | None = None,
    ) -> Event:
        """``subject`` accepts a pending invitation to ``account`` and becomes a member."""
        return self._answer(Kind.MEMBER_ACCEPTED, subject, account, actor, idempotency_key)

    def decline_invitation(
        self,
        subject: str,
        account: str,
        *,
        actor: str | None = None,
        idempotency_key: str | None = None,
    ) -> Event:
        """``subject`` declines a pending invitation to ``account`` (nothing applies to them)."""
        return self._answer(Kind.MEMBER_DECLINED, subject, account, actor, idempotency_key)

    def withdraw_invitation(
        self,
        subject: str,
        account: str,
        *,
        actor: str | None = None,
        idempotency_key: str | None = None,
    ) -> Event:
        """The account withdraws its pending invitation of ``subject`` (what an account
        administrator may do): recorded as ``member.declined`` by ``actor`` with the payload
        ``{"withdrawn": true}``, so that the state, its audit and every reader of the ledger
        treat it as the invitation's end (the person never joined), and the record says who
        ended it. NotFound without a pending invitation."""
        return self._answer(
            Kind.MEMBER_DECLINED,
            subject,
            account,
            actor,
            idempotency_key,
            payload=WITHDRAWN,
            by_account=True,
        )

    def _answer(
        self,
        kind: Kind,
        subject: str,
        account: str,
        actor: str | None,
        key: str | None,
        *,
        payload: Mapping[str, Any] | None = None,
        by_account: bool = False,
    ) -> Event:
        subject, account = _id(subject, "subject"), _id(account, "account")
        draft = Draft(
            kind=kind,
            actor=actor if by_account else (actor or subject),
            subject=subject,
            account=account,
            payload=dict(payload or {}),
            idempotency_key=key,
        )
        if not any(i["account"] == account for i in self.invitations(subject=subject)):
            if key is not None:
                # A retry of an answer already recorded returns it (its invitation is gone).
                retried = self._retried(draft)
                if retried is not None:
                    return retried
            raise NotFound(
                f"{subject!r} has no pending invitation to {account!r}",
                hint="the account's administrator invites the person first (POST "
                "/v1/accounts/{account}/invitations/{subject}, `consentry member invite`); "
                "pending invitations: GET /v1/subjects/{subject}/invitations",
                subject=subject,
                account=account,
            )
        return self._append1(draft)

    def _retried(self, draft: Draft) -> Event | None:
        """The event already recorded under ``draft``'s idempotency key, if any (a
        different request under that key is refused as any reused key is)."""
        e = schema.events.c
        with self.ledger.engine.connect() as conn:
            seq = conn.execute(
                select(e.seq).where(e.idempotency_key == draft.idempotency_key)
            ).scalar()
        if seq is None:
            return None
        return self._append1(draft)  # the ledger returns the first event or refuses (409)

    def invitations(
        self, *, subject: str | None = None, account: str | None = None
    ) -> list[dict[str, Any]]:
        """Pending invitations of a subject, or to an account, oldest first."""
        self._require_init()
        i = schema.invitations.c
        query = select(i.subject, i.account, i.at_us, i.seq, i.invited_by).order_by(i.seq)
        if subject is not None:
            query = query.where(i.subject == _id(subject, "subject"))
        if account is not None:
            query = query.where(i.account == _id(account, "account"))
        with self.ledger.engine.connect() as conn:
            rows = conn.execute(query).all()
        from .times import format_time, from_us

        return [
            {
                "subject": r.subject,
                "account": r.account,
                "seq": r.seq,
                "at": format_time(from_us(r.at_us)),
                "invited_by": r.invited_by,
            }
            for r in rows
        ]

    def _membership(
        self, kind: Kind, subject: str, account: str, actor: str | None, key: str | None
    ) -> Event:
        subject, account = _id(subject, "subject"), _id(account, "account")
        if kind is Kind.MEMBER_REMOVED and account not in self.state().accounts_of(subject):
            raise NotFound(
                f"{subject!r} is not a member of {account!r}",
                hint="list members with `consentry account show`",
            )
        return self._append1(
            Draft(kind=kind, actor=actor, subject=subject, account=account, idempotency_key=key)
        )

    def set_account(
        self,
        account: str,
        purpose: str,
        setting: str,
        *,
        actor: str | None = None,
        idempotency_key: str | None = None,
    ) -> Event:
        """An account's setting for a purpose: ``off``, ``members_choose`` or ``on``."""
        if setting not in ACCOUNT_SETTINGS:
            raise InvalidInput(
                f"account setting {setting!r} is not one of {', '.join(ACCOUNT_SETTINGS)}",
                field="setting",
            )
        return self._account(
            Kind.ACCOUNT_SETTING, account, purpose, setting, actor, idempotency_key
        )

    def set_feature(
        self,
        account: str,
        purpose: str,
        enabled: bool,
        *,
        actor: str | None = None,
        idempotency_key: str | None = None,
    ) -> Event:
        """Switch an AI feature (``ai.feature.*``) on or off for an account."""
        status = "enabled" if enabled else "disabled"
        return self._account(Kind.ACCOUNT_FEATURE, account, purpose, status, actor, idempotency_key)

    def _account(
        self,
        kind: Kind,
        account: str,
        purpose: str,
        status: str,
        actor: str | None,
        key: str | None,
    ) -> Event:
        account = _id(account, "account")
        purpose = self.taxonomy().purpose(purpose, where="account setting")
        from .account_rules import check_account_change

        # The version in effect (else the first scheduled), and any scheduled after it: an
        # administrator may prepare for a version about to take effect.
        current = self._notice_policy()
        later = [p for p in self.policies() if p.effective > current.effective]
        check_account_change(str(kind), [current, *later], purpose, status)
        return self._append1(
            Draft(
                kind=kind,
                actor=actor,
                account=account,
                purpose=purpose,
                status=status,
                idempotency_key=key,
            )
        )

    def append(self, drafts: Sequence[Draft], *, text_checked: bool = False) -> list[Event]:
        """Append prepared drafts in one transaction (bulk imports, benchmarks).
        ``text_checked``: the caller has already refused text the store cannot keep in every
        field (``consentry.imports`` checks each row as it reads it)."""
        return self._append(drafts, text_checked=text_checked)

    def _append1(self, draft: Draft) -> Event:
        return self._append([draft])[0]

    def _append(self, drafts: Sequence[Draft], *, text_checked: bool = False) -> list[Event]:
        self._require_init()
        if not text_checked:
            for draft in drafts:
                refuse_bad_fields(vars(draft))  # (names the field: subject, categories[1], ...)
        if self.ledger.mac_key is None:
            self.ledger.mac_key = self.log_signer().event_key()
        # The clock is read by the ledger while it holds the chain head (see Ledger.append).
        events = self.ledger.append(drafts, self.clock)
        with self._lock:
            state = self._state
            if state is not None and events and events[-1].seq > state.seq:
                expected = range(state.seq + 1, state.seq + 1 + len(events))
                if [e.seq for e in events] == list(expected):
                    state.apply_all(events)  # our own write, next in line: no re-read
                else:
                    self._catch_up()
        return events

    def _committed(self, events: list[Event]) -> None:
        """Events our ledger just committed for any thread (a group commit), in ``seq``
        order: applied here, so that concurrent writers need no re-read (see ``_append``)."""
        if not self._lock.acquire(blocking=False):
            return  # the holder may be waiting on this very commit; _append catches up
        try:
            state = self._state
            if state is not None and events and events[0].seq == state.seq + 1:
                state.apply_all(events)
        finally:
            self._lock.release()

    # -- identities -----------------------------------------------------------------------

    def link_subject(self, primary: str, alias: str, **options: Any) -> Event:
        """Record that ``alias`` is another id of the person ``primary``: deciding it decides
        the person (options: ``actor``, ``idempotency_key``; see
        :mod:`consentry.identities` for the rules and the merge of two people's choices)."""
        from .identities import link

        return link(self, primary, alias, **options)

    def unlink_subject(self, primary: str, alias: str, **options: Any) -> Event:
        """Record that ``alias`` no longer names the person ``primary``."""
        from .identities import unlink

        return unlink(self, primary, alias, **options)

    def aliases(self, subject: str) -> dict[str, Any]:
        """The person ``subject`` names: their primary id and their aliases."""
        from .identities import aliases

        return aliases(self, subject)

    def subject_ids(self, subject: str) -> list[str]:
        """Every id of the person ``subject`` names (primary first): what erasing the
        person erases, what ``impact`` looks up."""
        from .identities import subject_ids

        return subject_ids(self, subject)

    def record_gpc(self, subject: str, *, actor: str | None = None) -> GpcResult:
        """Record a Global Privacy Control signal from ``subject``: once per policy version,
        as the refusals and objections the policy's ``gpc`` says it means (nothing more
        where the policy gives it no meaning)."""
        from .gpc import record

        return record(self, subject, actor=actor)

    def import_consents(self, path: str | Path, **options: Any) -> ImportReport:
        """Import consents collected by another system from a CSV or JSON Lines file, each
        keeping the moment it was given (``captured_at``); idempotent per ``source_id``; a
        file with any row in error writes nothing. Options: ``fmt``, ``source``, ``actor``,
        ``batch_size``, ``dry_run``, ``progress`` (:func:`consentry.imports.import_consents`)."""
        from .imports import import_consents

        return import_consents(self, path, **options)

    # -- decisions ------------------------------------------------------------------------

    def state(self) -> State:
        """The in-memory state at the ledger's head (built once, then caught up by ``seq``)."""
        with self._lock:
            if self._state is None:
                self._require_init()
                self._state = load_state(self.ledger)
                self._decider = Decider(self._state, self.clock)
            else:
                self._catch_up()
            return self._state

    def _catch_up(self, upto_seq: int | None = None) -> None:
        assert self._state is not None
        self._state.apply_all(self.ledger.events(after_seq=self._state.seq, upto_seq=upto_seq))

    def state_at(self, seq: int) -> State | None:
        """The in-memory state caught up to exactly ``seq``, or None if it is already past it
        (it never goes back). Hold ``lock`` while the state is used."""
        with self._lock:
            state = self._state if self._state is not None else self.state()
            if state.seq < seq:
                self._catch_up(seq)
            return state if state.seq == seq else None

    def decider(self, *, refresh: bool = True) -> Decider:
        """The compiled in-memory decider for current-time checks. ``refresh``: first catch
        up with every write made in this process and, within ``max_staleness``, in others
        (without a database round trip unless there is something new);
        false: as it is."""
        if self._decider is None:
            self.state()
        elif refresh and self._changes.behind(self._decider.state.seq):
            with self._lock:
                self._catch_up()
        assert self._decider is not None
        return self._decider

    def check(
        self,
        subjects: str | Sequence[str],
        purpose: str,
        category: str,
        labels: Iterable[str] = (),
        *,
        as_of: datetime | str | None = None,
        account: str | None = None,
    ) -> Decision:
        """Allow or deny ``purpose`` on an item of ``category`` whose subjects are given
        (the first is its owner), now or ``as_of`` a past time. ``account``: the account
        the item belongs to (the meeting host's, the label's); None decides the most
        protective answer over each person's accounts (see docs/concepts.md).

        Now: as of every write made in this process, and as of at most ``max_staleness``
        ago for writes made by other processes (see :meth:`decider`)."""
        if as_of is None and account is None and subjects.__class__ is str and _plain_id(subjects):
            # The call the README shows, kept to the decider's own fast path: one subject
            # passed as a string, no list built, no query unless the ledger moved.
            decider = self._decider
            if decider is None or self._changes.behind(decider.state.seq):
                with self._lock:
                    if self._decider is None:
                        self.state()
                    else:
                        self._catch_up()
                decider = self._decider
                assert decider is not None
            return decider.check(subjects, purpose, category, labels, self._now_us())
        people = [subjects] if isinstance(subjects, str) else list(subjects)
        if not people:
            raise InvalidInput("a check needs at least one subject", field="subjects")
        for s in people:
            _id(s, "subject")
        if account is not None:
            account = _id(account, "account")
        if as_of is None:
            return self.decider().check(people, purpose, category, labels, self._now_us(), account)
        at = self.resolve_as_of(as_of)
        state = self.state_as_of(at, subjects=people, accounts=() if account is None else [account])
        return Decider(state, remember=False).check(
            people, purpose, category, labels, to_us(at), account
        )

    def check_many(
        self,
        subjects: Sequence[str],
        purpose: str,
        category: str,
        labels: Iterable[str] = (),
        *,
        account: str | None = None,
    ) -> list[Reason]:
        """The reason for each subject alone (a batch of single-subject checks, now), in
        items of ``account`` (None: no account context), as fresh as :meth:`check`."""
        if account is not None:
            account = _id(account, "account")
        decider = self.decider()
        return decider.reasons(subjects, purpose, category, labels, self._now_us(), account)

    def _now_us(self) -> int:
        # The default clock without building a datetime: the same clock, to the microsecond.
        return time.time_ns() // 1000 if self.clock is utcnow else to_us(self.clock())

    def resolve_as_of(self, value: datetime | str) -> datetime:
        """The moment an ``as_of`` names (an RFC 3339 time, ``-5m``/``-2h``/``-1d`` before
        now, or ``event:N``: see :func:`consentry.times.parse_as_of`), refused with
        :class:`AsOfOutOfRange` when no decision can be made then: in the future (the ledger
        can still change before it), or before the first policy version took effect (no
        rule was in force). The CLI, the API and the gate all resolve ``as_of`` here."""
        self._require_init()
        now = self.clock()

        def event_time(ref: str) -> datetime:
            event = self.ledger.event(ref)
            assert event.at is not None
            return event.at

        at = parse_as_of(value, now=now, event_time=event_time, field="as_of")
        if at > now:
            raise AsOfOutOfRange(
                f"as_of {format_time(at)} is in the future (now is {format_time(now)}): the "
                "ledger can still change before then, so no decision can be made for it yet",
                hint="use now (leave as_of out) or a past time, e.g. -5m or event:N",
                field="as_of",
            )
        first = self._first_policy_in_effect()
        if first is None:
            raise NotFound(
                "no policy has been published", hint="run `consentry policy publish FILE`"
            )
        version, start_us = first
        if to_us(at) < start_us:
            raise AsOfOutOfRange(
                f"as_of {format_time(at)} is before the first policy version took effect "
                f"({version}, in force in this store from {format_time(from_us(start_us))}): "
                "no rule applied then, so there is no decision to replay",
                hint=f"use a time from {format_time(from_us(start_us))} on; `consentry log` "
                "lists the events with their times (e.g. as_of event:N)",
                field="as_of",
            )
        return at

    def _first_policy_in_effect(self) -> tuple[str, int] | None:
        """The version in force first and from when: a version counts from its
        ``effective`` time or from when it was published, whichever is later (a replay
        only sees what was published by then). Once known it never changes (a version
        published later is in force at the earliest from then), so it is kept."""
        if self._first_in_force is not None:
            return self._first_in_force
        first: tuple[str, int] | None = None
        for event in self.ledger.events(kinds=[Kind.POLICY_PUBLISHED]):
            start = max(int(event.payload["effective_us"]), event.at_us)
            if first is None or start < first[1]:
                first = (str(event.policy_version), start)
        self._first_in_force = first
        return first

    def state_as_of(
        self, at: datetime, *, subjects: Sequence[str], accounts: Iterable[str] = ()
    ) -> State:
        """The state at ``at`` for these subjects: their events, their accounts' events (and
        those of ``accounts``: an item's account context), and the policies published by
        then, replayed in ledger order."""
        self._require_init()
        until = to_us(at)
        subjects = _with_linked_ids(
            subjects,
            self.ledger.events(until_us=until, kinds=[Kind.SUBJECT_LINKED, Kind.SUBJECT_UNLINKED]),
        )
        accounts = set(accounts)
        for event in self.ledger.events(
            until_us=until, subjects=subjects, kinds=[Kind.MEMBER_ADDED, Kind.MEMBER_REMOVED]
        ):
            if event.subject in subjects and event.account:
                accounts.add(event.account)
        state = State()
        state.apply_all(
            self.ledger.events(
                until_us=until,
                subjects=subjects,
                accounts=sorted(accounts),
                kinds=[Kind.POLICY_PUBLISHED],
            )
        )
        return state

    def explain(self, decision: Decision) -> dict[str, Any]:
        """The decision as JSON data with event ids and the rule's plain-language notice."""
        seqs = list(decision.evidence)
        for d in decision.subjects:
            seqs.extend(d.evidence)
        data = decision.to_dict(self.ledger.event_ids(seqs))
        data["decided_by"] = self._decided_by(decision.subjects, decision.subject)
        for entry, answer in zip(data["subjects"], decision.subjects, strict=True):
            entry["decided_by"] = self._decided_by((answer,), answer.subject)
        if decision.policy_version and decision.rule:
            policy = self.policy(decision.policy_version)
            if policy.notices:
                data["notice"] = policy.notice().rules.get(decision.rule)
        return data

    def _decided_by(
        self, answers: Sequence[SubjectDecision], subject: str | None
    ) -> dict[str, Any] | None:
        """The account whose setting or feature switch decided ``subject``'s answer (its
        name, the setting and the event), or None when no account's event decided it."""
        for answer in answers:
            if answer.subject != subject:
                continue
            for seq in answer.evidence:
                event = self.ledger.event(seq)
                if event.kind in (Kind.ACCOUNT_SETTING, Kind.ACCOUNT_FEATURE):
                    status = str(event.status)
                    setting = {"enabled": "on", "disabled": "off"}.get(status, status)
                    return {
                        "account": event.account,
                        "kind": "feature" if event.kind == Kind.ACCOUNT_FEATURE else "setting",
                        "setting": setting,
                        "seq": seq,
                        "event_id": event.id,
                    }
        return None

    # -- reading state --------------------------------------------------------------------

    def subject_state(self, subject: str, *, as_of: datetime | str | None = None) -> dict[str, Any]:
        """A subject's consents, objections and accounts (now or ``as_of``)."""
        subject = _id(subject, "subject")
        if as_of is None:
            state = self.state()
        else:
            state = self.state_as_of(self.resolve_as_of(as_of), subjects=[subject])
        names = {pid: key for key, pid in state.pairs.items()}
        consents = []
        for pid, value in sorted(state.consents.get(subject, {}).items()):
            at_us, seq, code = unpack(value)
            purpose, category = names[pid]
            consents.append(
                {
                    "purpose": purpose,
                    "category": category,
                    "status": CONSENT_NAMES[code],
                    "seq": seq,
                    "at_us": at_us,
                }
            )
        objections = []
        for pid, value in sorted(state.objections.get(subject, {}).items()):
            at_us, seq, code = unpack(value)
            purpose, category = names[pid]
            objections.append(
                {
                    "purpose": purpose,
                    "category": category or "*",
                    "status": "raised" if code else "lifted",
                    "seq": seq,
                }
            )
        return {
            "subject": subject,
            "known": state.known_subject(subject),
            "accounts": list(state.accounts_of(subject)),
            "consents": consents,
            "objections": objections,
            "ledger_seq": state.seq,
        }

    def account_state(self, account: str) -> dict[str, Any]:
        """An account's settings, features and members."""
        state = self.state()
        return {
            "account": account,
            "settings": {p: v[0] for p, v in sorted(state.settings.get(account, {}).items())},
            "features": {p: v[0] for p, v in sorted(state.features.get(account, {}).items())},
            "members": sorted(s for s, accts in state.memberships.items() if account in accts),
        }

    def events(self, *, subject: str | None = None, account: str | None = None) -> list[Event]:
        """Every event about ``subject`` or ``account`` (either named: about either), oldest
        first: a person's history, an account's audit trail. ``log`` gives the last few."""
        self._require_init()
        if subject is None and account is None:
            raise InvalidInput("name a subject or an account", field="subject")
        subjects = [_id(subject, "subject")] if subject is not None else None
        accounts = [_id(account, "account")] if account is not None else None
        return list(self.ledger.events(subjects=subjects, accounts=accounts))

    def transparency_report(
        self, subject: str, *, language: str | None = None, decider: Decider | None = None
    ) -> dict[str, Any]:
        """Everything the preference centre shows ``subject``, as one document
        (:func:`consentry.reports.transparency_report`); ``decider``: decide with this one
        (a server's snapshot) instead of the store's own, caught up."""
        from .reports import transparency_report

        return transparency_report(self, _id(subject, "subject"), language, decider)

    def member_summary(
        self, account: str, *, policy: Policy | None = None, decider: Decider | None = None
    ) -> dict[str, Any]:
        """How many of ``account``'s members each purpose allows, and why
        (:func:`consentry.reports.member_summary`); ``policy``: default the one in effect."""
        from .reports import member_summary

        policy = policy or self.policy()
        return member_summary(self, _id(account, "account"), policy, decider)

    # -- for servers ----------------------------------------------------------------------

    def is_initialised(self) -> bool:
        """Whether the database holds a consentry store (``init`` has run)."""
        if not self._initialised:
            self._initialised = self.ledger.is_initialised()
        return self._initialised

    def head_seq(self) -> int:
        """The ledger's last ``seq`` (0 when empty): one indexed read, no lock taken, so a
        server can tell cheaply whether its in-memory state is behind."""
        return self.ledger.head()[0]

    def api_key_table(self) -> ApiKeyTable:
        """The repository of this store's API key rows (the rules are
        :class:`consentry.api.keys.ApiKeys`')."""
        from .ledger.key_table import ApiKeyTable

        return ApiKeyTable(self.ledger.engine, url=self.url)

    def web_session_key(self) -> bytes:
        """The key web session cookies are signed with: 256 random bits kept in the store,
        made by the first caller, so every worker and process on this store shares it."""
        if not self.is_initialised():
            raise NotInitialised(
                f"{self.url} is not a consentry store yet",
                hint="run `consentry init --policy FILE` first",
            )
        import secrets

        return bytes.fromhex(self.ledger.set_meta_once(WEB_SESSION_KEY, secrets.token_hex(32)))

    # -- web sessions ---------------------------------------------------------------------

    def revoke_sessions(self, subject: str) -> int:
        """End every web session of ``subject`` at once (their cookies stop working at the
        next request); how many were ended."""
        from . import sessions

        self._require_init()
        return sessions.revoke_subject(self, _id(subject, "subject"))

    # -- ledger and receipts --------------------------------------------------------------

    def verify(
        self,
        *,
        since: str | Checkpoint | None = None,
        workers: int | None = None,
        chunk_events: int | None = None,
    ) -> VerifyResult:
        """Recompute the hash chain and each event's MAC, check the store's keys against the
        ones the ledger registered, recompute the current-state tables from the events and
        report each row that differs (``divergences``), and — with ``since`` (a signed
        checkpoint note, or a verified :class:`Checkpoint`) — prove the ledger is an
        append-only extension of it.
        The result names the first event that was tampered with.

        The chain and the state are checked in one pass over the events, split over
        ``workers`` processes (default: one per CPU on SQLite for a large ledger; see
        :mod:`consentry.ledger.verifying`); ``chunk_events`` sets the events per process."""
        self._require_init()
        # The keys first: with a replaced log key every MAC would fail, which says less.
        key_problem = self._key_problem()
        mac_key = None if key_problem else self._mac_key_for_verify()
        chain, state = verifying.verify(
            self.ledger.engine,
            mac_key,
            workers=workers,
            chunk_events=chunk_events,
            leaves=since is not None,  # the transparency log's, recomputed in the same pass
        )
        assert state is not None
        result = VerifyResult(
            chain.ok,
            chain.checked,
            chain.head_seq,
            chain.head_hash,
            chain.problem,
            chain.seq,
            chain.event_id,
        )
        notes = list(result.notes)
        if mac_key is None and key_problem is None:
            notes.append(
                "event MACs were not checked: the log key is kept outside the database "
                f"and {LOG_KEY_FILE_ENV} is not set"
            )
        if result.ok and key_problem is not None:
            result = replace(result, ok=False, problem=key_problem)
        result = audit.with_state(result, state)
        if since is not None:
            checkpoint = since if isinstance(since, Checkpoint) else self.read_checkpoint(since)
            found = TransparencyLog(self.ledger).audit(
                checkpoint, self.checkpoint_dir, recomputed_leaves=chain.leaves
            )
            result = replace(result, since=found.to_dict())
            if not found.ok and (result.ok or (found.seq or 0) < (result.seq or 1 << 62)):
                result = replace(
                    result, ok=False, problem=found.problem, seq=found.seq, event_id=found.event_id
                )
        return replace(result, notes=tuple(notes))

    # -- the transparency log -------------------------------------------------------------

    def _init_log_key(self) -> None:
        """Create (or register the file's) log key and record the store's public keys in the
        ledger once (a ``keys.registered`` event), so that a key swapped later is detected."""
        self.ledger.set_meta_once(LOG_ORIGIN, f"consentry/{new_id()}")
        origin = self.ledger.get_meta(LOG_ORIGIN)
        assert origin is not None
        if self.log_key_file is not None:
            signer = NoteSigner(
                origin, read_key_file(self.log_key_file), source=str(self.log_key_file)
            )
            registered = self.ledger.set_meta_once(LOG_VERIFIER_KEY, signer.vkey())
            if registered != signer.vkey():
                raise InvalidInput(
                    f"the log key in {self.log_key_file} is not the key this store's log is "
                    "signed with",
                    hint="use the key file the store was created with",
                    field="log_key_file",
                )
        elif self.ledger.get_meta(LOG_VERIFIER_KEY) is None:
            pem = self.ledger.set_meta_once(LOG_KEY, new_private_key_pem())
            self.ledger.set_meta_once(LOG_VERIFIER_KEY, NoteSigner(origin, pem).vkey())
        self._initialised = True
        if self._registered_keys() is None:
            keys = self._keys_payload(self.public_key_b64())
            digest = sha256_hex(canonical_json(keys))
            self._append1(
                Draft(
                    kind=Kind.KEYS_REGISTERED,
                    actor="consentry",
                    payload=keys,
                    idempotency_key=f"keys:{digest}",
                )
            )

    def public_keys(self) -> dict[str, Any]:
        """What a verifier pins: the receipt key and the log's verifier key (no secrets)."""
        self._require_init()
        vkey = self.ledger.get_meta(LOG_VERIFIER_KEY)
        if vkey is None:
            raise NotInitialised("the store has no log key yet", hint="run `consentry init`")
        return {
            "receipt_public_key": self.public_key_b64(),
            "log_verifier_key": vkey,
            "receipt_public_keys": self.receipt_public_keys(),
        }

    def _keys_payload(self, receipt_key: str) -> dict[str, str]:
        """What a ``keys.registered`` event records: the receipt key in use from then on and
        the log's verifier key."""
        return {
            "receipt_public_key": receipt_key,
            "log_verifier_key": self.public_keys()["log_verifier_key"],
        }

    def receipt_public_keys(self) -> list[str]:
        """Every receipt key this store has signed with, oldest first; the last signs new
        receipts, the others are retired (kept so that the receipts they signed verify).

        The ledger says which: each ``keys.registered`` event names the key in use from then
        on (read incrementally: only events after the last one looked at). A store made
        before keys were registered has only the key in its ``meta`` table."""
        self._require_init()
        head = self.ledger.head()[0]
        keys = list(self._receipt_keys)
        # Read as the key check reads them (Ledger.payloads): a tampered payload (not JSON,
        # not UTF-8) names no key here and is the chain check's to report, not a crash.
        for payload in self.ledger.payloads(
            Kind.KEYS_REGISTERED, after=self._keys_seen, until=head
        ):
            try:
                data = json.loads(payload)
            except (TypeError, ValueError):
                continue
            key = data.get("receipt_public_key") if isinstance(data, dict) else None
            if isinstance(key, str):
                if key in keys:
                    keys.remove(key)
                keys.append(key)
        if not keys:
            first = self.ledger.get_meta(SIGNING_PUBLIC_KEY)
            if first is None:
                pem = self.ledger.get_meta(SIGNING_KEY)  # made before the public half was kept
                if pem is None:
                    raise NotInitialised(
                        "the store has no signing key", hint="run `consentry init`"
                    )
                first = ReceiptSigner(pem).public_key_b64()
            return [first]  # not remembered: the first keys.registered event will say
        self._receipt_keys, self._keys_seen = tuple(keys), int(head)
        return keys

    def jwks(self) -> dict[str, Any]:
        """The receipt keys as a JWKS (RFC 7517; Ed25519 per RFC 8037), retired ones marked:
        what ``GET /.well-known/jwks.json`` serves and any JOSE library verifies with."""
        return jwks(self.receipt_public_keys())

    def rotate_receipt_key(self, key_file: str | Path | None = None) -> str:
        """Sign new receipts with a new key; return its kid. Receipts signed before keep
        verifying: the old key stays in :meth:`receipt_public_keys` (retired).

        ``key_file``: the new key, kept outside the database (set
        ``CONSENTRY_SIGNING_KEY_FILE`` to it afterwards); without it the store makes the key
        and keeps it in the database, which only a store that already does so may do. The
        change is a ``keys.registered`` event, so the ledger says which key signed when."""
        self._require_init()
        with self._lock:
            if key_file is not None:
                path = Path(key_file)
                signer = ReceiptSigner(read_key_file(path), source=str(path))
            elif self.signing_key_file is not None:
                raise InvalidInput(
                    "this store keeps its receipt key in a file: give the new key's file",
                    hint="make one with `consentry receipt keygen FILE`, then "
                    "`consentry receipt rotate-key --key-file FILE`",
                    field="key_file",
                )
            else:
                pem = new_private_key_pem()
                signer = ReceiptSigner(pem)
                self.ledger.set_meta_once(SIGNING_KEY_PREFIX + signer.key_id, pem)
            if signer.public_key_b64() in self.receipt_public_keys():
                raise InvalidInput(
                    f"key {signer.key_id} has signed receipts of this store before",
                    hint="rotate to a new key (`consentry receipt keygen FILE`)",
                    field="key_file",
                )
            keys = self._keys_payload(signer.public_key_b64())
            self._append1(
                Draft(
                    kind=Kind.KEYS_REGISTERED,
                    actor="consentry",
                    payload=keys,
                    idempotency_key=f"keys:{sha256_hex(canonical_json(keys))}",
                )
            )
            if key_file is not None:
                self.signing_key_file = Path(key_file)
            self._signer = None
        return signer.key_id

    def _registered_keys(self) -> dict[str, Any] | None:
        """The keys the ledger's last ``keys.registered`` event names (None: none was
        recorded). Only the payload is read: an event whose other columns were tampered with
        is the chain check's to report, not a reason for this look-up to fail; a payload
        that is not a JSON object reads as ``{}`` (which matches no key: reported)."""
        found = None
        for payload in self.ledger.payloads(Kind.KEYS_REGISTERED):
            try:
                data = json.loads(payload)
            except (TypeError, ValueError):
                data = None
            found = data if isinstance(data, dict) else {}
        return found

    def _key_problem(self) -> str | None:
        registered = self._registered_keys()
        if registered is None:
            return None  # a store from before keys were registered: nothing to compare
        current = self.public_keys()
        for name, label in (("receipt_public_key", "receipt"), ("log_verifier_key", "log")):
            if registered.get(name) != current[name]:
                return (
                    f"the {label} key in the database is not the one the ledger registered: "
                    "the key was replaced outside the ledger (documents it signs will not "
                    "verify against the pinned key)"
                )
        log_pem, origin = self.ledger.get_meta(LOG_KEY), self.ledger.get_meta(LOG_ORIGIN)
        if (
            self.log_key_file is None
            and log_pem is not None
            and origin is not None
            and NoteSigner(origin, log_pem).vkey() != registered["log_verifier_key"]
        ):
            return (
                "the log key in the database is not the one the ledger registered: it was "
                "replaced outside the ledger"
            )
        pem = self._db_signing_pem(registered["receipt_public_key"])
        first = self.ledger.get_meta(SIGNING_PUBLIC_KEY)
        if (first is not None and first not in self.receipt_public_keys()) or (
            self.signing_key_file is None
            and pem is not None
            and ReceiptSigner(pem).public_key_b64() != registered["receipt_public_key"]
        ):
            return (
                "the receipt key in the database is not the one the ledger registered: it was "
                "replaced outside the ledger"
            )
        return None

    def key_custody(self) -> dict[str, str]:
        """Where each private key lives: ``file`` (outside the database) or ``database``."""
        return {
            "receipt": "file" if self.signing_key_file is not None else "database",
            "log": "file" if self.log_key_file is not None else "database",
        }

    def key_warnings(self) -> list[str]:
        """What a production deployment should fix about its keys (see docs/deploying.md)."""
        warnings = []
        custody = self.key_custody()
        for name, env in (("receipt", SIGNING_KEY_FILE_ENV), ("log", LOG_KEY_FILE_ENV)):
            if custody[name] == "database":
                warnings.append(
                    f"the {name} signing key is kept in the database: whoever can write the "
                    f"database can sign with it. Fine for a demo; in production set {env} "
                    "(docs/deploying.md#keys)"
                )
        if self.checkpoint_dir is None:
            warnings.append(
                f"no witness location: set {CHECKPOINT_DIR_ENV} to a directory shipped off this "
                "machine, or a rewritten ledger cannot be told from the original"
            )
        return warnings

    def log_signer(self) -> NoteSigner:
        """The log key: the key file's, else the one in the store."""
        if self._log_signer is None:
            self._require_init()
            origin = self.ledger.get_meta(LOG_ORIGIN)
            if origin is None:
                raise NotInitialised("the store has no log key yet", hint="run `consentry init`")
            if self.log_key_file is not None:
                pem = read_key_file(self.log_key_file)
                source = str(self.log_key_file)
            else:
                stored = self.ledger.get_meta(LOG_KEY)
                if stored is None:
                    raise NotInitialised(
                        "this store's log key is kept outside the database",
                        hint=f"set {LOG_KEY_FILE_ENV} to its key file to write to the store",
                    )
                pem, source = stored, "the store"
            signer = NoteSigner(origin, pem, source=source)
            if signer.vkey() != self.ledger.get_meta(LOG_VERIFIER_KEY):
                raise InvalidInput(
                    f"the log key in {source} is not the key this store's log is signed with",
                    hint="use the key file the store was created with",
                )
            self._log_signer = signer
        return self._log_signer

    def _mac_key_for_verify(self) -> bytes | None:
        try:
            return self.log_signer().event_key()
        except (NotInitialised, InvalidInput):
            return None  # no usable key: said in the result's notes (and _key_problem)

    def log_verifier(self) -> NoteVerifier:
        """The log's public key, as the store registered it."""
        return NoteVerifier.parse(self.public_keys()["log_verifier_key"])

    def read_checkpoint(self, note: str, verifier: NoteVerifier | None = None) -> Checkpoint:
        """A checkpoint note verified with the log key (the store's unless one is given)."""
        return read_checkpoint(note, verifier or self.log_verifier())

    def checkpoint(self) -> Checkpoint:
        """Sign a checkpoint of the ledger as it is now (extending the stored tree first) and
        append it to the witness location if one is configured."""
        self._require_init()
        return TransparencyLog(self.ledger).checkpoint(
            self.log_signer(), format_time(self.clock()), self.checkpoint_dir
        )

    def stored_checkpoint(self, size: int) -> Checkpoint | None:
        """The checkpoint the store signed at ``size`` events, if it made one."""
        self._require_init()
        found = TransparencyLog(self.ledger).checkpoint_at_least(size)
        return found if found is not None and found.size == size else None

    def latest_checkpoint(self) -> Checkpoint | None:
        """The last checkpoint the store signed (None before the first)."""
        self._require_init()
        return TransparencyLog(self.ledger).latest_checkpoint()

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[str]:
        """The RFC 9162 consistency proof between two tree sizes (hex hashes)."""
        log = TransparencyLog(self.ledger)
        size = log.extend()
        second = new_size or size
        if not 0 < old_size <= second <= size:
            raise InvalidInput(
                f"no consistency proof from {old_size} events to {second}: the log holds {size}",
                hint="give 0 < first <= second <= the latest checkpoint's size",
                field="first",
            )
        return [h.hex() for h in log.consistency(old_size, second)]

    def audit_state(self) -> audit.AuditResult:
        """Only the current-state part of :meth:`verify`: the state tables against the chain."""
        self._require_init()
        return audit.audit_state(self.ledger.engine)

    def rebuild_state(self) -> audit.RebuildResult:
        """Rebuild the current-state tables from the chain, in one transaction, writing only
        the rows that differ (returned); then reload this store's in-memory state.

        Refused (:class:`LedgerCorrupt`) when the chain does not verify: a broken chain is
        no source to rebuild from. Other processes holding the state in memory (a running
        service) keep what they loaded: restart them afterwards.
        """
        self._require_init()
        for _attempt in range(5):
            chain = self.ledger.verify(self._mac_key_for_verify())
            if not chain.ok:
                raise LedgerCorrupt(
                    f"the chain does not verify, so the state cannot be rebuilt from it: "
                    f"{chain.problem}",
                    hint="run `consentry ledger verify`; restore the database from a backup "
                    "whose ledger verifies (see docs/deploying.md), then rebuild",
                )
            try:
                result = audit.rebuild_state(self.ledger.engine, verified_seq=chain.head_seq)
            except audit.HeadMoved:
                continue  # events were appended meanwhile: verify them too
            break
        else:
            raise LedgerCorrupt(
                "the ledger kept growing while the state was being rebuilt",
                hint="retry when writes are quieter",
            )
        with self._lock:
            self._state = None  # reloaded from the repaired tables on next use
            self._decider = None
        return result

    def event(self, ref: str | int) -> Event:
        self._require_init()
        return self.ledger.event(ref)

    def log(
        self, *, subject: str | None = None, account: str | None = None, limit: int = 50
    ) -> list[Event]:
        """The last ``limit`` events, oldest first; ``subject`` and ``account`` keep the
        events about that subject, that account (both given: about both)."""
        self._require_init()
        if subject is not None:
            subject = _id(subject, "subject")
        if account is not None:
            account = _id(account, "account")
        if not isinstance(limit, int) or limit < 1:
            raise InvalidInput(f"limit: expected a positive number, got {limit!r}", field="limit")
        return self.ledger.recent(limit=limit, subject=subject, account=account)

    def public_key_b64(self) -> str:
        """The public half of the key this store signs new receipts with."""
        return self.receipt_public_keys()[-1]

    def _db_signing_pem(self, public: str) -> str | None:
        """The private key kept in the database for the receipt key ``public`` (a rotated
        key under its kid, the first one as ``signing_key``), if the database holds it."""
        rotated = self.ledger.get_meta(SIGNING_KEY_PREFIX + key_id(public))
        return rotated if rotated is not None else self.ledger.get_meta(SIGNING_KEY)

    def signer(self) -> ReceiptSigner:
        """What signs this store's receipts: the key file's key, else the one in the store."""
        if self._signer is None:
            self._require_init()
            if self.signing_key_file is not None:
                signer = ReceiptSigner(
                    read_key_file(self.signing_key_file), source=str(self.signing_key_file)
                )
                self._check_key_file(signer, self.public_key_b64())
            else:
                pem = self._db_signing_pem(self.public_key_b64())
                if pem is None:
                    if self.ledger.get_meta(SIGNING_PUBLIC_KEY) is not None:
                        raise NotInitialised(
                            "this store signs receipts with a key kept outside the database",
                            hint=f"set {SIGNING_KEY_FILE_ENV} (or --signing-key) to its key "
                            "file; verifying receipts needs no key",
                        )
                    raise NotInitialised(
                        "the store has no signing key", hint="run `consentry init`"
                    )
                signer = ReceiptSigner(pem)
            self._signer = signer
        return self._signer

    def _check_key_file(self, signer: ReceiptSigner, registered: str) -> None:
        if signer.public_key_b64() != registered:
            raise InvalidInput(
                f"the signing key in {self.signing_key_file} (kid {signer.key_id}) is not the "
                f"key this store signs receipts with (kid {key_id(registered)})",
                hint="use the key file the store was created with; receipts signed with "
                "another key would not verify",
                field="signing_key_file",
            )

    def receipt(self, event_id: str | int, *, checkpoint: str | None = None) -> dict[str, Any]:
        """The signed receipt of a consent event, with its evidence: the event as the ledger
        holds it and an inclusion proof against a signed checkpoint (``checkpoint``, a note the
        holder already trusts; else the first stored checkpoint covering the event, made now
        if there is none yet)."""
        event = self.event(event_id)
        if event.kind not in CONSENT_KINDS:
            raise InvalidInput(
                f"event {event.id} is a {event.kind} event; only consent events have receipts",
                hint="pick the id of a consent event",
            )
        document = self.signer().sign(self._receipt_record(event))
        log = TransparencyLog(self.ledger)
        if checkpoint is not None:
            against = self.read_checkpoint(checkpoint)
            if against.size < event.seq:
                raise InvalidInput(
                    f"the checkpoint covers {against.size} events; event #{event.seq} came later",
                    hint="use a later checkpoint, or none to get the latest",
                    field="checkpoint",
                )
            log.extend(against.size)
            if log.root(against.size) != against.root:
                raise SignatureInvalid(
                    "this ledger does not extend the given checkpoint",
                    hint="run `consentry ledger verify --since` with it",
                )
        else:
            found = log.checkpoint_at_least(event.seq)
            against = found if found is not None else self.checkpoint()
        document["evidence"] = evidence_for(
            event, against, log.inclusion(event.seq - 1, against.size)
        )
        return document

    def _receipt_context(self, event: Event) -> tuple[Policy | None, Policy | None, Event | None]:
        """(the policy in effect, the policy whose notice was shown, the notice.served event)
        of a consent event."""
        in_effect = self._published(event.policy_version)
        # An imported consent may name a notice of the system it came from: not published here.
        shown = self._published(event.notice_version) if event.notice_version else in_effect
        ref = event.payload.get(NOTICE_SERVED) if event.payload else None
        served = self.event(str(ref)) if isinstance(ref, str) else None
        return in_effect, shown, served

    def _published(self, version: str | None) -> Policy | None:
        """The published policy version of that name (None: no name, or not published)."""
        for published in self.state().policies if version else ():
            if published.policy.version == version:
                return published.policy
        return None

    def _receipt_record(self, event: Event) -> dict[str, Any]:
        in_effect, shown, served = self._receipt_context(event)
        controller = in_effect.controller if in_effect is not None else {}
        return build_receipt(event, controller, policy=shown, served=served)

    def receipt_dpv(self, event_id: str | int, *, rights_url: str | None = None) -> dict[str, Any]:
        """The consent event's record as DPV-27560 JSON-LD (:mod:`consentry.ledger.dpv`):
        ``consentry receipt show ID --format dpv``. ``rights_url``: where the person exercises
        their rights (the ``/me`` page), else the policy's ``controller.rights_url``."""
        event = self.event(event_id)
        if event.kind not in CONSENT_KINDS:
            raise InvalidInput(
                f"event {event.id} is a {event.kind} event; only consent events have records",
                hint="pick the id of a consent event",
            )
        in_effect, shown, served = self._receipt_context(event)
        controller = in_effect.controller if in_effect is not None else {}
        record = build_receipt(event, controller, policy=shown, served=served)
        return dpv_record(event, in_effect, receipt=record, served=served, rights_url=rights_url)

    def notice_problem(self, event: Event) -> str | None:
        """Why a consent event lacks notice evidence (None: a ``notice.served`` event for its
        subject, notice version and language came before it)."""
        if event.kind not in CONSENT_KINDS or event.subject is None:
            return None
        if last_served(
            self.ledger.engine,
            event.subject,
            event.notice_version,
            event.language,
            before_seq=event.seq,
        ):
            return None
        return (
            f"no notice was recorded as shown before this consent (notice version "
            f"{event.notice_version}, language {event.language})"
        )

    def verify_receipt(
        self, document: Mapping[str, Any], *, checkpoint: str | None = None
    ) -> ReceiptCheck:
        """Check a receipt offline (see :func:`verify_receipt_offline`) against this store's
        pinned keys, then against the stored event: the check names each field that differs."""
        pins = self.public_keys()
        check = verify_receipt_offline(
            document,
            receipt_key=self.receipt_public_keys(),
            log_key=pins["log_verifier_key"],
            checkpoint=checkpoint,
        )
        record = document["receipt"]
        try:
            event = self.event(record["record_id"])
        except NotFound:
            raise SignatureInvalid(
                f"receipt {record['record_id']} names an event this ledger does not hold",
                hint="the ledger was truncated or the receipt is for another store; run "
                "`consentry ledger verify --since CHECKPOINT`",
            ) from None
        differing = compare_with_event(document, event)
        if differing:
            raise SignatureInvalid(
                f"receipt {record['record_id']} does not match the ledger's event: "
                + "; ".join(differing),
                hint="the ledger was changed after the receipt was issued; run "
                "`consentry ledger verify`",
                fields=differing,
            )
        return replace(check, event=event, notice_problem=self.notice_problem(event))

    # -- training-data gate and lineage (consentry.gate, consentry.lineage) ------------------

    def gate(
        self,
        manifest: Any,
        *,
        purpose: str,
        out: str | Path,
        as_of: datetime | str | None = None,
        dataset_name: str | None = None,
        engine: str = "duckdb",
        **options: Any,
    ) -> GateResult:
        """Keep the manifest's items whose every subject allows ``purpose`` (now, or
        ``as_of``); write them, the exclusions and ``report.json`` to ``out`` and record the
        dataset's lineage. Options: ``format``, ``overwrite``, ``signals``, ``digest``,
        ``input_format``, ``threads``, ``memory_limit``, ``progress``, ``idempotency_key``."""
        from .gate import run_gate

        return run_gate(
            self, manifest, purpose=purpose, out=out, as_of=as_of, dataset_name=dataset_name,
            engine=engine, **options,
        )  # fmt: skip

    def verify_dataset(self, out: str | Path) -> VerifyReport:
        """Check a gate output directory against its report and this store's lineage record."""
        from .gate import verify_output

        return verify_output(out, self)

    def datasets(
        self, *, name: str | None = None, purpose: str | None = None, limit: int | None = None
    ) -> list[DatasetInfo]:
        """Datasets the gate built, newest first."""
        from . import lineage

        return lineage.list_datasets(self, name=name, purpose=purpose, limit=limit)

    def dataset(self, ref: str) -> DatasetInfo:
        """One dataset by id (or the latest with that name), with the models trained on it."""
        from . import lineage

        return lineage.get_dataset(self, ref)

    def register_model(
        self,
        name: str,
        datasets: Sequence[str],
        *,
        version: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> ModelInfo:
        """Record that a model was trained on these datasets."""
        from . import lineage

        return lineage.register_model(
            self, name, datasets, version=version, metadata=metadata,
            idempotency_key=idempotency_key,
        )  # fmt: skip

    def models(self) -> list[ModelInfo]:
        from . import lineage

        return lineage.list_models(self)

    def model(self, ref: str) -> ModelInfo:
        from . import lineage

        return lineage.get_model(self, ref)

    def export_subject(self, subject: str, *, language: str | None = None) -> bytes:
        """Everything the store holds about a person, as one ZIP archive (a right-of-access
        answer): their events (JSON and CSV), each consent receipt with its inclusion proof,
        their memberships, the datasets and models their data went into, and a README in
        their language. Raises :class:`NotFound` for a subject the ledger never named."""
        from .export import export_subject

        return export_subject(self, subject, language=language)

    def impact(self, subject: str) -> Impact:
        """Every dataset and model that used ``subject``'s items, and whether the subject's
        current choices still allow each (if not: retrain or unlearn)."""
        from . import lineage

        return lineage.impact(self, subject)


def load_state(ledger: Ledger) -> State:
    """Build the in-memory state from the current-state tables at one consistent position."""
    state = State()
    with ledger.engine.connect() as conn:
        if ledger.backend == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            head = conn.execute(select(schema.ledger_head)).first()
            if head is None:
                raise NotInitialised("the store has no ledger yet", hint="run `consentry init`")
            for row in conn.execute(select(schema.policies).order_by(schema.policies.c.seq)):
                import json

                state.add_policy(json.loads(row.document), row.seq, row.at_us, row.digest)
            c = schema.consents.c
            for r in conn.execution_options(yield_per=20000).execute(
                select(c.subject, c.purpose, c.category, c.status, c.at_us, c.seq)
            ):
                state.set_consent(r[0], r[1], r[2], r[3], r[4], r[5])
            o = schema.objections.c
            for obj in conn.execute(
                select(o.subject, o.purpose, o.category, o.status, o.at_us, o.seq)
            ):
                state.set_objection(obj[0], obj[1], obj[2], obj[3], obj[4], obj[5])
            m = schema.memberships.c
            for member in conn.execution_options(yield_per=20000).execute(
                select(m.subject, m.account).order_by(m.seq)
            ):
                state.set_membership(member[0], member[1], True)
            a = schema.subject_aliases.c
            for link in conn.execute(select(a.subject, a.alias, a.at_us).order_by(a.seq)):
                state.link(link[0], link[1], link[2])
            for table, target in (
                (schema.account_settings, state.settings),
                (schema.account_features, state.features),
            ):
                for r in conn.execute(select(table).order_by(table.c.seq)):
                    state.set_account(target, r.account, r.purpose, r.status, r.seq, r.at_us)
            state.seq, state.at_us = head.seq, head.at_us
    return state


def _with_linked_ids(subjects: Sequence[str], links: Iterable[Event]) -> list[str]:
    """``subjects`` and every id a link up to then joined to one of them (issue 16 §3): an
    ``as_of`` replay of a person needs the events of all their ids, and the links."""
    pairs = [(e.subject or "", str(e.payload.get("alias", ""))) for e in links]
    wanted = set(subjects)
    grown = True
    while grown:
        grown = False
        for primary, alias in pairs:
            if (primary in wanted) != (alias in wanted):
                wanted |= {primary, alias}
                grown = True
    return [*subjects, *sorted(wanted - set(subjects))]


#: Why an objection changes nothing, per basis of the rule that decides the use.
_IGNORED_BECAUSE = {
    Basis.LEGITIMATE_INTEREST: (
        "rule {rule} uses it on the platform's legitimate interest with `objection: false`: "
        "you cannot object to this individually",
        "nothing to record; an account administrator may be able to switch it off for the "
        "account (`consentry policy show` shows the rule's notice)",
    ),
    Basis.CONSENT: (
        "rule {rule} allows it only with opt-in consent, so there is nothing to object to",
        "to stop it, withdraw or refuse the consent (`consentry consent withdraw`)",
    ),
    Basis.CONTRACT: (
        "rule {rule} makes it part of the service the person uses, which an objection cannot stop",
        "nothing to record (`consentry policy show` shows the rule's notice)",
    ),
    Basis.PROHIBITED: (
        "rule {rule} prohibits it whatever anyone chose: it never happens",
        "nothing to record",
    ),
}


def ignored_objection(policy: Policy, purpose: str, category: str | None) -> ObjectionIgnored:
    """The typed refusal of an objection that ``policy`` would ignore, saying why."""
    if category is not None:
        rule = policy.rule_for(purpose, category)
    else:
        # The most specific rule for the purpose (as a decision picks it, purpose first).
        depths = [
            (max(p.count(".") for p in r.purposes if covers(p, purpose)), i)
            for i, r in enumerate(policy.rules)
            if any(covers(p, purpose) for p in r.purposes)
        ]
        rule = policy.rules[max(depths)[1]] if depths else None
    what = f"{purpose} on {category}" if category else purpose
    if rule is None:
        why, hint = "no rule allows it, so it never happens", "nothing to record"
    else:
        why, hint = _IGNORED_BECAUSE[rule.basis]
        why = why.format(rule=rule.id)
    return ObjectionIgnored(
        f"an objection to {what} would change nothing under policy {policy.version}: {why}",
        hint=hint,
        field="purpose" if category is None else "categories",
        rule=rule.id if rule else None,
        policy_version=policy.version,
    )


def _plain_id(value: str) -> bool:
    """True for an id :func:`_id` accepts that needs no closer look (short ASCII without
    NUL, not blank): the check fast path's test, a few string operations."""
    return 0 < len(value) <= 512 and value.isascii() and NUL not in value and not value.isspace()


#: (The name the library's modules and tests have used for the id check.)
_id = checked_id
