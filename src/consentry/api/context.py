"""What one worker process holds: its Store, its decision snapshot, keys, sessions, metrics."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from starlette.concurrency import run_in_threadpool

from ..decide import Decider
from ..errors import ConsentryError, NotFound
from ..store import Store
from .auth import Authenticator, Sessions
from .checkpointer import Checkpointer
from .keys import ApiKeys
from .metrics import Metrics
from .settings import Settings

T = TypeVar("T")


class Snapshot:
    """Decisions from this worker's in-memory state, caught up with the ledger by ``seq``.

    Freshness: a decision sees every write this worker made (the Store catches up after its
    own appends) and every write any worker made more than ``max_staleness_ms`` ago (the
    first decision after that interval reads the events after the snapshot's ``seq``; one
    indexed query, usually empty). A caller that has just written through another worker can
    pass ``min_seq`` (the ``seq`` its write returned) to be sure its write is seen.
    """

    def __init__(self, store: Store, max_staleness_ms: int) -> None:
        self.store = store
        self.max_age = max_staleness_ms / 1000
        self._checked = 0.0
        self._decider: Decider | None = None
        # Deciding reads the Store's in-memory state while a write applied by another thread
        # may be changing it; the Store's own lock is the one its catch-up holds.
        self.lock: threading.RLock = store.lock

    def decider(self, min_seq: int | None = None) -> Decider:
        """The decider, caught up first when its last catch-up is older than the allowed
        staleness or behind ``min_seq`` (reads the database: call it from a thread)."""
        now = time.monotonic()
        decider = self._decider
        if decider is None:
            decider = self._load()
        elif now - self._checked >= self.max_age:
            self._checked = now
            self._catch_up(decider)
        if min_seq is not None and decider.state.seq < min_seq:
            self._checked = now
            self.store.state()
            if decider.state.seq < min_seq:
                raise NotFound(
                    f"the ledger has no event #{min_seq} yet (its head is #{decider.state.seq})",
                    hint="pass the seq a write returned as min_seq",
                    field="min_seq",
                )
        return decider

    def _load(self) -> Decider:
        self._checked = time.monotonic()
        self.store.state()  # loads the snapshot, or catches up one the Store already holds
        decider = self.store.decider(refresh=False)
        # The snapshot is most of the heap and lives as long as the worker: keep the garbage
        # collector from walking it on every full collection (pauses that grow with the
        # number of records and would land on some unlucky request).
        gc.collect()
        gc.freeze()
        self._decider = decider
        return decider

    async def adecider(self, min_seq: int | None = None) -> Decider:
        """:meth:`decider` for the event loop. Only the request that finds the snapshot due
        waits for the catch-up (in a thread); requests meanwhile use the snapshot as it is."""
        decider = self._decider
        if decider is None or (min_seq is not None and decider.state.seq < min_seq):
            return await run_in_threadpool(self.decider, min_seq)
        now = time.monotonic()
        if now - self._checked >= self.max_age:
            self._checked = now
            await run_in_threadpool(self._catch_up, decider)
        return decider

    def _catch_up(self, decider: Decider) -> None:
        """Catch up only when the ledger has moved: reading its head takes no lock, so the
        decisions running meanwhile are not held up by a catch-up that finds nothing new."""
        if self.store.head_seq() > decider.state.seq:
            self.store.state()

    async def arun_locked(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` (pure computation, microseconds) under the lock, on the event loop.

        When a thread holds the lock (a catch-up applying new events, a batch), wait for it
        without blocking the loop. Handing the work to a thread instead would make the
        threads contend for the lock with each other and with the loop, and every request
        would end up paying for a thread hop."""
        lock = self.lock
        while not lock.acquire(blocking=False):
            await asyncio.sleep(0.0002)
        try:
            return fn()
        finally:
            lock.release()

    def seq(self) -> int | None:
        return self._decider.state.seq if self._decider is not None else None


class Service:
    """Everything the routers need, built once per app (one per worker process)."""

    def __init__(self, settings: Settings, store: Store | None = None) -> None:
        self.settings = settings
        self.store = store or Store(settings.database_url)
        self.keys = ApiKeys(self.store, cache_s=settings.api_key_cache_s)
        self.auth = Authenticator(settings, self.keys)
        self.snapshot = Snapshot(self.store, settings.decision_max_staleness_ms)
        self.metrics = Metrics(self._ledger_head, self.snapshot.seq)
        self._sessions: Sessions | None = None
        self._sessions_lock = threading.Lock()
        self.checkpointer = Checkpointer(
            self.store, settings.checkpoint_every_events, settings.checkpoint_interval_s
        )

    def _ledger_head(self) -> int | None:
        try:
            return self.store.head_seq()
        except ConsentryError:
            return None
        except Exception:  # a database that does not answer: leave the gauge out
            return None

    @property
    def sessions(self) -> Sessions:
        """Session signing; its key lives in the store, so all workers share it."""
        if self._sessions is None:
            with self._sessions_lock:
                if self._sessions is None:
                    self._sessions = Sessions(
                        self.store.web_session_key(),
                        self.settings.session_max_age_s,
                        self.store,
                        cookie=self.settings.session_cookie,
                    )
        return self._sessions

    def close(self) -> None:
        self.store.close()
