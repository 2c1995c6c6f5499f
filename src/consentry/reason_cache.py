"""Remembered answers: each subject's reason under one compiled plan, kept until it changes.

A compiled :class:`~consentry.decide.Plan` fixes everything about (purpose, category) that does
not depend on the subject. What is left depends only on that subject's own records (consents,
objections, memberships) and, under a rule with ``expires_after``, on the time, in one known
way: the consent that allows turns into ``expired`` at one instant. So a subject's answer stays
right until one of *their* records changes (the state numbers every such change,
:meth:`State.touch`), and its one time-dependent turn is kept with it (``flips``).

A :class:`ReasonCache` is one byte per subject (the reason index, ``UNSET`` until decided) and
one ``uint32`` (the deciding event's ``seq``, ``NO_SEQ`` until known), and under a rule that
expires, one ``int64`` (the instant an allowing consent expires), indexed by the state's subject
number, plus one last slot for every subject the state has never seen (they all get
the same answer: nothing about them is recorded). Before answering from it, a reader
:meth:`sync`\\ s: it forgets the subjects changed since it last looked. A batch is then a
dictionary lookup per subject and one NumPy gather; a single check is one lookup and two
array reads instead of walking the subject's memberships and records.

Thread safety: writers change the state under the store's lock and number the change *after*
changing the records. An answer decided by a reader is stored only if the cache has not yet
moved past the change count the reader saw before deciding: any change it may have missed is
then still ahead of the cache and the next :meth:`sync` forgets the answer.
"""

from __future__ import annotations

import threading
from array import array
from collections.abc import Sequence
from itertools import repeat
from typing import TYPE_CHECKING, Any

from .decision_table import EXPIRING_REASONS
from .kernels import NEVER
from .reasons import R_EXPIRED

if TYPE_CHECKING:
    from .decide import Plan
    from .state import State

#: The byte of a subject not decided yet (reason indexes are small).
UNSET = 255
#: The seq of an answer whose deciding event is not known yet (batches decide codes only).
NO_SEQ = 0xFFFFFFFF
# NEVER (imported): the flip instant of an answer that never turns.
__all__ = ["NEVER", "NEVER_SEEN", "NO_SEQ", "UNSET", "ReasonCache"]
#: Who the never-seen slot is decided for: the store refuses empty subject ids, so the
#: state can never hold records of this one.
NEVER_SEEN = ""


class ReasonCache:
    """Per-subject reasons (and deciding ``seq``) under one plan, forgotten when they change."""

    __slots__ = ("codes", "expiring", "flips", "lock", "plan", "pos", "seqs", "state")

    def __init__(self, state: State, plan: Plan) -> None:
        self.state = state
        self.plan = plan
        self.expiring = plan.expiring
        state.watch_subjects()
        #: Subject changes up to (not including) this number are reflected here.
        self.pos = state.changes
        self.lock = threading.Lock()
        self._reset(len(state.subject_names) + 1)

    def sync(self) -> None:
        """Forget the answers of subjects changed since the last look; make room for new
        subjects."""
        state = self.state
        with self.lock:
            base, touched = state.touched  # one consistent pair (see State.touched)
            if self.pos < base:
                # Changes were dropped before we looked: start over.
                self.pos = state.changes
                self._reset(len(state.subject_names) + 1)
                return
            changed = touched[self.pos - base :]
            self.pos += len(changed)
            # Read after ``changed``: a subject is numbered before its change is recorded.
            self._grow(len(state.subject_names) + 1)
            codes, seqs, flips = self.codes, self.seqs, self.flips
            for index in changed:
                codes[index] = UNSET
                seqs[index] = NO_SEQ
                if flips is not None:
                    flips[index] = NEVER

    def _reset(self, size: int) -> None:
        # New arrays rather than writes into the old: a reader may hold a view of those.
        self.codes = bytearray(b"\xff") * size
        self.seqs = array("I", [NO_SEQ]) * size
        self.flips = array("q", [NEVER]) * size if self.expiring else None

    def _grow(self, size: int) -> None:
        old = len(self.codes)
        if size <= old:
            return
        more = size - old
        # The last slot (the never-seen subjects) stays last.
        self.codes = self.codes[:-1] + bytearray(b"\xff") * more + self.codes[-1:]
        self.seqs = self.seqs[:-1] + array("I", [NO_SEQ]) * more + self.seqs[-1:]
        if self.flips is not None:
            self.flips = self.flips[:-1] + array("q", [NEVER]) * more + self.flips[-1:]

    def answer(self, index: int, subject: str, now_us: int) -> tuple[int, int]:
        """(reason index, seq) for the subject numbered ``index`` (-1: never seen), deciding
        and remembering it if it is not known. The caller has synced."""
        codes = self.codes
        if index >= len(codes) - 1:
            # Numbered after our last sync (a write raced this read): decide, don't keep.
            return self.plan.decide(self.state, subject, now_us)
        code = codes[index]
        if code != UNSET:
            seq = self.seqs[index]
            if seq != NO_SEQ:
                flips = self.flips
                if flips is not None and now_us >= flips[index]:
                    return R_EXPIRED, seq
                return code, seq
        seen = self.state.changes
        if index < 0:
            # Decide the slot of the never-seen subjects for none of them: if this one were
            # recorded meanwhile, its answer must not become everyone's.
            if NEVER_SEEN in self.state.subject_index:
                return self.plan.decide(self.state, subject, now_us)
            subject = NEVER_SEEN
        code, seq = self.plan.decide(self.state, subject, now_us)
        kept, flip = self._timeless(subject, code, seq)
        with self.lock:
            if self.pos <= seen and self.codes is codes:
                # The flip and seq before the code: a reader that sees the code finds them.
                if self.flips is not None:
                    self.flips[index] = flip
                self.seqs[index] = seq
                codes[index] = kept
        return code, seq

    def _timeless(self, subject: str, code: int, seq: int) -> tuple[int, int]:
        """The answer to keep for one decided at some time, and when it turns to expired."""
        timeless = self.plan.timeless
        if timeless is None or code not in EXPIRING_REASONS:
            return code, NEVER
        kept, kept_seq, turns = timeless(self.state, subject)
        if kept_seq != seq:
            # A write replaced the deciding record since it was decided; the write numbered
            # the subject's change, so the next sync forgets whatever is kept here.
            return code, NEVER
        return kept, turns

    def codes_for(self, subjects: Sequence[str], now_us: int) -> bytes:
        """One reason index per subject: remembered ones gathered, the rest decided (each
        distinct subject once) and remembered. The caller has synced."""
        import numpy as np

        state = self.state
        count = len(subjects)
        codes, flips = self.codes, self.flips  # one set for the batch, even if a sync swaps
        limit = len(codes) - 1  # the never-seen slot; numbers from here on are too new
        index = np.fromiter(
            map(state.subject_index.get, subjects, repeat(-1)), dtype=np.int64, count=count
        )
        newer = None
        if count and int(index.max()) >= limit:
            # Subjects numbered after our last sync (a write raced this read): decided
            # directly below, not kept.
            newer = np.flatnonzero(index >= limit)
            index[newer] = -1
        out = np.frombuffer(codes, dtype=np.uint8)[index]
        if newer is not None:
            out[newer] = UNSET
        missing = np.flatnonzero(out == UNSET)
        if flips is not None:
            # Kept allowing answers whose consent has expired by now.
            out[np.frombuffer(flips, dtype=np.int64)[index] <= now_us] = R_EXPIRED
        if missing.size:
            self._fill(subjects, index, out, missing, codes, flips, now_us)
        if newer is not None:
            out[newer] = np.frombuffer(
                bytes(self.plan.codes(state, [subjects[p] for p in newer.tolist()], now_us)),
                dtype=np.uint8,
            )
        return out.tobytes()

    def _fill(
        self,
        subjects: Sequence[str],
        index: Any,
        out: Any,
        missing: Any,
        codes: bytearray,
        flips: array[int] | None,
        now_us: int,
    ) -> None:
        """Decide the subjects not remembered, write them into ``out`` (as kept: timeless),
        and keep them."""
        import numpy as np

        state, plan = self.state, self.plan
        seen = state.changes
        # Each distinct subject once (its number, and a position where it is asked about).
        # The never-seen slot is decided for NEVER_SEEN (see ``answer``), unless that one is
        # recorded: then for whichever never-seen subject was asked, and nothing is kept.
        keep = NEVER_SEEN not in state.subject_index
        where, at = np.unique(index[missing], return_index=True)
        names = [
            subjects[p] if n >= 0 or not keep else NEVER_SEEN
            for n, p in zip(where.tolist(), missing[at].tolist(), strict=True)
        ]
        turns: list[int] | None = None
        if flips is None:
            # Codes only (the batch kernel); their seqs are found when a check needs them.
            now_codes = kept = bytes(plan.codes(state, names, now_us))
        else:
            decided = [plan.decide(state, n, now_us) for n in names]
            timeless = [self._timeless(n, c, q) for n, (c, q) in zip(names, decided, strict=True)]
            now_codes = bytes(c for c, _ in decided)
            kept = bytes(c for c, _ in timeless)
            turns = [flip for _, flip in timeless]
        answers = np.zeros(len(codes), dtype=np.uint8)
        answers[where] = np.frombuffer(now_codes, dtype=np.uint8)
        out[missing] = answers[index[missing]]
        if keep:
            with self.lock:
                if self.pos <= seen and self.codes is codes:
                    if flips is not None and turns is not None:
                        np.frombuffer(flips, dtype=np.int64)[where] = turns
                    np.frombuffer(codes, dtype=np.uint8)[where] = np.frombuffer(
                        kept, dtype=np.uint8
                    )
