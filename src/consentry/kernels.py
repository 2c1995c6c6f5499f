"""The functions that decide under one compiled plan, written from the decision table.

For each compiled :class:`~consentry.decide.Plan`, the steps of
:data:`consentry.decision_table.STEPS` that are on for it are written out as Python source,
with nothing left in that cannot apply to the plan (the way :mod:`dataclasses` writes
``__init__``), and ``exec``'d into three functions:

* ``decide(state, subject, now_us) -> (reason, seq)``: one subject, with the event that
  decided (0: none) — ``Decider.check`` and the reason cache;
* ``codes(state, subjects, now_us) -> bytearray``: many subjects in one loop, reasons only —
  ``Decider.codes`` and the gate;
* ``timeless(state, subject) -> (reason, seq, turns_us)``: under a rule whose consents expire,
  the answer as the reason cache keeps it: an allowing consent's reason whether or not it has
  expired yet, and the instant it expires (``NEVER`` for any other answer).

The source depends only on the plan's *shape* (which steps and answers are on, how many record
keys it looks up), so it is compiled once per shape; each plan then gets its own functions,
with its values (accounts, record keys, times) as closure variables. ``source(plan)`` shows
what a plan runs.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Collection, Iterable
from typing import TYPE_CHECKING, Any, NamedTuple

from .decision_table import PLAN_VALUES, READS, STEPS, Answer, Step, answers_on, steps_on
from .reasons import R_EXPIRED, REASONS
from .state import RECORD_FIELDS

if TYPE_CHECKING:
    from .decide import Plan
    from .state import State

#: The instant an answer that never turns turns (the largest int64: reason caches keep it).
NEVER = (1 << 63) - 1

Decide = Callable[["State", str, int], tuple[int, int]]
Codes = Callable[["State", Collection[str], int], bytearray]
Timeless = Callable[["State", str], tuple[int, int, int]]


class Kernels(NamedTuple):
    """The functions made for one plan (see the module's docstring)."""

    decide: Decide
    codes: Codes
    #: None unless the plan's consents expire.
    timeless: Timeless | None


class _Shape(NamedTuple):
    """What the generated source depends on."""

    #: (index in STEPS, indexes of its answers that are on) for each step on.
    steps: tuple[tuple[int, tuple[int, ...]], ...]
    expiring: bool
    #: How many record keys (``pair_ids``) a record lookup tries.
    keys: int


def make_kernels(plan: Plan, steps: tuple[int, ...]) -> Kernels:
    """The deciding functions for ``plan``, whose steps on are ``steps`` (``steps_on``)."""
    shape = _shape(plan, steps)
    factory, names = _factory(shape)
    values = [_value(plan, name) for name in names]
    decide, codes, timeless = factory(*values)
    return Kernels(decide, codes, timeless)


def source(plan: Plan) -> str:
    """The Python source of ``plan``'s functions (to read; what ``make_kernels`` runs)."""
    return _source(_shape(plan, steps_on(plan)))[0]


def _shape(plan: Plan, steps: tuple[int, ...]) -> _Shape:
    on = tuple((i, answers_on(STEPS[i], plan)) for i in steps)
    return _Shape(on, plan.expiring, len(plan.pair_ids))


def _value(plan: Plan, name: str) -> Any:
    if name.startswith("key_"):
        return plan.pair_ids[int(name[4:])]
    return PLAN_VALUES[name](plan)


@functools.cache
def _factory(shape: _Shape) -> tuple[Callable[..., tuple[Any, Any, Any]], tuple[str, ...]]:
    text, names = _source(shape)
    namespace: dict[str, Any] = {"NEVER": NEVER}
    exec(compile(text, f"<decision kernels {shape}>", "exec"), namespace)
    return namespace["make"], names


def _source(shape: _Shape) -> tuple[str, tuple[str, ...]]:
    """The factory ``make(<plan values>) -> (decide, codes, timeless)`` for a shape, and the
    names of the plan values it takes."""
    steps = [(STEPS[i], tuple(STEPS[i].answers[a] for a in on)) for i, on in shape.steps]
    writer = _Writer(steps, shape)
    bodies = [writer.decide(), writer.codes()]
    if shape.expiring:
        bodies.append(writer.timeless())
    names = writer.plan_names()
    lines = [f"def make({', '.join(names)}):"]
    for body in bodies:
        lines += ["    " + line if line else "" for line in body]
    timeless = "timeless" if shape.expiring else "None"
    lines.append(f"    return decide, codes, {timeless}")
    return "\n".join(lines) + "\n", names


def _words(text: str) -> set[str]:
    """The names in some Python (comments left out)."""
    return set(re.findall(r"[A-Za-z_]\w*", re.sub(r"#.*", "", text)))


class _Writer:
    """Writes one shape's functions. ``answer`` differs per function: a single decision
    returns, a batch appends and moves to the next subject."""

    def __init__(self, steps: list[tuple[Step, tuple[Answer, ...]]], shape: _Shape) -> None:
        self.steps = steps
        self.expiring = shape.expiring
        self.keys = shape.keys
        self.used: set[str] = set()

    def plan_names(self) -> tuple[str, ...]:
        """The plan values the written code names, in a fixed order."""
        keys = [f"key_{i}" for i in range(self.keys) if f"key_{i}" in self.used]
        return (*[n for n in PLAN_VALUES if n in self.used], *keys)

    # -- the three functions --------------------------------------------------------------

    def decide(self) -> list[str]:
        def answer(reason: int, seq: str, turns: str | None) -> list[str]:
            return [f"return ({reason}, {seq})  # {REASONS[reason]}"]

        return [
            "def decide(state, subject, now_us):",
            *_indent(self._subject(answer, timed=True)),
        ]

    def codes(self) -> list[str]:
        def answer(reason: int, seq: str, turns: str | None) -> list[str]:
            return [f"put({reason})  # {REASONS[reason]}", "continue"]

        if len(self.steps) == 1 and not self.steps[0][0].reads:
            # One answer for everyone: no loop.
            reason = self.steps[0][1][-1].reason
            return [
                "def codes(state, subjects, now_us):",
                f"    return bytearray(b'\\x{reason:02x}' * len(subjects))  # {REASONS[reason]}",
            ]
        return [
            "def codes(state, subjects, now_us):",
            *_indent(self._setup()),
            "    out = bytearray()",
            "    put = out.append",
            "    for subject in subjects:",
            *_indent(self._subject(answer, timed=True, hoisted=True), 2),
            "    return out",
        ]

    def timeless(self) -> list[str]:
        def answer(reason: int, seq: str, turns: str | None) -> list[str]:
            until = "NEVER" if turns is None else turns
            return [f"return ({reason}, {seq}, {until})  # {REASONS[reason]}"]

        return [
            "def timeless(state, subject):",
            *_indent(self._subject(answer, timed=False)),
        ]

    # -- their parts ----------------------------------------------------------------------

    def _setup(self) -> list[str]:
        """Per batch: the state's tables the steps read, as bound ``get`` methods."""
        tables = dict.fromkeys(READS[r] for step, _ in self.steps for r in step.reads)
        return [f"{table} = state.{table}.get" for table in tables]

    def _subject(self, answer: _Answerer, *, timed: bool, hoisted: bool = False) -> list[str]:
        """One subject's steps, each answering through ``answer``; the last always does.
        ``timed``: the time decided at is known (``expired`` can be told); ``hoisted``: the
        tables' ``get`` methods are bound once (``_setup``) outside a loop over subjects."""

        def read(table: str) -> str:
            return f"{table}(subject)" if hoisted else f"state.{table}.get(subject)"

        lines: list[str] = []
        have_accounts = False
        for step, answers in self.steps:
            lines.append(f"# {step.name}: {step.checks}")
            if "accounts" in step.reads and not have_accounts:
                lines.append(f"accounts = {read('memberships')} or ()")
                have_accounts = True
            for kind in ("consent", "objection"):
                if kind in step.reads:
                    lines += self._most_specific(read(READS[kind]))
            lines += step.find
            body = list(step.unpack)
            outcome = self._answers(answers, answer, timed)
            if step.unpack == () and {"consent", "objection"} & set(step.reads):
                body += self._decode(outcome)
            body += outcome
            if step.found:
                lines += [f"if {step.found}:", *_indent(body)]
            else:
                lines += body
            self.used |= _words("\n".join([*step.find, step.found, *body]))
        return lines

    def _most_specific(self, records: str) -> list[str]:
        """``value``: the subject's record for the most specific of the plan's keys."""
        self.used |= {f"key_{i}" for i in range(self.keys)}
        lines = [f"records = {records}", "value = None", "if records:"]
        lines.append("    value = records.get(key_0)")
        for i in range(1, self.keys):
            lines += ["    if value is None:", f"        value = records.get(key_{i})"]
        return lines

    @staticmethod
    def _decode(body: list[str]) -> list[str]:
        """Read the record's fields the answers use (``RECORD_FIELDS``, the one decode)."""
        used = _words("\n".join(body))
        return [f"{name} = {expression}" for name, expression in RECORD_FIELDS if name in used]

    def _answers(self, answers: Iterable[Answer], answer: _Answerer, timed: bool) -> list[str]:
        lines: list[str] = []
        for a in answers:
            turns = None
            if a.given_at is not None and self.expiring:
                turns = f"{a.given_at} + expires"
                if timed:
                    expired = answer(R_EXPIRED, a.seq, turns)
                    lines += [f"if {turns} <= now_us:", *_indent(expired)]
            said = answer(a.reason, a.seq, turns)
            lines += [f"if {a.when}:", *_indent(said)] if a.when else said
        return lines


_Answerer = Callable[[int, str, "str | None"], list[str]]


def _indent(lines: Iterable[str], depth: int = 1) -> list[str]:
    pad = "    " * depth
    return [pad + line if line else line for line in lines]
