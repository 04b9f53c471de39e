"""Which modules answer, what happened to them, and work that must wait for a cycle boundary.

Any thread may report (a supervisor finding a module process dead, a swap
being queued); the cycle thread takes what was reported at the start of each
cycle, so no cycle ever mixes old and new module state.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection

log = logging.getLogger(__name__)


class Health:
    """Modules down, a failure for good, events to report, and work queued for the next cycle boundary."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._down: set[str] = set()
        self._events: list[str] = []
        self._between: list[Callable[[], None]] = []
        self.failure: str | None = None
        """Set when a module is gone for good: every cycle halts from then on."""

    def module_down(self, names: Collection[str], why: str = "") -> None:
        """Stop calling the modules `names` (any thread): they are gone until `module_up`."""
        with self._lock:
            self._down.update(names)
            self._events.append(f"down {','.join(sorted(names))}" + (f": {why}" if why else ""))

    def module_up(self, names: Collection[str], note: str = "") -> None:
        """Call the modules `names` again (the cycle thread, from `between_cycles` work)."""
        with self._lock:
            self._down.difference_update(names)
            self._events.append(f"up {','.join(sorted(names))}" + (f": {note}" if note else ""))

    def fail(self, why: str) -> None:
        """A module is gone for good (any thread): every cycle from now on stops the body."""
        with self._lock:
            self.failure = why
            self._events.append(f"failed: {why}")

    @property
    def down(self) -> frozenset[str]:
        """Modules not being called right now."""
        with self._lock:
            return frozenset(self._down)

    def note(self, event: str) -> None:
        """Record an event; it is reported with the next cycle (any thread)."""
        with self._lock:
            self._events.append(event)

    def between_cycles(self, work: Callable[[], None]) -> None:
        """Run `work` on the cycle thread before the next cycle, with no plan in flight (any thread)."""
        with self._lock:
            self._between.append(work)

    def take_work(self) -> list[Callable[[], None]]:
        """The work queued for this cycle boundary (the cycle thread)."""
        with self._lock:
            work, self._between = self._between, []
        return work

    def take(self) -> tuple[frozenset[str], tuple[str, ...]]:
        """The modules down now and the events reported since the last cycle (the cycle thread)."""
        with self._lock:
            events, self._events = tuple(self._events), []
            return frozenset(self._down), events

    def run(self, work: list[Callable[[], None]]) -> None:
        """Carry out queued work; one failing item is logged and reported, and the rest still run."""
        for item in work:
            try:
                item()
            except Exception as exc:  # the cycle goes on with what it has
                log.exception("between-cycle work failed")
                self.note(f"error: {exc}")
