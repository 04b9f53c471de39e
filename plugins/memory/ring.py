"""Memory `ring`: a bounded ring buffer of recent records."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import torch

from amiagent.contracts import Memory, MemoryRecord
from amiagent.errors import ConfigError


class RingMemory(Memory):
    """Keeps the last `capacity` records; oldest are dropped first."""

    @dataclass(frozen=True)
    class Params:
        capacity: int = 10_000

        def __post_init__(self) -> None:
            if self.capacity < 1:
                raise ConfigError(f"memory.ring: capacity must be >= 1, got {self.capacity}")

    def __init__(self, params: Params | None = None):
        super().__init__(params)
        self._records: deque[MemoryRecord] = deque(maxlen=self.params.capacity)

    def write(self, record: MemoryRecord) -> None:
        self._records.append(record)

    def recent(self, n: int) -> list[MemoryRecord]:
        if n <= 0:
            return []
        return list(self._records)[-n:]

    def sample(self, n: int, generator: torch.Generator | None = None) -> list[MemoryRecord]:
        if not self._records or n <= 0:
            return []
        idx = torch.randint(len(self._records), (n,), generator=generator)
        return [self._records[i] for i in idx.tolist()]

    def __len__(self) -> int:
        return len(self._records)

    def close(self) -> None:
        super().close()
        self._records.clear()
