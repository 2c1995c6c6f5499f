"""The service's checkpointer: signs a checkpoint of the transparency log every N events or T
seconds, in a thread of its own, so that no request ever waits for one."""

from __future__ import annotations

import logging
import threading
import time

from ..store import Store

log = logging.getLogger("consentry.checkpointer")

#: How often the thread looks at the ledger's head (one indexed read).
POLL_S = 1.0


class Checkpointer:
    """Makes checkpoints for one store while the service runs (see Settings)."""

    def __init__(self, store: Store, every_events: int, interval_s: int) -> None:
        self.store = store
        self.every_events = every_events
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_made = time.monotonic()
        #: The last error (kept for /readyz; a failing checkpointer does not stop the service).
        self.error: str | None = None

    @property
    def enabled(self) -> bool:
        return self.every_events > 0 or self.interval_s > 0

    def start(self) -> None:
        if not self.enabled or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="consentry-checkpointer")
        self._thread.daemon = True
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def due(self, head: int, covered: int, now: float) -> bool:
        """Whether a checkpoint is due with ``head`` events, ``covered`` in the last one."""
        new = head - covered
        if new <= 0:
            return False
        if self.every_events > 0 and new >= self.every_events:
            return True
        return self.interval_s > 0 and now - self._last_made >= self.interval_s

    def run_once(self) -> bool:
        """Make a checkpoint if one is due; return whether one was made."""
        if not self.store.is_initialised():
            return False
        head = self.store.head_seq()
        latest = self.store.latest_checkpoint()
        covered = latest.size if latest is not None else 0
        if not self.due(head, covered, time.monotonic()):
            return False
        self.store.checkpoint()
        self._last_made = time.monotonic()
        return True

    def _run(self) -> None:
        while not self._stop.wait(POLL_S):
            try:
                self.run_once()
                self.error = None
            except Exception as exc:  # keep serving; say so at /readyz and in the log
                self.error = f"{type(exc).__name__}: {exc}"
                log.warning("checkpoint failed: %s", self.error)
