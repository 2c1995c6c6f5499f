"""The state audit as SQL over the events (SQLite): the state the chain implies, computed by
the database, and compared with the current-state tables there.

:func:`consentry.ledger.events.state_changes` stays the definition of what an event changes
(and :mod:`~consentry.ledger.audit`'s replay the reference): this module says the same for
each kind in SQL, and a property test (tests/test_state_sql.py) holds the two equal over
random histories of every kind that changes state, and their reports equal over random
tampering. What the SQL does not decide exactly goes to the Python replay:

- an event of a kind ``state_changes`` does not know (it reports it), and every
  ``policy.published`` event (its payload's document is re-serialised as canonical JSON):
  few, read and replayed in Python;
- a consent or objection whose categories are not a JSON array of strings, or a consent
  whose payload the SQL does not read as ``state_changes`` does (not a JSON object, a
  ``captured_at`` that is not a time as consentry writes it, a ``superseded`` that is not a
  list of strings): only a tampered row; the whole audit is then the Python replay.

An imported consent (``captured_at`` in its payload, ``consentry import``) is SQL like any
other: its record's time is ``captured_at`` and its ``superseded`` categories set nothing.

The check itself (:func:`audit_sql`) is one statement (``CHECK``): per table, the rows the
events set or remove (``_touches``), each joined with the stored row of its key (a primary-key
lookup). A touch disagrees when the stored row's ``seq`` is earlier than the event's, or is the
event's with other values (or the event removes the row), or when no row is stored for a set
row that no later event removed (for memberships and invitations, looked up by subject). And
the stored rows that hold the values of an event on their key are counted (distinct rowids).
No disagreement, and that count equal to the table's rows, is exactly "the table is what the
chain implies": every row some event sets last is stored with its values, and no stored row
is anything else. Only when something differs is the implied state computed whole
(:func:`implied`: the last event per key) and handed to :func:`audit.compare`, which reports
each row as it always has.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Connection

from . import audit, schema
from .events import STATE_KEYS, Kind, state_changes

_CONSENT = ("consent.given", "consent.refused", "consent.withdrawn")
_OBJECTION = ("objection.raised", "objection.lifted")
_MEMBERSHIP_SET = ("member.added", "member.accepted")
_INVITATION_UNSET = ("member.added", "member.accepted", "member.declined")
_LINKS = ("subject.linked", "subject.unlinked")
_KNOWN = tuple(str(k) for k in Kind)
#: kinds replayed in Python (see the module's docstring)
_PYTHON_KINDS = (str(Kind.POLICY_PUBLISHED),)


def _in(kinds: tuple[str, ...]) -> str:
    return "(" + ", ".join(f"'{k}'" for k in kinds) + ")"


_CATS = "coalesce(nullif(e.categories, ''), '[]')"
#: an objection without categories is about every category: the key ""
_OBJECTION_CATS = f"CASE WHEN json_array_length({_CATS}) = 0 THEN '[\"\"]' ELSE {_CATS} END"
_CONSENT_STATUS = (
    "CASE e.kind WHEN 'consent.given' THEN 'given' WHEN 'consent.refused' THEN 'refused' "
    "ELSE 'withdrawn' END"
)
_OBJECTION_STATUS = "CASE e.kind WHEN 'objection.raised' THEN 'raised' ELSE 'lifted' END"
#: a row of json_each that is not a string in a top-level array (only a tampered event)
_IRREGULAR = "(typeof(j.key) <> 'integer' OR j.type <> 'text')"
#: An imported consent (``captured_at`` in its payload): its record counts from that moment and
#: skips the ``superseded`` categories (events.state_changes). CASE, not AND/OR, wherever JSON
#: functions read the payload: SQLite must not run them on text that is not JSON.
_IMPORTED = (
    "(CASE WHEN e.payload = '{}' THEN 0 WHEN NOT json_valid(e.payload) THEN 0 "
    "WHEN json_type(e.payload) <> 'object' THEN 0 "
    "WHEN json_type(e.payload, '$.captured_at') IS NULL THEN 0 ELSE 1 END)"
)
_CAPTURED = "json_extract(e.payload, '$.captured_at')"
_DIGITS = "[0-9][0-9]"
#: ``captured_at`` as consentry writes it (``format_time``), or without the fraction, and a
#: real date and time (through julianday, SQLite gives back what it was given only for a date
#: that exists: no 30 February, no 24:00)
_CAPTURED_REGULAR = (
    f"(({_CAPTURED} GLOB '{_DIGITS}{_DIGITS}-{_DIGITS}-{_DIGITS}T{_DIGITS}:{_DIGITS}:{_DIGITS}Z' "
    f"OR {_CAPTURED} GLOB '{_DIGITS}{_DIGITS}-{_DIGITS}-{_DIGITS}T{_DIGITS}:{_DIGITS}:{_DIGITS}"
    f".{_DIGITS}{_DIGITS}{_DIGITS}Z') "
    f"AND substr({_CAPTURED}, 1, 4) <> '0000' "
    f"AND strftime('%Y-%m-%dT%H:%M:%S', julianday(substr({_CAPTURED}, 1, 19))) "
    f"= substr({_CAPTURED}, 1, 19))"
)
#: events.captured_us in SQL (for a regular ``captured_at``)
_CAPTURED_US = (
    f"(CAST(strftime('%s', substr({_CAPTURED}, 1, 19)) AS INTEGER) * 1000000 + "
    f"CASE WHEN length({_CAPTURED}) = 27 THEN CAST(substr({_CAPTURED}, 21, 6) AS INTEGER) "
    "ELSE 0 END)"
)
#: 1 where the SQL cannot say what the payload implies: not JSON, not an object, a
#: ``captured_at`` that is not a regular time, ``superseded`` that is not null or an array of
#: strings (``state_changes`` reads those in ways the SQL does not copy): the Python replay
_PAYLOAD_IRREGULAR = (
    "(CASE WHEN e.payload = '{}' THEN 0 WHEN NOT json_valid(e.payload) THEN 1 "
    "WHEN json_type(e.payload) <> 'object' THEN 1 "
    "WHEN json_type(e.payload, '$.captured_at') IS NULL THEN 0 "
    "WHEN json_type(e.payload, '$.captured_at') <> 'text' THEN 1 "
    f"WHEN NOT {_CAPTURED_REGULAR} THEN 1 "
    "WHEN coalesce(json_type(e.payload, '$.superseded'), 'null') = 'null' THEN 0 "
    "WHEN json_type(e.payload, '$.superseded') <> 'array' THEN 1 "
    "WHEN EXISTS (SELECT 1 FROM json_each(e.payload, '$.superseded') x WHERE x.type <> 'text') "
    "THEN 1 ELSE 0 END)"
)
#: the record's time: the moment the choice was made for an imported consent
_CONSENT_AT = (
    f"(CASE WHEN NOT {_IMPORTED} THEN e.at_us WHEN {_CAPTURED_REGULAR} THEN {_CAPTURED_US} "
    "ELSE e.at_us END)"
)
#: the category is one the event sets (not one an imported consent lists as superseded)
_NOT_SUPERSEDED = (
    f"(CASE WHEN NOT {_IMPORTED} THEN 1 "
    "WHEN json_type(e.payload, '$.superseded') IS NOT 'array' THEN 1 "
    "ELSE NOT EXISTS (SELECT 1 FROM json_each(e.payload, '$.superseded') x "
    "WHERE x.type = 'text' AND x.value = j.value) END)"
)


#: a link's alias, or NULL when the payload is not a JSON object holding it as text
_ALIAS_OF = (
    "(CASE WHEN NOT json_valid({e}.payload) THEN NULL WHEN json_type({e}.payload) <> 'object' "
    "THEN NULL WHEN json_type({e}.payload, '$.alias') <> 'text' THEN NULL "
    "ELSE json_extract({e}.payload, '$.alias') END)"
)
_ALIAS_IRREGULAR = f"({_ALIAS_OF.format(e='e')} IS NULL)"


def _touches(table: str, source: str = "events") -> str:
    """The rows each event up to ``:head`` sets or removes in ``table``: the key columns
    (k0, k1, ...), the event's ``seq``, ``is_set`` (0: removes the row), the value columns
    (``v_<name>``, in table order) and ``irregular`` (1: the SQL cannot say; see above).
    ``source``: the events, or a subset of their rows and columns (``_SMALL``)."""
    if table in ("consents", "objections"):
        consent = table == "consents"
        cats = _CATS if consent else _OBJECTION_CATS
        kinds = _CONSENT if consent else _OBJECTION
        values = (
            f"{_CONSENT_STATUS} AS v_status, {_CONSENT_AT} AS v_at_us, e.seq AS v_seq, "
            "e.notice_version AS v_notice_version, e.policy_version AS v_policy_version"
            if consent
            else f"{_OBJECTION_STATUS} AS v_status, e.at_us AS v_at_us, e.seq AS v_seq"
        )
        irregular = (
            f"({_IRREGULAR} OR {_PAYLOAD_IRREGULAR})"
            if consent
            else f"({_IRREGULAR} OR json_type({_CATS}) <> 'array')"
        )
        return (
            "SELECT coalesce(e.subject, '') AS k0, coalesce(e.purpose, '') AS k1, "
            f"j.value AS k2, e.seq AS seq, 1 AS is_set, {values}, {irregular} AS irregular "
            f"FROM {source} e, json_each({cats}) j "
            f"WHERE e.seq <= :head AND e.kind IN {_in(kinds)}"
            + (f" AND {_NOT_SUPERSEDED}" if consent else "")
        )
    if table == "memberships":
        return (
            "SELECT coalesce(e.subject, '') AS k0, coalesce(e.account, '') AS k1, e.seq AS seq, "
            f"e.kind IN {_in(_MEMBERSHIP_SET)} AS is_set, e.at_us AS v_at_us, e.seq AS v_seq, "
            f"0 AS irregular FROM {source} e WHERE e.seq <= :head AND e.kind IN "
            f"{_in((*_MEMBERSHIP_SET, 'member.removed'))}"
        )
    if table == "invitations":
        return (
            "SELECT coalesce(e.subject, '') AS k0, coalesce(e.account, '') AS k1, e.seq AS seq, "
            "e.kind = 'member.invited' AS is_set, e.at_us AS v_at_us, e.seq AS v_seq, "
            f"e.actor AS v_invited_by, 0 AS irregular FROM {source} e WHERE e.seq <= :head AND "
            f"e.kind IN {_in(('member.invited', *_INVITATION_UNSET))}"
        )
    if table in ("account_settings", "account_features"):
        kind = "account.setting" if table == "account_settings" else "account.feature"
        return (
            "SELECT coalesce(e.account, '') AS k0, coalesce(e.purpose, '') AS k1, e.seq AS seq, "
            "1 AS is_set, e.status AS v_status, e.at_us AS v_at_us, e.seq AS v_seq, "
            f"0 AS irregular FROM {source} e WHERE e.seq <= :head AND e.kind = '{kind}'"
        )
    if table == "subject_aliases":
        # the alias is in the payload (events.state_changes refuses one that is not text)
        return (
            f"SELECT {_ALIAS_OF.format(e='e')} AS k0, e.seq AS seq, "
            "e.kind = 'subject.linked' AS is_set, coalesce(e.subject, '') AS v_subject, "
            "e.at_us AS v_at_us, e.seq AS v_seq, "
            f"{_ALIAS_IRREGULAR} AS irregular FROM {source} e WHERE e.seq <= :head AND "
            f"e.kind IN {_in(_LINKS)}"
        )
    raise ValueError(f"no SQL for the state table {table!r}")  # pragma: no cover


#: the tables whose implied state is SQL (policies: Python)
SQL_TABLES = (
    "consents",
    "objections",
    "memberships",
    "invitations",
    "account_settings",
    "account_features",
    "subject_aliases",
)


def _names(table: str) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(key columns, value columns, the touches' names for both)."""
    keys = STATE_KEYS[table]
    values = audit.value_columns(table)
    return keys, values, (*(f"k{i}" for i in range(len(keys))), *(f"v_{c}" for c in values))


def _last(table: str) -> str:
    """The last event per key: its seq, whether it sets the row, the row it sets.

    SQLite: with one ``max()`` in a grouped query, the other columns come from the row that
    has the maximum (one event sets one key once; a repeated category sets the same row)."""
    keys, _values, names = _names(table)
    k = ", ".join(names[: len(keys)])
    return (
        f"SELECT {', '.join(names)}, max(seq) AS last_seq, is_set "
        f"FROM ({_touches(table)}) GROUP BY {k}"
    )


# -- the check ----------------------------------------------------------------------------------

#: The kinds that remove a row, per table (the others only set rows).
_UNSET = {
    "memberships": ("member.removed",),
    "invitations": _INVITATION_UNSET,
    "subject_aliases": ("subject.unlinked",),
}
_OTHER = (
    "member.removed",
    "member.invited",
    "member.declined",
    "account.setting",
    "account.feature",
    *_LINKS,
)
#: The events of every kind but the consents' (few), read once for the checks of their tables.
_SMALL = (
    "small AS MATERIALIZED (SELECT seq, kind, subject, account, purpose, categories, status, "
    "at_us, actor, notice_version, policy_version, payload FROM events WHERE seq <= :head "
    "AND kind IN "
    f"{_in((*_OBJECTION, *_MEMBERSHIP_SET, *_OTHER))})"
)


def _check(table: str) -> str:
    """One row: the table's name, how many event rows disagree with it, and how many of its
    rows hold the values of the last event on their key (see the module's docstring)."""
    keys, values, _ = _names(table)
    on = " AND ".join(f"s.{c} = t.k{i}" for i, c in enumerate(keys))
    differ = " OR ".join(f"s.{c} IS NOT t.v_{c}" for c in values)
    unset = _UNSET.get(table)
    if unset is None:
        removed = "0"
    elif table == "subject_aliases":
        # a link not stored: fine when a later unlink removed it (few: read from ``small``)
        removed = (
            f"EXISTS (SELECT 1 FROM small u WHERE u.kind = 'subject.unlinked' AND u.seq > t.seq "
            f"AND {_ALIAS_OF.format(e='u')} = t.k0)"
        )
    else:
        # a set row that is not stored: fine when a later event removed it (looked up by
        # subject, through ix_events_subject_seq; only for such rows)
        later = (
            "SELECT 1 FROM events u WHERE {subject} AND u.seq > t.seq AND u.seq <= :head "
            f"AND u.kind IN {_in(unset)} AND coalesce(u.account, '') = t.k1"
        )
        indexed = later.format(subject="u.subject = t.k0")
        any_empty = later.format(subject="coalesce(u.subject, '') = ''")
        removed = f"CASE WHEN t.k0 <> '' THEN EXISTS ({indexed}) ELSE EXISTS ({any_empty}) END"
    source = "events" if table == "consents" else "small"
    return (
        f"SELECT '{table}', coalesce(sum(CASE WHEN t.irregular THEN 1 "
        f"WHEN s.seq IS NULL THEN t.is_set AND NOT ({removed}) "
        "WHEN s.seq < t.seq THEN 1 "
        f"WHEN s.seq = t.seq THEN NOT t.is_set OR {differ} ELSE 0 END), 0), "
        "count(DISTINCT CASE WHEN s.seq = t.seq AND t.is_set THEN s.rowid END) "
        f"FROM ({_touches(table, source)}) t LEFT JOIN {table} s ON {on}"
    )


#: One statement: per SQL table, (name, disagreeing event rows, stored rows matched).
CHECK = f"WITH {_SMALL} " + " UNION ALL ".join(_check(t) for t in SQL_TABLES)


def _python_events(cursor: Any, head_seq: int, where: str) -> Iterator[Any]:
    cursor.execute(
        f"SELECT {', '.join(audit.EVENT_COLUMNS)} FROM events "
        f"WHERE seq <= {int(head_seq)} AND ({where}) ORDER BY seq"
    )
    return audit.events_of(cursor)


def _python_part(
    cursor: Any, head_seq: int
) -> tuple[dict[tuple[str, ...], Any], dict[tuple[str, ...], int], list[tuple[int, str]]]:
    """The policies the chain implies (and the event behind each), and the unreadable
    events: the events the SQL leaves to the Python replay, replayed (as :func:`audit.replay`
    and :func:`audit.sources` do)."""
    unreadable: list[tuple[int, str]] = []
    policies: dict[tuple[str, ...], Any] = {}
    seqs: dict[tuple[str, ...], int] = {}
    columns = audit.value_columns("policies")
    events = _python_events(
        cursor, head_seq, f"kind IN {_in(_PYTHON_KINDS)} OR kind NOT IN {_in(_KNOWN)}"
    )
    for event in events:
        try:
            changes = state_changes(event)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            unreadable.append((event.seq, str(exc) or type(exc).__name__))
            continue
        for table, key, values in changes:
            assert table == "policies", table  # (what _PYTHON_KINDS change)
            policies[key] = None if values is None else key + tuple(map(values.get, columns))
            seqs[key] = event.seq
    return policies, seqs, unreadable


def audit_sql(conn: Connection, head_seq: int) -> audit.AuditResult | None:
    """The state tables against the events up to ``head_seq``, inside ``conn``'s transaction
    (SQLite). None: the SQL cannot decide (an irregular event): use the Python replay."""
    raw: Any = conn.connection.dbapi_connection
    params = {"head": head_seq}
    cursor = raw.cursor()
    try:
        policies, _seqs, unreadable = _python_part(cursor, head_seq)
        try:
            checked = cursor.execute(CHECK, params).fetchall()
        except sqlite3.OperationalError:  # e.g. categories that are not JSON
            return None
        counts = {
            t: int(cursor.execute(f"SELECT count(*) FROM {t}").fetchone()[0])
            for t in schema.STATE_TABLES
        }
        differ = sum(int(bad) + counts[t] - int(matched) for t, bad, matched in checked)
        stored_policies = set(cursor.execute(audit._select("policies")).fetchall())
        policies_same = stored_policies == {r for r in policies.values() if r is not None}
        n = int(
            cursor.execute("SELECT count(*) FROM events WHERE seq <= ?", (head_seq,)).fetchone()[0]
        )
        if differ == 0 and policies_same:
            rows = sum(counts.values())
            return audit.AuditResult(not unreadable, n, head_seq, rows, (), tuple(unreadable))
    finally:
        cursor.close()
    found = implied(conn, head_seq)
    if found is None:
        return None
    state, seqs, unreadable = found
    return audit.compare(conn, state, n, head_seq, unreadable, seqs=seqs)


def implied(
    conn: Connection, head_seq: int
) -> tuple[audit.Implied, dict[tuple[str, tuple[str, ...]], int], list[tuple[int, str]]] | None:
    """What the events up to ``head_seq`` imply, as :func:`audit.replay` gives it (per table,
    each key's row, or None when the last event on it removed it); the last event on each key;
    and the events that cannot be replayed. None: an irregular event (use the replay)."""
    raw: Any = conn.connection.dbapi_connection
    cursor = raw.cursor()
    try:
        policies, policy_seqs, unreadable = _python_part(cursor, head_seq)
        state: audit.Implied = {name: {} for name in schema.STATE_TABLES}
        seqs: dict[tuple[str, tuple[str, ...]], int] = {}
        state["policies"] = policies
        for key, seq in policy_seqs.items():
            seqs["policies", key] = seq
        params = {"head": head_seq}
        for table in SQL_TABLES:
            width = len(STATE_KEYS[table])
            rows = state[table]
            try:
                irregular = f"SELECT 1 FROM ({_touches(table)}) WHERE irregular LIMIT 1"
                if cursor.execute(irregular, params).fetchone() is not None:
                    return None
                cursor.execute(_last(table), params)
                while batch := cursor.fetchmany(20_000):
                    for row in batch:
                        *values, last_seq, is_set = row
                        key = tuple(values[:width])
                        rows[key] = tuple(values) if is_set else None
                        seqs[table, key] = last_seq
            except sqlite3.OperationalError:
                return None
        return state, seqs, unreadable
    finally:
        cursor.close()
