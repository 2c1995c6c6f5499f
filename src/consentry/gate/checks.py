"""The checks every manifest row must pass, as data, and the one error that names a bad row.

A check is a column, a predicate and the problem it reports. The gate lists them once
(:func:`row_checks`, :func:`category_checks`); each engine translates the predicates into its
own terms (DuckDB SQL and whole-column NumPy/Arrow tests in :mod:`consentry.gate.duck` and
:mod:`consentry.gate.stream`, Spark column expressions in :mod:`consentry.gate.spark`) and
hands back where the first failing row is (:class:`Located`); :func:`bad_row_error` then says
what is wrong, in the same words whichever engine found it.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInput, UnknownName, unknown

if TYPE_CHECKING:
    from .decisions import LedgerSnapshot
    from .manifest import Shape


class Predicate(enum.StrEnum):
    """What a check tests on its column (true: the row is bad)."""

    #: The value is null.
    NULL = "null"
    #: A string is ``''``; a list is ``[]``.
    EMPTY = "empty"
    #: A list holds a null.
    NULL_ITEM = "null_item"
    #: A list holds ``''``.
    EMPTY_ITEM = "empty_item"
    #: A list (not null) holds a value outside :attr:`RowCheck.values`.
    ITEM_NOT_IN = "item_not_in"
    #: A value (not null) is outside :attr:`RowCheck.values`.
    NOT_IN = "not_in"


#: Predicates whose failing row has a value to name (the unknown label or category).
NAMES_A_VALUE = frozenset({Predicate.ITEM_NOT_IN, Predicate.NOT_IN})


@dataclass(frozen=True)
class RowCheck:
    """One check on one column: rows where ``predicate`` holds are bad."""

    column: str
    predicate: Predicate
    #: What is wrong, as the error says it (for a check that names a value, the kind of
    #: thing: ``label``, ``category``).
    problem: str
    #: The allowed values, for ITEM_NOT_IN and NOT_IN.
    values: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class Located:
    """Where an engine found a bad row, in words, and what identifies it."""

    #: ``row 2 of m.csv (line 3)`` (an engine with row order) or ``manifest NAME``.
    where: str
    item_id: str | None = None
    #: The value a value-naming check found (the unknown label or category).
    value: str | None = None
    #: Extra fields for the error (``file``, ``row``).
    details: Mapping[str, Any] = field(default_factory=dict)


HINTS = {
    "item_id": "every item needs a non-empty item_id",
    "subject_id": "every item needs the id of the subject whose data it is",
    "subject_ids": "list every subject of the item (the owner first); no nulls or empty ids",
    "labels": "labels is a list of label names; leave it empty for none",
    "category": "every item needs a data category, e.g. content.audio",
    "account": "account names the account the item belongs to; leave it null for none",
}


def row_checks(
    shape: Shape,
    known_labels: frozenset[str] | None,
    categories: Iterable[str],
    accounts: Iterable[str] = (),
) -> tuple[RowCheck, ...]:
    """Every check a row must pass, in the order they are reported."""
    checks = [
        RowCheck("item_id", Predicate.NULL, "'item_id' is empty (null)"),
        RowCheck("item_id", Predicate.EMPTY, "'item_id' is an empty string"),
    ]
    if shape.is_list:
        checks += [
            RowCheck("subject_ids", Predicate.NULL, "'subject_ids' is empty (null)"),
            RowCheck("subject_ids", Predicate.EMPTY, "'subject_ids' is an empty list"),
            RowCheck("subject_ids", Predicate.NULL_ITEM, "'subject_ids' holds a null subject"),
            RowCheck(
                "subject_ids", Predicate.EMPTY_ITEM, "'subject_ids' holds an empty subject id"
            ),
        ]
    else:
        checks += [
            RowCheck("subject_id", Predicate.NULL, "'subject_id' is empty (null)"),
            RowCheck("subject_id", Predicate.EMPTY, "'subject_id' is an empty string"),
        ]
    if shape.labels:
        checks.append(RowCheck("labels", Predicate.NULL_ITEM, "'labels' holds a null label"))
        if known_labels is not None:
            checks.append(RowCheck("labels", Predicate.ITEM_NOT_IN, "label", known_labels))
    if shape.account:
        checks += account_checks(accounts)
    return (*checks, *category_checks(categories))


def account_checks(known: Iterable[str]) -> tuple[RowCheck, ...]:
    """A row's account, when it names one: not empty, and one the store knows (null: the
    item belongs to no account in particular)."""
    return (
        RowCheck("account", Predicate.EMPTY, "'account' is an empty string"),
        RowCheck("account", Predicate.NOT_IN, "account", frozenset(known)),
    )


def split_accounts(found: Iterable[str | None], known: Collection[str]) -> tuple[list[str], bool]:
    """A manifest's distinct accounts checked against the store's: (the known ones in
    order, whether one is empty or unknown)."""
    good = sorted(a for a in found if a and a in known)
    bad = any(a is not None and (not a or a not in known) for a in found)
    return good, bad


def category_checks(known: Iterable[str]) -> tuple[RowCheck, ...]:
    """A row's category: present, and one of ``known``."""
    return (
        RowCheck("category", Predicate.NULL, "'category' is empty"),
        RowCheck("category", Predicate.NOT_IN, "category", frozenset(known)),
    )


def split_categories(
    found: Iterable[str | None], snapshot: LedgerSnapshot
) -> tuple[list[str], bool, dict[str, str | None]]:
    """A manifest's distinct categories checked against the policy in effect: (the known
    ones in order, whether one is null, the unknown ones with their hints)."""
    good: list[str] = []
    null = False
    hints: dict[str, str | None] = {}
    for category in found:
        if category is None:
            null = True
            continue
        try:
            snapshot.check_category(category)
        except UnknownName as exc:
            hints[category] = exc.hint
            continue
        good.append(category)
    return sorted(good), null, hints


def bad_row_error(
    check: RowCheck, at: Located, *, hints: Mapping[str, str | None] | None = None
) -> InvalidInput:
    """The error for the first bad row: where it is, which item, what is wrong, how to fix it.

    ``hints`` gives the hint for an unknown category (the policy's suggestion)."""
    item = f" (item {at.item_id!r})" if at.item_id else ""
    details = dict(at.details)
    if check.predicate in NAMES_A_VALUE:
        value = str(at.value)
        if check.column == "category":
            hint = (hints or {}).get(value)
        else:
            hint = unknown(check.problem, value, check.values).hint
        return InvalidInput(
            f"{at.where}{item}: unknown {check.problem} {value!r} in column {check.column!r}",
            hint=hint,
            field=check.column,
            value=value,
            **details,
        )
    return InvalidInput(
        f"{at.where}{item}: {check.problem}",
        hint=HINTS.get(check.column),
        field=check.column,
        **details,
    )


__all__ = [
    "HINTS",
    "Located",
    "Predicate",
    "RowCheck",
    "account_checks",
    "bad_row_error",
    "category_checks",
    "row_checks",
    "split_accounts",
    "split_categories",
]
