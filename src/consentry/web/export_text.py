"""The README of a "download my data" archive, as messages of the UI catalogs (so that it is
translated with every other string: en, id, fr)."""

from __future__ import annotations

from .i18n import DEFAULT, N_, available, translations

TITLE = N_("Your data in {service}")
INTRO = N_(
    "This archive holds everything {service} keeps about you as {subject}: each choice you "
    "made (or that was recorded for you) in its ledger, the receipts that prove them, the "
    "organisations you belong to, and the datasets and models your data went into. It was "
    "made on {generated_at}."
)
FILES = N_("The files")
EVENTS_JSON = N_(
    "events.json: every event of the ledger about you, oldest first, exactly as recorded "
    "(with the hashes that chain it to the events before it)."
)
EVENTS_CSV = N_(
    "events.csv: the same events as a table, one per line, to open in a spreadsheet. "
    '"captured_at" is when a choice was first made, when it was brought in from another '
    "system."
)
STATE = N_("state.json: your choices as they stand now, per use and kind of data.")
RECEIPTS = N_(
    "receipts/: one signed receipt per consent choice, with the proof that the ledger holds "
    "it (its place in the log signed by checkpoint.txt)."
)
MEMBERSHIPS = N_(
    "memberships.json: the organisations you belong to, the invitations you have not "
    "answered, and the history of both."
)
DATASETS = N_(
    "datasets.json: each dataset built with your data (its purpose, when it was built and "
    "under which policy version), the models trained on it, and whether your choices today "
    "still allow it."
)
KEYS = N_(
    "checkpoint.txt and public-keys.json: what anyone needs to check the receipts without "
    "asking us."
)
VERIFY = N_("To check a receipt yourself")
NO_DATASETS = N_("Your data has not been used in any dataset.")


def readme(language: str, *, service: str, subject: str, generated_at: str, datasets: int) -> str:
    """The README text in ``language`` (English when there is no catalog for it)."""
    lang = language if language in available([language]) else DEFAULT
    gettext = translations(lang).gettext

    def _(message: str, **values: str) -> str:
        return gettext(message).format(**values)

    title = _(TITLE, service=service)
    lines = [title, "=" * len(title), ""]
    lines += [_(INTRO, service=service, subject=subject, generated_at=generated_at), ""]
    lines += [_(FILES), "-" * len(_(FILES)), ""]
    for message in (EVENTS_JSON, EVENTS_CSV, STATE, RECEIPTS, MEMBERSHIPS, DATASETS, KEYS):
        lines.append(f"* {_(message)}")
    if not datasets:
        lines += ["", _(NO_DATASETS)]
    lines += ["", _(VERIFY), "-" * len(_(VERIFY)), ""]
    lines.append(
        "    consentry receipt verify receipts/<id>.json --checkpoint checkpoint.txt "
        "--public-key public-keys.json"
    )
    return "\n".join(lines) + "\n"
