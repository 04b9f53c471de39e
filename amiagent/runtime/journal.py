"""Short-term memory that outlives its process: every write journaled to a file, replayed on start.

`JournaledMemory(inner, Journal(path))` wraps any memory plugin. Each record
is appended to the journal as a length-prefixed `remember` message (msgpack,
validated when read back; no pickle) before the write returns, so a process
killed at any point loses nothing it acknowledged. A memory built over an
existing journal replays it first (`restored` says how many records). Writes
may carry a sequence number (`write_numbered`): one already journaled is
ignored, so a writer that re-sends after a lost acknowledgement never stores a
record twice. The journal is compacted from the memory's contents once it
holds twice as many records as the memory, so it stays bounded.
"""

from __future__ import annotations

import importlib
import logging
import os
import struct
from typing import Any

import torch

from amiagent.contracts import Memory, MemoryRecord, Settings
from amiagent.errors import MessageError
from amiagent.messages import decode, encode

log = logging.getLogger(__name__)

_LEN = struct.Struct("<I")


def _fields(record: MemoryRecord, seq: int | None) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "t": float(record.t),
        "state": record.state.detach().to(torch.float32).contiguous().numpy(),
        "action": record.action.detach().to(torch.float32).contiguous().numpy(),
        "cost": float(record.cost),
        "violation": float(record.violation),
    }
    if seq is not None:
        fields["seq"] = seq
    return fields


class Journal:
    """An append-only file of `remember` messages; every append reaches the kernel before it returns."""

    def __init__(self, path: str):
        importlib.import_module("amiagent.bus.remote")  # registers the `remember` message

        self.path = path
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        self._file = open(path, "ab", buffering=0)  # noqa: SIM115 - kept open for appends
        self.count = 0

    @staticmethod
    def _frame(record: MemoryRecord, seq: int | None) -> bytes:
        payload = encode("remember", _fields(record, seq))
        return _LEN.pack(len(payload)) + payload

    def append(self, record: MemoryRecord, seq: int | None = None) -> None:
        self._file.write(self._frame(record, seq))
        self.count += 1

    def read(self) -> tuple[list[MemoryRecord], int | None]:
        """The records in the file and the last sequence number; a torn last frame is ignored."""
        with open(self.path, "rb") as f:
            data = f.read()
        records, last_seq, pos = [], None, 0
        while pos + _LEN.size <= len(data):
            (n,) = _LEN.unpack_from(data, pos)
            if pos + _LEN.size + n > len(data):
                break  # killed mid-write: that record was never acknowledged
            try:
                msg = decode(data[pos + _LEN.size: pos + _LEN.size + n])
            except MessageError:
                log.warning("memory journal %s: unreadable frame at byte %d; the rest is dropped", self.path, pos)
                break
            records.append(MemoryRecord(float(msg["t"]), torch.tensor(msg["state"]), torch.tensor(msg["action"]),
                                        float(msg["cost"]), float(msg["violation"])))
            last_seq = msg.get("seq", last_seq)
            pos += _LEN.size + n
        self.count = len(records)
        return records, last_seq

    def compact(self, records: list[MemoryRecord], last_seq: int | None) -> None:
        """Rewrite the file with `records` only (atomically), the last one numbered `last_seq`."""
        tmp = self.path + ".tmp"
        with open(tmp, "wb") as f:
            for i, record in enumerate(records):
                f.write(self._frame(record, last_seq if i == len(records) - 1 else None))
        self._file.close()
        os.replace(tmp, self.path)
        self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115
        self.count = len(records)

    def close(self) -> None:
        self._file.close()


class JournaledMemory(Memory):
    """A memory module whose writes are journaled; built over a journal, it restores what it held."""

    def __init__(self, inner: Memory, journal: Journal, compact_every: int = 20_000):
        super().__init__()
        self.inner, self.journal, self.compact_every = inner, journal, compact_every
        records, self.last_seq = journal.read()
        for record in records:
            inner.write(record)
        self.restored = len(records)

    def write(self, record: MemoryRecord) -> None:
        self.write_numbered(record, None)

    def write_numbered(self, record: MemoryRecord, seq: int | None) -> None:
        """Store `record` unless `seq` was already stored (a re-sent write)."""
        if seq is not None and self.last_seq is not None and seq <= self.last_seq:
            return
        self.inner.write(record)  # a record the memory refuses is not journaled either
        self.journal.append(record, seq)
        if seq is not None:  # only once it is on disk
            self.last_seq = seq
        if self.journal.count > max(self.compact_every, 2 * len(self.inner)):
            self.journal.compact(self.inner.recent(len(self.inner)), self.last_seq)

    def recent(self, n: int) -> list[MemoryRecord]:
        return self.inner.recent(n)

    def sample(self, n: int, generator: torch.Generator | None = None) -> list[MemoryRecord]:
        return self.inner.sample(n, generator)

    def __len__(self) -> int:
        return len(self.inner)

    def apply(self, settings: Settings) -> None:
        self.inner.apply(settings)

    def activate(self) -> None:
        super().activate()
        self.inner.activate()

    def deactivate(self) -> None:
        super().deactivate()
        self.inner.deactivate()

    def close(self) -> None:
        super().close()
        self.inner.close()
        self.journal.close()
