"""The upper levels' clock: they plan on their own thread and hand subgoals down without blocking level 0.

In real time, a cycle takes the subgoals of an upper-level step that has
finished, and starts the next step (on this cycle's observation) when none is
running; level 0 meanwhile plans toward the subgoal it has, so a slow level
costs subgoal freshness, never level 0's deadline. In lockstep each step is
waited for in its cycle, so an evaluation depends on its seed only.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging

from amiagent.contracts import Observation, Settings
from amiagent.errors import AmiagentError
from amiagent.planning.hierarchy import Hierarchy, Step

log = logging.getLogger(__name__)

CLOSE_GRACE_S = 5.0
"""How long close() waits for an upper-level plan in flight."""


class LevelClock:
    """Runs `hierarchy.step` off the cycle thread (real time) or within the cycle (lockstep)."""

    def __init__(self, hierarchy: Hierarchy):
        self.hierarchy = hierarchy
        self._executor = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="amiagent-levels")
        self._pending: cf.Future | None = None

    def start(self, settings: Settings, state_dim: int) -> None:
        """A new task: forget a step in flight (its subgoal was for the old one) and restart the levels."""
        self._settle()
        self.hierarchy.start(settings, state_dim)

    def step(self, obs: Observation, index: int, below_infeasible: bool, lockstep: bool) -> Step | None:
        """The step whose subgoals take effect this cycle (None: none finished), having started the next.

        `below_infeasible`: level 0 reports its current subgoal infeasible. An upper level that raised
        is reported here, on the cycle thread.
        """
        if lockstep:
            self._settle()
            return self.hierarchy.step(obs, index, below_infeasible)
        done = None
        if self._pending is not None and self._pending.done():
            future, self._pending = self._pending, None
            done = future.result()
        if self._pending is None:
            self._pending = self._executor.submit(self.hierarchy.step, obs, index, below_infeasible)
        return done

    def close(self) -> None:
        """Wait briefly for a step in flight, stop the thread and close the levels' modules."""
        try:
            self._settle()
        finally:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self.hierarchy.close()

    def _settle(self) -> None:
        if self._pending is None:
            return
        future, self._pending = self._pending, None
        try:
            future.result(timeout=CLOSE_GRACE_S)
        except cf.TimeoutError:
            raise AmiagentError(f"an upper planning level has been planning for over {CLOSE_GRACE_S:g} s: "
                                "it is hung or far too slow") from None
        except Exception:  # its subgoal is for a state of affairs that is gone
            log.warning("an upper level's plan failed", exc_info=True)
