"""Who is calling: bearer JWTs the platform signs for its users, API keys, and web sessions.

Roles (the ``role`` claim, or the key's role):

``subject``         a person: reads and changes only their own choices
``account_admin``   an organisation's owner or administrator (``account`` claim): its settings
                    and AI features, invitations to it, what concerns it of its members'
                    state; also a person with choices of their own (with a token or a web
                    session; an API key is never a person)
``service``         the platform's backend: decisions, gates, model registration, membership
``platform_admin``  the platform's operators: publishing policies, verifying the ledger
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from .. import sessions
from ..errors import Forbidden, InvalidInput, TokenExpired, Unauthorized
from .keys import ApiKeys, looks_like_key
from .settings import Settings

if TYPE_CHECKING:
    from ..store import Store


class Role(enum.StrEnum):
    SUBJECT = "subject"
    ACCOUNT_ADMIN = "account_admin"
    SERVICE = "service"
    PLATFORM_ADMIN = "platform_admin"


#: Roles that are people, with choices of their own.
PEOPLE = frozenset({Role.SUBJECT, Role.ACCOUNT_ADMIN})


@dataclass(frozen=True)
class Principal:
    """An authenticated caller."""

    sub: str
    role: Role
    account: str | None = None
    via: str = "token"  # token | key | session
    key_id: str | None = None

    @property
    def actor(self) -> str:
        """How the ledger records this caller as the actor of a change."""
        if self.via == "key":
            return f"key:{self.key_id}"
        if self.role in PEOPLE:
            return self.sub
        return f"{self.role}:{self.sub}"

    @property
    def id(self) -> str:
        """A stable id of the caller, to scope idempotency keys."""
        return f"{self.via}:{self.key_id}" if self.via == "key" else f"{self.role}:{self.sub}"


class TokenVerifier:
    """Verifies the platform's JWTs with the configured secret or public key."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._keys: dict[str, Any] = {}
        self._verified: dict[str, tuple[Principal, float]] = {}
        if settings.jwt_secret:
            self._keys["HS256"] = settings.jwt_secret
        if settings.jwt_public_key:
            try:
                key = load_pem_public_key(settings.jwt_public_key.encode("ascii"))
            except (ValueError, UnicodeEncodeError) as exc:
                raise InvalidInput(
                    f"the JWT public key is not a PEM public key: {exc}",
                    hint="give an Ed25519 or RSA public key in PEM form",
                ) from None
            if isinstance(key, Ed25519PublicKey):
                self._keys["EdDSA"] = key
            elif isinstance(key, RSAPublicKey):
                self._keys["RS256"] = key
            else:
                raise InvalidInput(
                    f"JWT public keys of type {type(key).__name__} are not supported",
                    hint="use an Ed25519 (EdDSA) or RSA (RS256) key",
                )

    @property
    def configured(self) -> bool:
        return bool(self._keys)

    def verify(self, token: str) -> Principal:
        """The principal of a valid token. A token verified once is remembered until it
        expires: a backend that reuses its token pays for the signature check once."""
        cached = self._verified.get(token)
        if cached is not None and cached[1] > time.time():
            return cached[0]
        principal, expires = self._verify(token)
        if len(self._verified) >= 10_000:
            self._verified.clear()
        self._verified[token] = (principal, expires)
        return principal

    def _verify(self, token: str) -> tuple[Principal, float]:
        if not self._keys:
            raise Unauthorized(
                "this service accepts no bearer tokens: no JWT secret or public key is set",
                hint="set CONSENTRY_JWT_SECRET or CONSENTRY_JWT_PUBLIC_KEY_FILE, or use an API key",
            )
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthorized(
                "the bearer token is not a JWT", hint="send 'Authorization: Bearer <JWT or key>'"
            ) from None
        alg = header.get("alg")
        key = self._keys.get(alg) if isinstance(alg, str) else None
        if key is None or not isinstance(alg, str):
            raise Unauthorized(
                f"tokens signed with {alg!r} are not accepted here",
                hint=f"sign tokens with {' or '.join(sorted(self._keys))}",
            )
        s = self.settings
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=s.jwt_audience,
                issuer=s.jwt_issuer,
                leeway=s.jwt_leeway_s,
                options={"require": ["exp", "sub", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenExpired(
                "the bearer token has expired", hint="ask the platform for a fresh token"
            ) from None
        except jwt.InvalidAudienceError:
            raise Unauthorized(
                f"the token's audience is not {s.jwt_audience!r}",
                hint=f'issue tokens with "aud": "{s.jwt_audience}"',
            ) from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthorized(
                f"the token has no {exc.claim!r} claim",
                hint="tokens carry sub, role, exp and aud (and account for account_admin)",
            ) from None
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"the bearer token is not valid: {exc}") from None
        return principal_from_claims(claims), float(claims["exp"]) + s.jwt_leeway_s


def principal_from_claims(claims: dict[str, Any], via: str = "token") -> Principal:
    sub, role, account = claims.get("sub"), claims.get("role"), claims.get("account")
    if not isinstance(sub, str) or not sub:
        raise Unauthorized("the token's 'sub' claim is empty")
    try:
        parsed = Role(str(role))
    except ValueError:
        raise Unauthorized(
            f"the token's role {role!r} is not one of {', '.join(r.value for r in Role)}"
        ) from None
    if account is not None and not isinstance(account, str):
        raise Unauthorized("the token's 'account' claim must be a string")
    if parsed is Role.ACCOUNT_ADMIN and not account:
        raise Unauthorized(
            "an account_admin token names its account", hint="add an 'account' claim"
        )
    return Principal(sub=sub, role=parsed, account=account or None, via=via)


class Authenticator:
    """Turns a bearer credential (JWT or API key) into a :class:`Principal`."""

    def __init__(self, settings: Settings, keys: ApiKeys) -> None:
        self.tokens = TokenVerifier(settings)
        self.keys = keys

    def bearer(self, credential: str) -> Principal:
        if looks_like_key(credential):
            key = self.keys.authenticate(credential)
            if key is None:
                raise Unauthorized(
                    "the API key is not valid: unknown, mistyped or revoked",
                    hint="list keys with `consentry keys list`; create one with "
                    "`consentry keys create`",
                )
            return Principal(
                sub=key.name, role=Role(key.role), account=key.account, via="key", key_id=key.id
            )
        return self.tokens.verify(credential)


# -- authorisation rules -----------------------------------------------------------------------


def require_role(principal: Principal, *roles: Role, action: str) -> None:
    if principal.role not in roles:
        allowed = " or ".join(r.value for r in roles)
        raise Forbidden(
            f"{action} needs the {allowed} role; this credential has {principal.role.value}",
            role=principal.role.value,
        )


def is_self(principal: Principal, subject: str) -> bool:
    """Whether the caller is the person ``subject``. An API key is never a person, whatever
    its name: it acts only in its role (a key named "u1" is not u1)."""
    return principal.via != "key" and principal.role in PEOPLE and principal.sub == subject


def require_self(principal: Principal, subject: str, *, action: str) -> None:
    """Only the person themself may change their choices."""
    if is_self(principal, subject):
        return
    if principal.via == "key":
        raise Forbidden(
            f"{action} is for the person themself; an API key is never a person, whatever its name",
            hint="sign a subject token for the person and call as them",
            role=principal.role.value,
        )
    if principal.role in PEOPLE:
        raise Forbidden(
            f"{action}: a person may act only on their own choices, and this credential "
            f"is {principal.sub!r}, not {subject!r}"
        )
    raise Forbidden(
        f"{action} is for the person themself; the {principal.role.value} role cannot do it",
        hint="sign a subject token for the person and call as them",
        role=principal.role.value,
    )


def require_account_admin(principal: Principal, account: str, *, action: str) -> None:
    if principal.role is Role.ACCOUNT_ADMIN and principal.account == account:
        return
    if principal.role is Role.ACCOUNT_ADMIN:
        raise Forbidden(
            f"{action}: this credential administers account {principal.account!r}, not {account!r}"
        )
    raise Forbidden(
        f"{action} needs the account_admin role for account {account!r}; this credential has "
        f"{principal.role.value}",
        role=principal.role.value,
    )


# -- web sessions ------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Session:
    principal: Principal
    sid: str
    expires: int
    csrf: str


class Sessions:
    """Web sessions kept on the server (``web_sessions``, see :mod:`consentry.sessions`).

    The cookie carries the session id and an HMAC-SHA256 of it (the key is kept in the store's
    ``meta``, so every worker of one service shares it); every request looks the session up,
    so a revoked session (sign-out, ``consentry sessions revoke``) stops working at once.

    An ``account_admin`` session is valid only while its person is a member of its account:
    removed from the account, they lose its console at the next request (the session is
    revoked then).
    """

    def __init__(
        self, secret: bytes, max_age_s: int, store: Store, cookie: str | None = None
    ) -> None:
        self._secret = secret
        self.max_age_s = max_age_s
        self.store = store
        #: The cookie's name: the one configured, else one of this store's own
        #: (:meth:`default_cookie`).
        self.cookie = cookie or self.default_cookie()

    def default_cookie(self) -> str:
        """``consentry_session_`` and 8 hex digits derived from this store's session key.

        Cookies do not keep to a port: two services on one host (the demo's two, or two
        ``consentry serve`` on ports 8000 and 8001) would overwrite each other's cookie if
        they shared a name, and signing in to one would sign the person out of the other.
        Every worker of one service shares the store's key, so they agree on the name; the
        MAC of a fixed label reveals nothing of the key."""
        return f"consentry_session_{self._mac(b'cookie-name').hex()[:8]}"

    def _mac(self, data: bytes) -> bytes:
        return hmac.new(self._secret, data, hashlib.sha256).digest()

    def issue(self, principal: Principal) -> str:
        """Start a session for ``principal`` (a person): the cookie's value."""
        sid, _ = sessions.create(
            self.store,
            principal.sub,
            principal.role.value,
            principal.account,
            self.max_age_s,
        )
        return f"{sid}.{_b64(self._mac(sid.encode('ascii')))}"

    def _sid(self, cookie: str | None) -> str | None:
        """The session id a cookie carries, if its MAC is right."""
        if not cookie or "." not in cookie or len(cookie) > 200:
            return None
        sid, _, mac_b64 = cookie.partition(".")
        try:
            mac = _unb64(mac_b64)
            expected = self._mac(sid.encode("ascii"))
        except (ValueError, TypeError, UnicodeEncodeError):
            return None
        return sid if hmac.compare_digest(mac, expected) else None

    def read(self, cookie: str | None) -> Session | None:
        """The session a cookie stands for, while it is active (reads the store)."""
        sid = self._sid(cookie)
        if sid is None:
            return None
        record = sessions.get(self.store, sid)
        if record is None or not record.active:
            return None
        try:
            principal = principal_from_claims(
                {"sub": record.subject, "role": record.role, "account": record.account},
                via="session",
            )
        except Unauthorized:
            return None
        if principal.role is Role.ACCOUNT_ADMIN and principal.account not in (
            self.store.state().accounts_of(principal.sub)
        ):
            sessions.revoke(self.store, sid)  # no longer a member: the console is gone for good
            return None
        csrf = _b64(self._mac(f"csrf:{sid}".encode()))[:32]
        return Session(principal, sid, record.expires_at, csrf)

    def revoke(self, session: Session) -> None:
        """End a session on the server (sign-out)."""
        sessions.revoke(self.store, session.sid)
