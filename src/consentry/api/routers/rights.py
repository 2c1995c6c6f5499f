"""A person's right of access over HTTP: ``GET /v1/subjects/{s}/export`` (one ZIP)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from starlette.responses import Response

from ...export import archive_name, no_such_subject
from ..auth import Role, is_self
from ..deps import Caller, StrictRoute, Svc
from ..models import problems

router = APIRouter(prefix="/v1/subjects", tags=["subjects"], route_class=StrictRoute)

SubjectId = Annotated[str, Path(min_length=1, max_length=512, examples=["u_123"])]


@router.get(
    "/{subject}/export",
    responses={
        200: {
            "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
            "description": "The archive (README.txt, events.json, events.csv, state.json, "
            "receipts/, memberships.json, datasets.json, checkpoint.txt, public-keys.json)",
        },
        **problems(401, 404, 422, 503),
    },
    summary="Download everything held about a person (one ZIP)",
)
def export(
    subject: SubjectId,
    svc: Svc,
    caller: Caller,
    lang: Annotated[
        str | None, Query(min_length=2, max_length=35, description="The README's language.")
    ] = None,
) -> Response:
    """The person's right of access: every ledger event about them (JSON and CSV), each
    consent receipt with its inclusion proof against the latest checkpoint, their
    memberships, the datasets and models their data went into, and a README in their
    language. For the person themself or the ``platform_admin`` role. Anyone else (another
    person, an account administrator, a key of another role) gets the 404 a subject the
    ledger does not know gets: the answer says nothing of whether the person exists."""
    if not (is_self(caller, subject) or caller.role is Role.PLATFORM_ADMIN):
        raise no_such_subject(subject)
    data = svc.store.export_subject(subject, language=lang)
    return Response(
        data,
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="{archive_name(subject)}"',
            "Cache-Control": "no-store",
        },
    )
