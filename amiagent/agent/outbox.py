"""Memory records, written in order: now, or once the memory module answers again."""

from __future__ import annotations

import logging
from collections import deque

from amiagent.contracts import Memory, MemoryRecord
from amiagent.errors import UnwrittenRecords

log = logging.getLogger(__name__)

UNWRITTEN_MAX = 10_000
"""Memory records kept while the memory module is down, written when it is back."""
UNWRITTEN_PER_CYCLE = 32
"""Kept records written per cycle once memory is back, so catching up never stalls the cycle."""


class Outbox:
    """The cycle's records on their way to memory; none is lost while memory is away (up to UNWRITTEN_MAX)."""

    def __init__(self) -> None:
        self.unwritten: deque[MemoryRecord] = deque(maxlen=UNWRITTEN_MAX)

    def post(self, memory: Memory, record: MemoryRecord, memory_down: bool) -> None:
        """Queue `record` and write what is queued, unless memory is down (then it waits)."""
        self.unwritten.append(record)
        if memory_down:
            return
        try:
            self.flush(memory, UNWRITTEN_PER_CYCLE)
        except Exception as exc:
            log.warning("memory write failed (%s); %d record(s) wait until memory answers again", exc,
                        len(self.unwritten))

    def flush(self, memory: Memory, limit: int | None = None) -> None:
        """Write kept records in order; at most `limit` of them (the rest wait for later cycles)."""
        count = 0
        while self.unwritten and (limit is None or count < limit):
            count += 1
            record = self.unwritten.popleft()
            try:
                memory.write(record)
            except Exception as exc:  # keep it, and any earlier write the memory hands back, in order
                handed_back = exc.records if isinstance(exc, UnwrittenRecords) else []
                self.unwritten.extendleft([record, *reversed(handed_back)])
                raise
