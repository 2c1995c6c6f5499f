"""The transparency log over the ledger: its Merkle tree, checkpoints, proofs and audits.

Each event is a leaf: ``leaf_hash(canonical JSON of the event body)`` — the same bytes the hash
chain covers, in which the personal fields appear only through their salted commitment (see
``events.personal_commitment``), so the tree stays verifiable after a person's identifiers are
erased.

The tree's complete subtrees are stored (``tlog_nodes``) by :meth:`TransparencyLog.extend`,
which the checkpointer runs, never the append path. Proofs read the stored nodes; an audit
(:meth:`TransparencyLog.audit`) recomputes every leaf from the events and trusts nothing stored
except what a signed checkpoint vouches for.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, func, select
from sqlalchemy.dialects import postgresql, sqlite

from ..canonical import canonical_json
from ..errors import InvalidInput
from . import schema
from .checkpoint import Checkpoint, NoteSigner, parse_checkpoint, parse_note
from .engine import WRITE
from .events import Event
from .merkle import (
    CompactRange,
    ProofError,
    SubtreeHash,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_of,
    split_point,
    verify_consistency,
)

_BATCH = 20_000


def event_leaf(event: Event) -> bytes:
    """The leaf hash of an event."""
    return leaf_hash(canonical_json(event.body()))


@dataclass
class Audit:
    """What an audit of the log against a checkpoint found."""

    ok: bool
    checkpoint_size: int
    tree_size: int
    problem: str | None = None
    seq: int | None = None
    event_id: str | None = None
    consistency_proof: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class TransparencyLog:
    """The Merkle tree of one ledger (see the module docstring)."""

    def __init__(self, ledger: Any) -> None:
        self.ledger = ledger
        self.engine = ledger.engine

    # -- the stored tree ----------------------------------------------------------------------

    def size(self, conn: Connection | None = None) -> int:
        """How many leaves the stored tree holds."""
        query = select(func.max(schema.tlog_nodes.c.idx)).where(schema.tlog_nodes.c.level == 0)
        if conn is None:
            with self.engine.connect() as own:
                top = own.execute(query).scalar()
        else:
            top = conn.execute(query).scalar()
        return 0 if top is None else int(top) + 1

    def extend(self, upto: int | None = None) -> int:
        """Add the events not yet in the stored tree (up to seq ``upto``); return its size.

        The hashing runs without holding the write lock (appends go on meanwhile); only the
        insert of the new nodes takes it, briefly. Nodes are a function of the events, so two
        extenders racing write the same rows and the second one's are ignored.
        """
        size = self.size()
        head = self.ledger.head()[0]
        target = head if upto is None else min(upto, head)
        while size < target:
            batch_end = min(size + _BATCH, target)
            leaves = [leaf_hash(body) for _, _, body in self.ledger.leaf_data(size, batch_end)]
            with self.engine.connect() as conn:
                if len(leaves) != batch_end - size:
                    raise InvalidInput(
                        f"the ledger has gaps between #{size + 1} and #{batch_end}",
                        hint="run `consentry ledger verify`",
                    )
                nodes = self._new_nodes(conn, size, leaves)
            with self.engine.connect().execution_options(**WRITE) as conn, conn.begin():
                for level, level_nodes in enumerate(nodes):
                    self._insert(conn, level, level_nodes)
            size = batch_end
        return max(size, 0)

    def _new_nodes(
        self, conn: Connection, start: int, leaves: Sequence[bytes]
    ) -> list[dict[int, bytes]]:
        """The nodes that leaves ``start..`` add, level by level (level 0: the leaves)."""
        out: list[dict[int, bytes]] = []
        level_nodes = dict(enumerate(leaves, start))
        level = 0
        while level_nodes:
            out.append(dict(level_nodes))
            lo = min(level_nodes)
            if lo & 1:  # its left sibling is already stored
                level_nodes[lo - 1] = self._node(conn, level, lo - 1)
            parents: dict[int, bytes] = {}
            for idx in sorted(level_nodes):
                if idx & 1 == 0 and idx + 1 in level_nodes:
                    parents[idx >> 1] = node_hash(level_nodes[idx], level_nodes[idx + 1])
            level_nodes = parents
            level += 1
        return out

    def _insert(self, conn: Connection, level: int, nodes: dict[int, bytes]) -> None:
        # The driver's executemany with plain tuples: SQLAlchemy's per-row parameter handling
        # cost more than hashing the events did.
        mark = "%s" if self.ledger.backend == "postgresql" else "?"
        conn.exec_driver_sql(
            f"INSERT INTO tlog_nodes (level, idx, hash) VALUES ({mark}, {mark}, {mark}) "
            "ON CONFLICT DO NOTHING",
            [(level, i, h) for i, h in nodes.items()],
        )

    def _node(self, conn: Connection, level: int, idx: int) -> bytes:
        mark = "%s" if self.ledger.backend == "postgresql" else "?"
        found = conn.exec_driver_sql(
            f"SELECT hash FROM tlog_nodes WHERE level = {mark} AND idx = {mark}", (level, idx)
        ).scalar()
        if found is None:
            raise InvalidInput(
                f"the log's tree has no node {level}/{idx}",
                hint="make a checkpoint (`consentry ledger checkpoint`) to extend the tree",
            )
        return bytes(found)

    def subtree(self, start: int, end: int) -> bytes:
        """The hash of leaves ``[start, end)`` from the stored nodes."""
        with self.engine.connect() as conn:
            return self._stored(conn)(start, end)

    def _stored(self, conn: Connection) -> SubtreeHash:
        """A ``subtree`` callable over the stored nodes, on one connection (a proof reads
        a few dozen nodes: one checkout, not one each)."""
        cache: dict[tuple[int, int], bytes] = {}

        def subtree(start: int, end: int) -> bytes:
            found = cache.get((start, end))
            if found is None:
                n = end - start
                if n & (n - 1) == 0 and start % n == 0:
                    found = self._node(conn, n.bit_length() - 1, start // n)
                else:
                    k = split_point(n)
                    found = node_hash(subtree(start, start + k), subtree(start + k, end))
                cache[(start, end)] = found
            return found

        return subtree

    def root(self, size: int) -> bytes:
        """The root hash of the first ``size`` leaves."""
        if size == 0:
            return root_of([])
        return self.subtree(0, size)

    def inclusion(self, index: int, size: int) -> list[bytes]:
        """The audit path of leaf ``index`` (seq - 1) in the tree of ``size`` leaves."""
        with self.engine.connect() as conn:
            return inclusion_proof(index, size, self._stored(conn))

    def consistency(self, old_size: int, new_size: int) -> list[bytes]:
        """The RFC 9162 consistency proof from ``old_size`` leaves to ``new_size``."""
        with self.engine.connect() as conn:
            return consistency_proof(old_size, new_size, self._stored(conn))

    def leaves(self, start: int, end: int) -> list[bytes]:
        """Stored leaf hashes ``[start, end)`` (as stored: an audit does not trust them)."""
        n = schema.tlog_nodes.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(n.idx, n.hash)
                .where(n.level == 0, n.idx >= start, n.idx < end)
                .order_by(n.idx)
            ).all()
        return [bytes(h) for _, h in rows]

    # -- checkpoints --------------------------------------------------------------------------

    def checkpoint(
        self, signer: NoteSigner, at: str, witness_dir: Path | None = None
    ) -> Checkpoint:
        """Extend the tree to the ledger's head and sign a checkpoint of it (or return the one
        already made at that size); append it to ``witness_dir`` if given."""
        size = self.extend()
        c = schema.checkpoints.c
        with self.engine.connect() as conn:
            row = conn.execute(select(schema.checkpoints).where(c.size == size)).first()
        if row is not None:
            made = parse_checkpoint(parse_note(row.note)[0], row.note)
        else:
            draft = Checkpoint(signer.name, size, self.root(size), at)
            note = signer.sign(draft.text())
            made = Checkpoint(draft.origin, size, draft.root, at, note)
            with self.engine.connect().execution_options(**WRITE) as conn, conn.begin():
                insert_fn = (
                    postgresql.insert if self.ledger.backend == "postgresql" else sqlite.insert
                )
                conn.execute(
                    insert_fn(schema.checkpoints)
                    .values(size=size, root=made.root_hex, at=at, note=note)
                    .on_conflict_do_nothing()
                )
                stored = conn.execute(select(schema.checkpoints.c.note).where(c.size == size))
                note = stored.scalar_one()
            made = parse_checkpoint(parse_note(note)[0], note)
        if witness_dir is not None:
            write_witness(witness_dir, made, self)
        return made

    def latest_checkpoint(self) -> Checkpoint | None:
        c = schema.checkpoints.c
        with self.engine.connect() as conn:
            row = conn.execute(select(schema.checkpoints).order_by(c.size.desc()).limit(1)).first()
        if row is None:
            return None
        return parse_checkpoint(parse_note(row.note)[0], row.note)

    def checkpoint_at_least(self, size: int) -> Checkpoint | None:
        """The smallest stored checkpoint covering ``size`` leaves."""
        c = schema.checkpoints.c
        with self.engine.connect() as conn:
            row = conn.execute(
                select(schema.checkpoints).where(c.size >= size).order_by(c.size).limit(1)
            ).first()
        if row is None:
            return None
        return parse_checkpoint(parse_note(row.note)[0], row.note)

    # -- audit ------------------------------------------------------------------------------

    def audit(
        self,
        checkpoint: Checkpoint,
        witness_dir: Path | None = None,
        recomputed_leaves: Sequence[tuple[int, str, bytes]] | None = None,
    ) -> Audit:
        """Is today's ledger an append-only extension of ``checkpoint`` (already verified)?

        Recomputes every leaf from the events (nothing stored is trusted), compares the root at
        the checkpoint's size, and proves consistency to today's tree with RFC 9162. When the
        ledger no longer extends the checkpoint, names the first event that differs from what
        the checkpoint covered, using a copy of the leaves that reproduces the signed root (the
        witness location's leaf files, or the stored tree if it still does).

        ``recomputed_leaves``: (seq, id, leaf hash) of every event row in seq order, by the
        caller (``ledger verify`` does it in its pass over the events); read here otherwise.
        """
        events: list[tuple[int, str]] = []
        compact = CompactRange()
        leaves: list[bytes] = []
        old_root: bytes | None = None
        recomputed: list[bytes] = []
        source = (
            recomputed_leaves
            if recomputed_leaves is not None
            else ((seq, i, leaf_hash(body)) for seq, i, body in self.ledger.leaf_data())
        )
        for seq, event_id, leaf in source:
            if seq != compact.size + 1:
                break  # a gap: the chain check names it; the leaves stop here
            compact.append(leaf)
            recomputed.append(leaf)
            if compact.size <= checkpoint.size:
                leaves.append(leaf)
                events.append((seq, event_id))
            if compact.size == checkpoint.size:
                old_root = compact.root()
        size = compact.size
        if size < checkpoint.size:
            first = self._first_difference(checkpoint, leaves, witness_dir)
            seq = first + 1 if first is not None else size + 1
            return Audit(
                False,
                checkpoint.size,
                size,
                f"the ledger holds {size} events in order but the checkpoint of "
                f"{checkpoint.time or 'an earlier time'} covered {checkpoint.size}: events were "
                f"removed (the first missing or changed is #{seq})",
                seq,
                events[first][1] if first is not None and first < len(events) else None,
            )
        if old_root != checkpoint.root:
            first = self._first_difference(checkpoint, leaves, witness_dir)
            if first is None:
                return Audit(
                    False,
                    checkpoint.size,
                    size,
                    f"events #1 to #{checkpoint.size} no longer hash to the checkpoint's root: "
                    "the ledger was rewritten before that point (no trusted copy of the leaves "
                    "is at hand to name the event: keep the witness location's leaf files)",
                )
            seq, event_id = events[first]
            return Audit(
                False,
                checkpoint.size,
                size,
                f"event #{seq} ({event_id}) is not the event the checkpoint of "
                f"{checkpoint.time or 'an earlier time'} covered: the ledger was rewritten from "
                "there (edited, inserted, reordered or re-hashed events)",
                seq,
                event_id,
            )
        proof: list[bytes] = []
        if 0 < checkpoint.size < size:
            # Show the append-only property as a witness would check it (RFC 9162 §2.1.4).
            from .merkle import subtree_from_list

            all_leaves = recomputed  # every leaf of the tree of ``size``
            proof = consistency_proof(checkpoint.size, size, subtree_from_list(all_leaves))
            try:
                verify_consistency(checkpoint.size, checkpoint.root, size, compact.root(), proof)
            except ProofError as exc:  # pragma: no cover - the roots matched above
                return Audit(False, checkpoint.size, size, str(exc))
        return Audit(True, checkpoint.size, size, consistency_proof=[p.hex() for p in proof])

    def _first_difference(
        self, checkpoint: Checkpoint, leaves: list[bytes], witness_dir: Path | None
    ) -> int | None:
        """The index of the first recomputed leaf that differs from a trusted copy of the
        checkpoint's leaves (None without a trusted copy)."""
        for trusted in self._trusted_leaves(checkpoint, witness_dir):
            for i, leaf in enumerate(trusted):
                if i >= len(leaves) or leaves[i] != leaf:
                    return i
            return len(trusted)
        return None

    def _trusted_leaves(
        self, checkpoint: Checkpoint, witness_dir: Path | None
    ) -> Iterator[list[bytes]]:
        """Copies of the checkpoint's leaves whose root is the signed one (so, authentic)."""
        if witness_dir is not None:
            copy = read_witness_leaves(witness_dir, checkpoint.size)
            if copy is not None and root_of(copy) == checkpoint.root:
                yield copy
        stored = self.leaves(0, checkpoint.size)
        if len(stored) == checkpoint.size and root_of(stored) == checkpoint.root:
            yield stored


# -- the witness location ---------------------------------------------------------------------

_CHECKPOINT_FILE = "checkpoint-{size:012d}.txt"
_LEAVES_FILE = "leaves-{start:012d}-{end:012d}.bin"


def write_witness(directory: Path, checkpoint: Checkpoint, log: TransparencyLog) -> Path:
    """Append a checkpoint, and the leaf hashes it adds to the previous one, to the witness
    directory. Files are created once and never rewritten (``O_EXCL``)."""
    directory.mkdir(parents=True, exist_ok=True)
    have = read_witness_sizes(directory)
    start = max((s for s in have if s <= checkpoint.size), default=0)
    if checkpoint.size > start:
        leaves = log.leaves(start, checkpoint.size)
        _create(directory / _LEAVES_FILE.format(start=start, end=checkpoint.size), b"".join(leaves))
    target = directory / _CHECKPOINT_FILE.format(size=checkpoint.size)
    _create(target, checkpoint.note.encode("utf-8"))
    return target


def _create(path: Path, data: bytes) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return  # already there: the witness location is append-only
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def read_witness_sizes(directory: Path) -> list[int]:
    """Tree sizes of the checkpoints in a witness directory, ascending."""
    sizes = []
    for path in directory.glob("checkpoint-*.txt"):
        stem = path.stem.removeprefix("checkpoint-")
        if stem.isdigit():
            sizes.append(int(stem))
    return sorted(sizes)


def read_witness_leaves(directory: Path, size: int) -> list[bytes] | None:
    """The leaf hashes ``[0, size)`` from a witness directory's leaf files, if it has them."""
    ranges: dict[int, tuple[int, Path]] = {}
    for path in directory.glob("leaves-*.bin"):
        parts = path.stem.split("-")
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            ranges[int(parts[1])] = (int(parts[2]), path)
    leaves: list[bytes] = []
    while len(leaves) < size:
        found = ranges.get(len(leaves))
        if found is None:
            return None
        end, path = found
        data = path.read_bytes()
        if len(data) != 32 * (end - len(leaves)):
            return None
        leaves.extend(data[i : i + 32] for i in range(0, len(data), 32))
    return leaves[:size]
