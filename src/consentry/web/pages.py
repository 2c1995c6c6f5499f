"""The web pages: sign-in, the preference centre (``/me``) and the admin console (``/admin``).

Plain HTML forms (no JavaScript), a session cookie set by ``/login?token=…``, a CSRF token in
every form. Every change is one call into the same :class:`~consentry.Store` the API uses.
"""

from __future__ import annotations

import hmac
import json
import threading
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from ..api.auth import PEOPLE, Principal, Role, Session, require_account_admin
from ..api.context import Service
from ..api.problems import wants_html
from ..api.views import (
    GROUPS,
    account_purposes,
    check_account_setting,
    kind_of,
    member_summary,
    rule_views,
)
from ..errors import (
    ConsentryError,
    Forbidden,
    InvalidInput,
    NotFound,
    TokenExpired,
    Unauthorized,
)
from ..ledger.events import Kind
from ..policy.model import Policy
from ..taxonomy import ancestors
from ..times import from_us
from . import names
from .i18n import N_, Translator, available, language_name, negotiate

HERE = Path(__file__).parent
LANG_COOKIE = "consentry_lang"

env = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)

router = APIRouter(include_in_schema=False)


# -- request context ---------------------------------------------------------------------------


def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def _languages(svc: Service) -> list[str]:
    return available(svc.settings.languages)


def _language(request: Request) -> str:
    svc = _service(request)
    return negotiate(
        request.query_params.get("lang"),
        request.cookies.get(LANG_COOKIE),
        request.headers.get("accept-language"),
        _languages(svc),
    )


def _session(request: Request) -> Session | None:
    svc = _service(request)
    try:
        sessions = svc.sessions
    except ConsentryError:
        return None
    try:
        return sessions.read(request.cookies.get(sessions.cookie))
    except ConsentryError:
        return None


def _secure(request: Request) -> bool:
    configured = _service(request).settings.cookie_secure
    return request.url.scheme == "https" if configured is None else configured


def _link(request: Request, **params: str) -> str:
    query = dict(request.query_params)
    query.update(params)
    for done in ("saved", "added", "removed", "invited", "joined", "declined"):
        query.pop(done, None)
    return f"{request.url.path}?{urlencode(query)}"


def render(
    request: Request,
    template: str,
    status: int = 200,
    session: Session | None = None,
    **context: Any,
) -> HTMLResponse:
    svc = _service(request)
    lang = _language(request)
    t = Translator(lang)
    languages = [(code, language_name(code), _link(request, lang=code)) for code in _languages(svc)]
    html = env.get_template(template).render(
        _=t,
        t=t,
        names=names,
        lang=lang,
        languages=languages,
        session=session,
        path=request.url.path,
        **context,
    )
    response = HTMLResponse(html, status_code=status)
    if request.query_params.get("lang") == lang:
        response.set_cookie(
            LANG_COOKIE,
            lang,
            max_age=365 * 86400,
            samesite="lax",
            secure=_secure(request),
            httponly=True,
        )
    response.headers["Content-Language"] = lang
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    )
    return response


def html_error(request: Request, status: int, problem: dict[str, Any]) -> HTMLResponse:
    """The HTML form of a problem, for browsers."""
    return render(request, "error.html", status=status, session=_session(request), problem=problem)


async def _arequire(request: Request, *roles: Role) -> Session:
    """:func:`_require` for the event loop (the session is looked up in the store)."""
    return await run_in_threadpool(_require, request, *roles)


def _require(request: Request, *roles: Role) -> Session:
    session = _session(request)
    if session is None:
        raise Unauthorized(
            N_("You are not signed in, or your session has ended."),
            hint=N_("Open the sign-in link your platform gives you again."),
        )
    if session.principal.role not in roles:
        # Sessions are for people: the one page a person may be refused is the console.
        raise Forbidden(
            N_("This page is for an organisation's administrators."),
            role=session.principal.role.value,
        )
    return session


async def _check_csrf(request: Request, session: Session, token: str) -> None:
    if not hmac.compare_digest(token.encode(), session.csrf.encode()):
        raise Forbidden(
            N_("This form is out of date or was not sent from this page, so nothing was changed."),
            hint=N_("Reload the page and try again."),
        )
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.url.netloc:
        raise Forbidden(N_("This form was sent from another site, so nothing was changed."))


def _redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


# -- sign-in and out ---------------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
def home(request: Request) -> Response:
    session = _session(request)
    if session is not None:
        return _redirect(_home_of(session.principal))
    return render(request, "home.html")


def _home_of(principal: Principal) -> str:
    return "/admin" if principal.role is Role.ACCOUNT_ADMIN else "/me"


@dataclass(frozen=True)
class SignInProblem:
    """Why a sign-in link did not sign the person in, as the page tells them: a title, what
    happened and what to do, each an English message id translated on the page. The API's
    technical detail ("the bearer token is not a JWT") is for programs: a client that does not
    ask for HTML gets it as problem JSON."""

    status: int
    title: str
    what: str
    todo: str
    account: str = ""


ASK_FOR_A_NEW_LINK = N_(
    "Go back to the platform and open your privacy or account settings there again: it gives "
    "you a new sign-in link."
)
LINK_EXPIRED = SignInProblem(
    401,
    N_("This sign-in link has expired"),
    N_(
        "Sign-in links work for a short while only, so that an old link left in an email or "
        "a browser's history cannot open your page."
    ),
    ASK_FOR_A_NEW_LINK,
)
LINK_INVALID = SignInProblem(
    401,
    N_("This sign-in link is not valid"),
    N_("This service cannot read it: it may have been copied only in part, or changed."),
    ASK_FOR_A_NEW_LINK,
)
LINK_INCOMPLETE = SignInProblem(
    401,
    N_("This sign-in link is not valid"),
    N_("The link has been cut short: the part that signs you in is missing."),
    ASK_FOR_A_NEW_LINK,
)
LINK_NOT_FOR_PEOPLE = SignInProblem(
    403,
    N_("This link is not for these pages"),
    N_("It was made for a program that works with this service, not for a person."),
    ASK_FOR_A_NEW_LINK,
)
NO_LONGER_ADMIN = SignInProblem(
    403,
    N_("You no longer administer {account}"),
    N_("This link opens the administration of {account}, and you are not a member of it now."),
    N_("If you should be, ask another administrator of {account} to invite you again."),
)
SIGN_IN_OFF = SignInProblem(
    401,
    N_("Signing in does not work here yet"),
    N_("This service has not been set up to accept sign-in links."),
    N_("Please tell the platform that gave you the link."),
)


def _refuse_sign_in(request: Request, problem: SignInProblem, error: ConsentryError) -> Response:
    """The sign-in problem page for a person; the technical ``error`` for a program."""
    if not wants_html(request):
        raise error
    response = render(request, "signin_error.html", status=problem.status, problem=problem)
    # The page's links (the language switch) carry the token: keep it from other sites.
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@router.get("/login", response_class=HTMLResponse)
def login(request: Request, token: str | None = None) -> Response:
    """Exchange the platform's sign-in link (a JWT) for a session cookie."""
    svc = _service(request)
    if not token:
        return _refuse_sign_in(
            request,
            LINK_INCOMPLETE,
            Unauthorized(
                "this sign-in link has no token", hint="use the link your platform gave you"
            ),
        )
    try:
        principal = svc.auth.tokens.verify(token)
    except TokenExpired as exc:
        return _refuse_sign_in(request, LINK_EXPIRED, exc)
    except Unauthorized as exc:
        problem = LINK_INVALID if svc.auth.tokens.configured else SIGN_IN_OFF
        return _refuse_sign_in(request, problem, exc)
    if principal.role not in PEOPLE:
        return _refuse_sign_in(
            request,
            LINK_NOT_FOR_PEOPLE,
            Forbidden(
                f"the {principal.role.value} role cannot sign in to these pages",
                hint="these pages are for people: sign in with a subject or account_admin token",
            ),
        )
    if principal.role is Role.ACCOUNT_ADMIN and principal.account not in (
        svc.store.state().accounts_of(principal.sub)
    ):
        return _refuse_sign_in(
            request,
            replace(NO_LONGER_ADMIN, account=principal.account or ""),
            Forbidden(
                f"{principal.sub!r} is not a member of account {principal.account!r}, so cannot "
                "administer it here",
                hint="an administrator's console session lasts while its person is a member "
                "of the account; ask the platform to add you",
            ),
        )
    response = _redirect(_home_of(principal))
    response.set_cookie(
        svc.sessions.cookie,
        svc.sessions.issue(principal),
        max_age=svc.sessions.max_age_s,
        httponly=True,
        samesite="lax",
        secure=_secure(request),
        path="/",
    )
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@router.post("/logout", response_class=HTMLResponse)
async def logout(request: Request, csrf: Annotated[str, Form()] = "") -> Response:
    session = await run_in_threadpool(_session, request)
    if session is not None:
        await _check_csrf(request, session, csrf)
        # Ended on the server: the cookie (and any copy of it) stops working at once.
        await run_in_threadpool(_service(request).sessions.revoke, session)
    response = render(request, "signed_out.html")
    response.delete_cookie(
        _service(request).sessions.cookie,
        path="/",
        httponly=True,
        samesite="lax",
        secure=_secure(request),
    )
    return response


# -- the preference centre ---------------------------------------------------------------------


def _policy(svc: Service) -> Policy:
    return svc.store.policy()


def _notice(policy: Policy, lang: str) -> dict[str, Any] | None:
    if not policy.notices:
        return None
    notice = policy.notices.get(lang) or policy.notice()
    authoritative = policy.notice()
    return {
        "title": notice.title,
        "summary": notice.summary,
        "language": notice.language,
        "machine_translated": notice.machine_translated,
        "authoritative": authoritative.language,
        "authoritative_name": language_name(authoritative.language, lang),
        "shown_in_other": notice.language != lang,
    }


def impact_of(svc: Service, subject: str) -> dict[str, Any]:
    """Datasets and models that used the subject's data, and whether they still may."""
    data: dict[str, Any] = svc.store.impact(subject).to_dict()
    for dataset in data["datasets"]:
        dataset["built"] = _parse_time(dataset["as_of"])
    return data


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def history(svc: Service, subject: str) -> list[dict[str, Any]]:
    out = []
    for event in svc.store.events(subject=subject):
        if event.kind is Kind.NOTICE_SERVED:
            continue  # evidence of what the page showed, not a choice (it is in the export)
        out.append(
            {
                "id": event.id,
                "seq": event.seq,
                "kind": str(event.kind),
                "at": event.at or from_us(event.at_us),
                "purpose": event.purpose,
                "categories": list(event.categories),
                "account": event.account,
                "subject": event.subject,
                "actor": event.actor,
                "status": event.status,
                "method": event.method,
                "receipt": str(event.kind).startswith("consent."),
            }
        )
    out.reverse()
    return out


@router.get("/me", response_class=HTMLResponse)
def me(
    request: Request,
    saved: str | None = None,
    joined: str | None = None,
    declined: str | None = None,
) -> Response:
    session = _require(request, *PEOPLE)
    svc = _service(request)
    subject = session.principal.sub
    lang = _language(request)
    policy = _policy(svc)
    views = rule_views(svc, subject, policy, lang)
    groups = []
    for key in (*GROUPS, *sorted({v.group for v in views} - set(GROUPS))):
        members = [v for v in views if v.group == key and v.kind != "never"]
        if members:
            groups.append({"key": key, "views": members})
    protected = [
        {"labels": sorted(p.labels), "purposes": list(p.purposes)} for p in policy.protected
    ]
    never = [v for v in views if v.kind == "never"]
    gpc = gpc_view(request, svc, subject, policy)
    state = svc.store.subject_state(subject)
    notice = _notice(policy, lang)
    if notice is not None:
        # Evidence that the person saw this notice before any choice made on this page: a
        # consent given here names this event (rate-limited: a reload records nothing new).
        svc.store.serve_notice(
            subject,
            notice_version=policy.version,
            language=notice["language"],
            method="preference-centre",
            actor=session.principal.actor,
        )
    return render(
        request,
        "me.html",
        session=session,
        subject=subject,
        policy=policy,
        notice=notice,
        groups=groups,
        never=never,
        protected=protected,
        accounts=state["accounts"],
        invitations=svc.store.invitations(subject=subject),
        history=history(svc, subject),
        impact=impact_of(svc, subject),
        gpc=gpc,
        saved=saved,
        joined=joined,
        declined=declined,
    )


def gpc_view(request: Request, svc: Service, subject: str, policy: Policy) -> dict[str, Any] | None:
    """Global Privacy Control on ``/me`` (issue 16 §5): a request carrying ``Sec-GPC: 1``
    records the signal (once per policy version, in the library); the page then shows the
    latest signal and what it meant under the policy (or that it changed nothing)."""
    from ..gpc import last_signal, record

    if request.headers.get("sec-gpc", "").strip() == "1":
        record(svc.store, subject, actor=subject)
    signal = last_signal(svc.store, subject)
    if signal is None:
        return None
    return {
        "at": signal.at_text[:10],
        "objects_to": list(signal.payload.get("objects_to") or ()),
        "current": signal.policy_version == policy.version,
    }


CHOICES = {"give", "withdraw", "refuse", "object", "lift"}


@router.post("/me/choices", response_class=HTMLResponse)
async def me_choice(
    request: Request,
    csrf: Annotated[str, Form()],
    rule: Annotated[str, Form()],
    action: Annotated[str, Form()],
) -> Response:
    session = await _arequire(request, *PEOPLE)
    await _check_csrf(request, session, csrf)
    if action not in CHOICES:
        raise InvalidInput(f"unknown choice {action!r}", field="action")
    svc = _service(request)
    lang = _language(request)
    await run_in_threadpool(_record_choice, svc, session.principal, rule, action, lang)
    # No #fragment: the page puts the focus back on the switch (autofocus), which a fragment
    # would cancel; the focus scrolls it into view.
    return _redirect(f"/me?{urlencode({'lang': lang, 'saved': rule})}")


@router.post("/me/invitations", response_class=HTMLResponse)
async def me_invitation(
    request: Request,
    csrf: Annotated[str, Form()],
    account: Annotated[str, Form()],
    answer: Annotated[str, Form()],
) -> Response:
    """Accept or decline a pending invitation to an account (``Store.accept_invitation`` /
    ``decline_invitation``, as ``POST /v1/subjects/{s}/invitations/{account}/accept``)."""
    session = await _arequire(request, *PEOPLE)
    await _check_csrf(request, session, csrf)
    if answer not in ("accept", "decline"):
        raise InvalidInput(f"an invitation is answered 'accept' or 'decline', not {answer!r}")
    svc = _service(request)
    store, principal = svc.store, session.principal
    call = store.accept_invitation if answer == "accept" else store.decline_invitation
    await run_in_threadpool(call, principal.sub, account, actor=principal.actor)
    lang = _language(request)
    done = "joined" if answer == "accept" else "declined"
    return _redirect(f"/me?{urlencode({'lang': lang, done: account})}#invitations-title")


def _record_choice(
    svc: Service, principal: Principal, rule_id: str, action: str, lang: str
) -> None:
    policy = _policy(svc)
    rule = policy.rules_by_id.get(rule_id)
    if rule is None:
        raise NotFound(f"policy {policy.version} has no rule {rule_id!r}", field="rule")
    store, subject = svc.store, principal.sub
    language = lang if lang in policy.notices else None
    if action in ("object", "lift"):
        # Whether this objection can change anything is the Store's rule (it refuses one the
        # policy ignores, as for the CLI and the API).
        for p in rule.purposes:
            store.record_consent(action, subject, p, list(rule.categories), actor=principal.actor)
        return
    if kind_of(rule) != "opt_in":
        raise InvalidInput(f"rule {rule_id!r} does not ask for your consent", field="rule")
    for p in rule.purposes:
        store.record_consent(
            action,
            subject,
            p,
            list(rule.categories),
            notice_version=policy.version,
            language=language,
            method="preference-centre",
            actor=principal.actor,
        )


@router.get("/me/receipts/{event_id}")
def me_receipt(request: Request, event_id: str) -> Response:
    session = _require(request, *PEOPLE)
    svc = _service(request)
    event = svc.store.event(event_id)
    if event.subject != session.principal.sub:
        raise Forbidden(N_("This receipt records someone else's choice."))
    receipt = svc.store.receipt(event.id)
    body = json.dumps(receipt, indent=2, ensure_ascii=False).encode("utf-8")
    return Response(
        body,
        media_type="application/json",
        headers={
            "Content-Disposition": f'attachment; filename="consent-receipt-{event.id}.json"',
            "Cache-Control": "no-store",
        },
    )


@router.get("/me/export")
def me_export(request: Request) -> Response:
    """The signed-in person's "Download my data" archive (see :mod:`consentry.export`), its
    README in the page's language."""
    session = _require(request, *PEOPLE)
    subject = session.principal.sub
    data = _service(request).store.export_subject(subject, language=_language(request))
    from ..export import archive_name

    return Response(
        data,
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="{archive_name(subject)}"',
            "Cache-Control": "no-store",
        },
    )


# -- the admin console -------------------------------------------------------------------------


@router.get("/admin", response_class=HTMLResponse)
def admin(
    request: Request,
    saved: str | None = None,
    added: str | None = None,
    removed: str | None = None,
    invited: str | None = None,
) -> Response:
    session = _require(request, Role.ACCOUNT_ADMIN)
    return _admin_page(request, session, saved=saved, added=added, removed=removed, invited=invited)


@dataclass(frozen=True)
class MemberNotice:
    """Why a membership change from the console was not made: an HTTP status and a message
    (an English message id, translated on the page) with its parameters."""

    status: int
    message: str
    subject: str = ""
    account: str = ""


def _admin_page(
    request: Request,
    session: Session,
    status: int = 200,
    *,
    saved: str | None = None,
    added: str | None = None,
    removed: str | None = None,
    invited: str | None = None,
    notice: MemberNotice | None = None,
    typed: str = "",
) -> HTMLResponse:
    svc = _service(request)
    account = session.principal.account or ""
    policy = _policy(svc)
    state = svc.store.account_state(account)
    purposes = account_purposes(policy)
    for entry in purposes:
        entry.update(_setting_view(policy, state["settings"], entry["purpose"]))
        entry["enabled"] = _inherited(state["features"], entry["purpose"])[1] == "enabled"
    for entry in purposes:
        # The purposes beneath this one that follow its setting (none of their own).
        entry["followers"] = [
            e["purpose"]
            for e in purposes
            if e["setting"] and e["source"] == entry["purpose"] and e is not entry
        ]
    summary = member_summary(svc, account, policy)
    trail = list(svc.store.events(account=account))
    trail.reverse()
    return render(
        request,
        "admin.html",
        status=status,
        session=session,
        account=account,
        policy=policy,
        purposes=purposes,
        summary=summary,
        members=state["members"],
        invitations=svc.store.invitations(account=account),
        trail=trail,
        saved=saved,
        added=added,
        removed=removed,
        invited=invited,
        notice=notice,
        typed=typed,
    )


def _inherited(table: dict[str, str], purpose: str) -> tuple[str | None, str | None]:
    """(the purpose whose entry applies to ``purpose``, its value): its own, else the nearest
    purpose above it that has one, as the decider reads account settings and features (the
    most specific wins); ``(None, None)`` when none has."""
    for key in ancestors(purpose):
        if key in table:
            return key, table[key]
    return None, None


def _setting_view(policy: Policy, settings: dict[str, str], purpose: str) -> dict[str, Any]:
    """What the console shows for an account's setting of ``purpose``.

    ``current`` is the setting that applies (its own, else inherited, else members choose);
    ``source`` the purpose it comes from when inherited. A purpose beneath one switched off
    for every member (with no setting of its own) is ``capped``: it is off, and the console
    offers no choice for it, since turning it back on is a change to the purpose above.
    A setting of its own beneath a different one above ``overrides`` it.
    """
    source, value = _inherited(settings, purpose)
    own = source == purpose
    above_source, above = _inherited(settings, purpose.rpartition(".")[0])
    try:
        check_account_setting(policy, purpose, "on")
        on_allowed = True
    except InvalidInput:
        on_allowed = False
    return {
        "current": value or "members_choose",
        "own": own,
        "source": None if own else source,
        "capped": not own and value == "off",
        "overrides": above_source if own and above is not None and above != value else None,
        "overridden": above,
        # As the Store decides it (a broader rule's account_consent reaches this purpose).
        "on_allowed": on_allowed,
    }


@router.post("/admin/settings", response_class=HTMLResponse)
async def admin_setting(
    request: Request,
    csrf: Annotated[str, Form()],
    purpose: Annotated[str, Form()],
    setting: Annotated[str, Form()],
) -> Response:
    session = await _arequire(request, Role.ACCOUNT_ADMIN)
    await _check_csrf(request, session, csrf)
    svc = _service(request)
    account = session.principal.account or ""

    # Store.set_account refuses a setting the policy gives no meaning (as the API and CLI).
    await run_in_threadpool(
        svc.store.set_account, account, purpose, setting, actor=session.principal.actor
    )
    lang = _language(request)
    return _redirect(f"/admin?{urlencode({'lang': lang, 'saved': purpose})}")


@router.post("/admin/features", response_class=HTMLResponse)
async def admin_feature(
    request: Request,
    csrf: Annotated[str, Form()],
    purpose: Annotated[str, Form()],
    enabled: Annotated[str, Form()],
) -> Response:
    session = await _arequire(request, Role.ACCOUNT_ADMIN)
    await _check_csrf(request, session, csrf)
    if enabled not in ("on", "off"):
        raise InvalidInput(f"a feature is switched 'on' or 'off', not {enabled!r}", field="enabled")
    svc = _service(request)
    account = session.principal.account or ""
    await run_in_threadpool(
        svc.store.set_feature, account, purpose, enabled == "on", actor=session.principal.actor
    )
    lang = _language(request)
    return _redirect(f"/admin?{urlencode({'lang': lang, 'saved': purpose})}")


# -- the admin console: members ----------------------------------------------------------------

#: The longest subject id the ledger takes (as the API's ``{subject}`` path parameter).
SUBJECT_MAX = 512

NO_SUBJECT = N_("Enter the subject id of the person to invite: the id your platform uses for them.")
BAD_SUBJECT = N_(
    "That is not a subject id. Use the id your platform uses for the person: at most 512 "
    "characters, with no spaces or control characters."
)
ALREADY_MEMBER = N_("{subject} is already a member of {account}. Nothing was changed.")
ALREADY_INVITED = N_(
    "{subject} is already invited to {account} and has not answered yet. Nothing was changed."
)
NOT_A_MEMBER = N_("{subject} is not a member of {account}. Nothing was changed.")

#: Checks a membership and changes it as one step, so that a form sent twice (a double click)
#: records one event. Other workers and the API do not take it (see docs/api.md).
_membership_lock = threading.Lock()


def _subject_problem(subject: str) -> str | None:
    """Why a typed subject id cannot be one, or ``None``. Surrounding blanks are trimmed
    before (they come from copying and pasting); blanks or control characters inside are
    refused, as a typing mistake is likelier than such an id."""
    if not subject:
        return NO_SUBJECT
    if len(subject) > SUBJECT_MAX or any(ch.isspace() or not ch.isprintable() for ch in subject):
        return BAD_SUBJECT
    return None


def _member_account(session: Session, account: str) -> str:
    """The account a membership form was rendered for, which must be the session's: the
    same rule (and refusal) as the API's membership endpoints."""
    require_account_admin(session.principal, account, action="changing an account's members")
    return account


def _invite_member(
    svc: Service, principal: Principal, account: str, subject: str
) -> MemberNotice | None:
    """Invite a person (an administrator never adds anyone: the person accepts on /me)."""
    with _membership_lock:
        if account in svc.store.state().accounts_of(subject):
            return MemberNotice(409, ALREADY_MEMBER, subject, account)
        if any(i["account"] == account for i in svc.store.invitations(subject=subject)):
            return MemberNotice(409, ALREADY_INVITED, subject, account)
        svc.store.invite_member(subject, account, actor=principal.actor)
    return None


def _remove_member(
    svc: Service, principal: Principal, account: str, subject: str
) -> MemberNotice | None:
    with _membership_lock:
        if account not in svc.store.state().accounts_of(subject):
            return MemberNotice(404, NOT_A_MEMBER, subject, account)
        svc.store.remove_member(subject, account, actor=principal.actor)
    return None


@router.post("/admin/members", response_class=HTMLResponse)
async def admin_add_member(
    request: Request,
    csrf: Annotated[str, Form()],
    account: Annotated[str, Form()],
    subject: Annotated[str, Form()] = "",
) -> Response:
    """Invite a person (``Store.invite_member``, as ``POST /v1/accounts/{account}/invitations/
    {subject}``): they join when they accept on ``/me``. A member or a pending invitee is not
    invited twice."""
    session = await _arequire(request, Role.ACCOUNT_ADMIN)
    await _check_csrf(request, session, csrf)
    account = _member_account(session, account)
    subject = subject.strip()
    problem = _subject_problem(subject)
    svc = _service(request)
    if problem is not None:
        notice: MemberNotice | None = MemberNotice(422, problem)
    else:
        notice = await run_in_threadpool(_invite_member, svc, session.principal, account, subject)
    if notice is not None:
        return await run_in_threadpool(
            _admin_page, request, session, notice.status, notice=notice, typed=subject
        )
    lang = _language(request)
    return _redirect(f"/admin?{urlencode({'lang': lang, 'invited': subject})}#members-title")


@router.get("/admin/members/remove", response_class=HTMLResponse)
def admin_confirm_removal(request: Request, subject: str = "") -> Response:
    """The confirmation step before removing a member (a page, not a script's dialog)."""
    session = _require(request, Role.ACCOUNT_ADMIN)
    svc = _service(request)
    account = session.principal.account or ""
    if not subject:
        return _redirect("/admin#members-title")
    if account not in svc.store.state().accounts_of(subject):
        notice = MemberNotice(404, NOT_A_MEMBER, subject, account)
        return _admin_page(request, session, notice.status, notice=notice)
    return render(request, "admin_remove.html", session=session, account=account, subject=subject)


@router.post("/admin/members/remove", response_class=HTMLResponse)
async def admin_remove_member(
    request: Request,
    csrf: Annotated[str, Form()],
    account: Annotated[str, Form()],
    subject: Annotated[str, Form()],
) -> Response:
    """Remove a member (``Store.remove_member``, as ``DELETE …/members/{subject}``), once
    confirmed on :func:`admin_confirm_removal`'s page."""
    session = await _arequire(request, Role.ACCOUNT_ADMIN)
    await _check_csrf(request, session, csrf)
    account = _member_account(session, account)
    svc = _service(request)
    notice = await run_in_threadpool(_remove_member, svc, session.principal, account, subject)
    if notice is not None:
        return await run_in_threadpool(_admin_page, request, session, notice.status, notice=notice)
    lang = _language(request)
    return _redirect(f"/admin?{urlencode({'lang': lang, 'removed': subject})}#members-title")
