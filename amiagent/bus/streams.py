"""Streams on the bus: `Publisher` (PUB) and `Subscriber` (SUB), validated like every bus message."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

import zmq

from amiagent.bus.sockets import _bound_endpoint, _recv_frames, _remove_ipc, _send_frames, default_context
from amiagent.errors import BusError, MessageError
from amiagent.messages import MAX_FRAME_BYTES, Message, decode, encode

logger = logging.getLogger(__name__)


class Publisher:
    """Publishes messages on a PUB socket; `bind=True` binds `endpoint`, else connects.

    Thread-safe (a lock around the socket). PUB never blocks: messages for slow
    or absent subscribers are dropped by zmq.
    """

    def __init__(self, endpoint: str, *, bind: bool = True, context: zmq.Context | None = None):
        self._lock = threading.Lock()
        self._sock: zmq.Socket | None = (context or default_context()).socket(zmq.PUB)
        self._sock.linger = 0
        self._tmpdir = None
        self._bound = bind
        try:
            if bind:
                self.endpoint, self._tmpdir = _bound_endpoint(self._sock, endpoint)
            else:
                self._sock.connect(endpoint)
                self.endpoint = endpoint
        except (BusError, zmq.ZMQError) as e:
            self._sock.close(0)
            raise BusError(f"publisher on {endpoint}: {e}") from e

    def publish(self, topic: str, kind: str, fields: Mapping[str, Any] | None = None) -> None:
        """Validate, encode and send one message on `topic`."""
        payload = encode(kind, fields)
        with self._lock:
            if self._sock is None:
                raise BusError("publisher is closed")
            _send_frames(self._sock, [topic.encode(), payload])

    def close(self) -> None:
        """Close the socket (linger 0) and remove its ipc file. Idempotent."""
        with self._lock:
            if self._sock is None:
                return
            self._sock.close(0)
            self._sock = None
            if self._bound:
                _remove_ipc(self.endpoint, self._tmpdir)

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Subscriber:
    """Receives messages from a Publisher; `topics` are zmq prefixes ("" = everything).

    Malformed messages are dropped with a logged warning and counted in
    `dropped`; they never surface from `recv`. Use from one thread.
    """

    def __init__(
        self,
        endpoint: str,
        topics: Iterable[str] = ("",),
        *,
        bind: bool = False,
        context: zmq.Context | None = None,
        max_bytes: int = MAX_FRAME_BYTES,
    ):
        self.endpoint = endpoint
        self.dropped = 0
        """Malformed messages dropped so far."""
        self._max_bytes = max_bytes
        self._sock: zmq.Socket | None = (context or default_context()).socket(zmq.SUB)
        self._sock.linger = 0
        if not endpoint.startswith("inproc://"):
            self._sock.setsockopt(zmq.MAXMSGSIZE, 2 * max_bytes)
        for topic in topics:
            self._sock.setsockopt(zmq.SUBSCRIBE, topic.encode())
        try:
            (self._sock.bind if bind else self._sock.connect)(endpoint)
        except zmq.ZMQError as e:
            self._sock.close(0)
            raise BusError(f"subscriber on {endpoint}: {e}") from e

    def recv(self, timeout: float | None = None) -> tuple[str, Message] | None:
        """The next valid (topic, message), or None after `timeout` s (None = wait forever).

        Raises BusError only when the subscriber is closed.
        """
        sock = self._sock
        if sock is None:
            raise BusError("subscriber is closed")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            ms = -1 if deadline is None else max(0, int((deadline - time.monotonic()) * 1000 + 0.999))
            try:
                if not sock.poll(ms):
                    return None
                frames = _recv_frames(sock)
            except zmq.ZMQError as e:  # e.g. the context was terminated under us
                raise BusError(f"subscriber on {self.endpoint}: {e}") from e
            try:
                if len(frames) != 2:
                    raise MessageError(f"expected frames [topic, payload], got {len(frames)} frame(s)")
                topic = frames[0].decode("utf-8")
                return topic, decode(frames[1], max_bytes=self._max_bytes)
            except (MessageError, UnicodeDecodeError) as e:
                self.dropped += 1
                logger.warning("subscriber on %s dropped a malformed message: %s", self.endpoint, e)

    def close(self) -> None:
        """Close the socket (linger 0). Idempotent."""
        if self._sock is not None:
            self._sock.close(0)
            self._sock = None

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
