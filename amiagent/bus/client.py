"""The asking side of the bus: `Client`, a DEALER that sends requests and collects their replies."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Collection, Mapping
from typing import Any

import zmq

from amiagent.bus.sockets import _NOBLOCK, _recv_frames, _send_frames, default_context
from amiagent.errors import BusError, BusTimeout, MessageError, RemoteError
from amiagent.messages import MAX_FRAME_BYTES, Message, decode, encode

logger = logging.getLogger(__name__)


class Client:
    """Sends requests to a Server over a DEALER socket connected to `endpoint`.

    `timeout`: default seconds to wait for a reply. Thread-safe: a lock
    serialises requests on the one socket, so concurrent callers wait their
    turn; give each thread its own Client for parallel requests.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        timeout: float = 1.0,
        context: zmq.Context | None = None,
        max_bytes: int = MAX_FRAME_BYTES,
    ):
        self.endpoint = endpoint
        self.timeout = timeout
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._sock: zmq.Socket | None = (context or default_context()).socket(zmq.DEALER)
        self._sock.linger = 0
        self._rcvtimeo = -1
        self._awaited: set[bytes] = set()  # ids of submitted requests whose replies are kept
        self._stash: dict[bytes, list[bytes]] = {}
        try:
            self._sock.connect(endpoint)
        except zmq.ZMQError as e:
            self._sock.close(0)
            raise BusError(f"cannot connect to {endpoint}: {e}") from e

    def request(
        self,
        kind: str,
        fields: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        expect: str | Collection[str] | None = None,
    ) -> Message:
        """Send one request and wait for its reply.

        Raises MessageError if the request is malformed (nothing is sent) or
        the reply is; BusTimeout after `timeout` s (a reply that comes later is
        discarded); RemoteError for an `error` reply; MessageError if the reply
        kind is not in `expect`.
        """
        return self._exchange(kind, encode(kind, fields), timeout, expect, None)

    def submit(self, kind: str, fields: Mapping[str, Any] | None = None) -> bytes:
        """Send a request without waiting; returns its id, to `collect` the reply later.

        The reply is kept for `collect` even while other requests come and go.
        """
        payload = encode(kind, fields)
        with self._lock:
            request_id = self._send(kind, payload)
            self._awaited.add(request_id)
        return request_id

    def collect(self, request_id: bytes, timeout: float | None = None,
                expect: str | Collection[str] | None = None, keep: bool = False) -> Message:
        """Wait for the reply to a `submit`ted request (errors as for `request`).

        With `keep`, a BusTimeout leaves the request awaited: its reply, when it
        comes, is kept for a later `collect`.
        """
        return self._exchange("submitted request", None, timeout, expect, request_id, keep)

    def forget(self, request_id: bytes) -> None:
        """Stop awaiting a submitted request: its reply, if any comes, is discarded."""
        with self._lock:
            self._awaited.discard(request_id)
            self._stash.pop(request_id, None)

    def _send(self, kind: str, payload: bytes) -> bytes:
        sock = self._sock
        if sock is None:
            raise BusError("client is closed")
        request_id = next(self._ids).to_bytes(8, "little")
        try:
            _send_frames(sock, [request_id, payload], _NOBLOCK)
        except zmq.Again:  # no peer pipe, or its queue is full: never block the caller
            raise BusTimeout(f"cannot send {kind!r} to {self.endpoint}: no peer ready") from None
        except zmq.ZMQError as e:
            raise BusError(f"cannot send {kind!r} to {self.endpoint}: {e}") from e
        return request_id

    def _exchange(self, kind: str, payload: bytes | None, timeout: float | None,
                  expect: str | Collection[str] | None, request_id: bytes | None, keep: bool = False) -> Message:
        timeout = self.timeout if timeout is None else timeout
        with self._lock:
            if payload is not None:
                request_id = self._send(kind, payload)
            frames = self._stash.pop(request_id, None)
            deadline = time.monotonic() + timeout
            sock = self._sock
            while frames is None:
                if sock is None:
                    raise BusError("client is closed")
                ms = max(0, int((deadline - time.monotonic()) * 1000 + 0.999))
                if ms != self._rcvtimeo:  # RCVTIMEO + plain recv is cheaper than a poller
                    sock.setsockopt(zmq.RCVTIMEO, ms)  # (pyzmq's `sock.rcvtimeo = ms` is 4x slower)
                    self._rcvtimeo = ms
                try:
                    got = _recv_frames(sock)
                except zmq.Again:
                    if not keep:
                        self._awaited.discard(request_id)
                    raise BusTimeout(f"no reply to {kind!r} from {self.endpoint} within {timeout:g} s") from None
                except zmq.ZMQError as e:
                    raise BusError(f"waiting for a reply from {self.endpoint}: {e}") from e
                if len(got) != 2:
                    logger.debug("discarding a malformed reply on %s", self.endpoint)
                elif got[0] == request_id:
                    frames = got
                elif got[0] in self._awaited:  # a submitted request's reply: kept for its collect
                    self._stash[got[0]] = got
                else:
                    logger.debug("discarding a late or stray reply on %s", self.endpoint)
            self._awaited.discard(request_id)
        reply = decode(frames[1], max_bytes=self._max_bytes)
        if reply.kind == "error":
            raise RemoteError(reply["kind"], reply["message"])
        if expect is not None:
            allowed = (expect,) if isinstance(expect, str) else expect
            if reply.kind not in allowed:
                wanted = " or ".join(map(repr, allowed))
                raise MessageError(f"reply to {kind!r}: expected kind {wanted}, got {reply.kind!r}")
        return reply

    def close(self) -> None:
        """Close the socket (linger 0). Idempotent."""
        with self._lock:
            if self._sock is not None:
                self._sock.close(0)
                self._sock = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
