"""ZeroMQ transport: request/reply (`Server`, `Client`) and streams (`Publisher`, `Subscriber`).

Every frame on the bus is an `amiagent.messages` envelope, validated on both
ends. Endpoints are `inproc://name` (one process; every socket must share a
context, hence `default_context()`), `ipc:///path` (one host) or
`tcp://host:port` (across hosts). A server bound to `tcp://host:0` or
`tcp://host:*` picks a free port, and one bound to `ipc://*` gets a socket file
in a fresh temporary directory; `Server.endpoint` gives the resolved address.

Request/reply framing: the client's DEALER sends `[request_id, payload]`; the
server's ROUTER sees `[identity, request_id, payload]` and answers
`[identity, request_id, reply]`. A request id is 8 opaque bytes; a plain REQ
socket also works (its empty delimiter frame plays the request id).

Threads: zmq sockets are not thread-safe, so one I/O thread owns the ROUTER.
Handlers run on a small pool (`workers`); `inline=True` runs the handler on the
I/O thread itself, which saves two thread hops per request and suits handlers
that take microseconds. Workers hand their replies back, and `close()` its stop
signal, through a private inproc endpoint that the same ROUTER also binds, so
the I/O thread waits in one blocking receive rather than polling two sockets.

Hot path: at a few thousand requests a second every microsecond counts, so
frames go through `_recv_frames` / `_send_frames` rather than pyzmq's
`recv_multipart` / `send_multipart`, whose per-frame option lookups cost more
than the rest of a small request.
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import secrets
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

import zmq

from amiagent.errors import BusError, BusTimeout, ConfigError, MessageError, RemoteError
from amiagent.messages import MAX_FRAME_BYTES, Message, decode, encode

logger = logging.getLogger(__name__)

Handler = Callable[[Message], "tuple[str, Mapping[str, Any] | None]"]
"""A request handler: request Message -> (reply kind, reply fields)."""

_MAX_ERROR_TEXT = 4000
_MAX_BACKLOG = 1024  # requests waiting for a worker before the server answers "Busy"
_STOP = b"stop"
_TMP_PREFIX = "amiagent-"
# plain int flags: arithmetic on pyzmq's flag enums costs microseconds on the hot path
_SNDMORE = int(zmq.SNDMORE)
_NOBLOCK = int(zmq.NOBLOCK)


def _recv_frames(sock: zmq.Socket) -> list[bytes]:
    """The frames of one message, as `sock.recv_multipart()` returns them, but faster.

    `recv_multipart` asks for RCVMORE after every frame through pyzmq's option
    enum, about 10k instructions a frame; a frame received with copy=False
    already carries that flag as `.more`.
    """
    frames = []
    while True:
        frame = sock.recv(copy=False)
        frames.append(frame.bytes)
        if not frame.more:
            return frames


def _send_frames(sock: zmq.Socket, frames: list[bytes], flags: int = 0) -> None:
    """`sock.send_multipart(frames, flags)` without its per-call type checks and enum arithmetic."""
    for frame in frames[:-1]:
        sock.send(frame, flags | _SNDMORE)
    sock.send(frames[-1], flags)


def default_context() -> zmq.Context:
    """The process-wide zmq context, shared so that `inproc://` endpoints connect."""
    return zmq.Context.instance()


def ipc_endpoint(name: str = "bus") -> str:
    """A fresh `ipc://` endpoint in a new temporary directory (removed by the binder's close)."""
    return f"ipc://{tempfile.mkdtemp(prefix=_TMP_PREFIX)}/{name}.sock"


def _error_reply(kind: str, text: str) -> bytes:
    if len(text) > _MAX_ERROR_TEXT:
        text = text[: _MAX_ERROR_TEXT - 3] + "..."
    return encode("error", {"kind": kind[:256], "message": text})


def _bound_endpoint(sock: zmq.Socket, endpoint: str) -> tuple[str, str | None]:
    """Bind `sock`; return the resolved endpoint and the temp dir to remove on close (ipc://*)."""
    tmpdir = None
    if endpoint == "ipc://*":  # libzmq's own wildcard lands in the working directory; use /tmp
        endpoint = ipc_endpoint("server")
        tmpdir = os.path.dirname(endpoint[len("ipc://") :])
    try:
        sock.bind(endpoint)
    except zmq.ZMQError as e:
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)
        raise BusError(f"cannot bind {endpoint}: {e}") from e
    return sock.getsockopt_string(zmq.LAST_ENDPOINT), tmpdir


def _remove_ipc(endpoint: str, tmpdir: str | None) -> None:
    # libzmq leaves the socket file behind; remove it so nothing stale accumulates
    if endpoint.startswith("ipc://"):
        path = endpoint[len("ipc://") :]
        if path and not path.startswith("@"):  # "@name" is Linux's abstract namespace: no file
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as e:
                logger.warning("could not remove ipc file %s: %s", path, e)
            parent = os.path.dirname(path)  # a directory made by ipc_endpoint(): remove once empty
            if os.path.basename(parent).startswith(_TMP_PREFIX) and os.path.dirname(parent) == tempfile.gettempdir():
                try:
                    os.rmdir(parent)
                except OSError:
                    pass  # not empty: something else lives there
    if tmpdir:
        shutil.rmtree(tmpdir, ignore_errors=True)


# --------------------------------------------------------------------------- server


class Server:
    """Serves requests on a ROUTER socket bound to `endpoint`.

    `handler(msg) -> (kind, fields)` builds each reply. A request that fails to
    decode is answered with an `error` reply (kind "MessageError", text naming
    the field) and never reaches the handler; a handler exception is logged and
    answered with an `error` reply (kind = exception type name). Neither stops
    the server. `workers`: handler threads, so one slow request does not hold
    up other clients; `inline=True` runs the handler on the socket thread
    instead (fastest, but requests are then handled one at a time).
    `max_bytes`: request size limit; frames over twice that are cut off by
    zmq itself (ipc/tcp), so a peer cannot make the server buffer huge frames.
    `served` / `rejected` count requests (approximate while workers race).
    Do not call `close()` from inside a handler: it joins the handler threads.
    """

    def __init__(
        self,
        endpoint: str,
        handler: Handler,
        *,
        workers: int = 4,
        inline: bool = False,
        context: zmq.Context | None = None,
        max_bytes: int = MAX_FRAME_BYTES,
        name: str = "server",
    ):
        if not inline and workers < 1:
            raise ConfigError(f"Server workers must be >= 1 (or inline=True), got {workers}")
        self._requested = endpoint
        self._handler = handler
        self._workers_n = 0 if inline else workers
        self._ctx = context or default_context()
        self._max_bytes = max_bytes
        self._name = name
        self._endpoint: str | None = None
        self._tmpdir: str | None = None
        self._threads: list[threading.Thread] = []
        self._jobs: queue.SimpleQueue[tuple[bytes, bytes, bytes] | None] = queue.SimpleQueue()
        # Workers and close() talk to the I/O thread through the ROUTER itself, on this private
        # endpoint, under routing ids no client can guess (a client could choose any id).
        self._pipe = f"inproc://amiagent-internal-{uuid.uuid4().hex}"
        token = secrets.token_hex(16).encode()
        self._stop_id = b"amiagent-stop-" + token
        self._worker_ids = [b"amiagent-worker%d-" % i + token for i in range(self._workers_n)]
        self._lock = threading.Lock()
        self._state = "new"
        self.served = 0
        """Requests answered (including error replies)."""
        self.rejected = 0
        """Requests answered with an error reply."""

    @property
    def endpoint(self) -> str:
        """The bound address, with any wildcard port or ipc path resolved."""
        if self._endpoint is None:
            raise BusError("server not started")
        return self._endpoint

    def start(self) -> Server:
        """Bind and start serving; returns self. Binding errors raise BusError here."""
        with self._lock:
            if self._state != "new":
                raise BusError(f"server already {self._state}")
            router = self._ctx.socket(zmq.ROUTER)
            router.linger = 0
            if not self._requested.startswith("inproc://"):
                router.setsockopt(zmq.MAXMSGSIZE, 2 * self._max_bytes)
            try:
                self._endpoint, self._tmpdir = _bound_endpoint(router, self._requested)
            except BusError:
                router.close(0)
                raise
            router.bind(self._pipe)
            self._wake = self._internal_socket(self._stop_id)  # used only by close(), under the lock
            io = threading.Thread(
                target=self._serve, args=(router,), name=f"amiagent-{self._name}-io", daemon=True
            )
            self._threads = [io] + [
                threading.Thread(target=self._work, args=(wid,), name=f"amiagent-{self._name}-w{i}", daemon=True)
                for i, wid in enumerate(self._worker_ids)
            ]
            for thread in self._threads:
                thread.start()
            self._state = "running"
            logger.debug("%s serving on %s", self._name, self._endpoint)
        return self

    def close(self) -> None:
        """Stop serving, join all threads, close sockets (linger 0), remove ipc files. Idempotent."""
        with self._lock:
            if self._state != "running":
                self._state = "closed"
                return
            self._state = "closed"
            try:
                self._wake.send(_STOP, _NOBLOCK)
            except zmq.Again:  # the I/O thread failed and closed the ROUTER: nothing left to wake
                pass
            for thread in self._threads:
                thread.join()
            self._wake.close(0)
            _remove_ipc(self._endpoint or "", self._tmpdir)
            self._threads = []

    def __enter__(self) -> Server:
        if self._state == "new":
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _internal_socket(self, routing_id: bytes) -> zmq.Socket:
        """A DEALER into this server's ROUTER, whose messages the I/O thread knows by `routing_id`."""
        sock = self._ctx.socket(zmq.DEALER)
        sock.linger = 0
        sock.setsockopt(zmq.ROUTING_ID, routing_id)
        sock.connect(self._pipe)
        return sock

    # the I/O thread owns `router`
    def _serve(self, router: zmq.Socket) -> None:
        internal = frozenset([self._stop_id, *self._worker_ids])
        inline = self._workers_n == 0
        try:
            while True:
                frames = _recv_frames(router)
                if frames[0] in internal:
                    if frames[0] == self._stop_id:
                        return
                    _send_frames(router, frames[1:])  # a worker's [identity, request_id, reply]
                elif len(frames) != 3:
                    self._reply_bad_framing(router, frames)
                elif inline:
                    frames[2] = self._handle(frames[2])
                    _send_frames(router, frames)
                elif self._jobs.qsize() >= _MAX_BACKLOG:  # shed load rather than queue without bound
                    self.served += 1
                    self.rejected += 1
                    busy = _error_reply("Busy", f"{self._name}: {_MAX_BACKLOG} requests already waiting")
                    _send_frames(router, [frames[0], frames[1], busy])
                else:
                    self._jobs.put((frames[0], frames[1], frames[2]))
        except Exception:  # a broken I/O thread must be loud, not silent
            logger.exception("%s: I/O thread failed; server stops answering", self._name)
        finally:
            for _ in range(self._workers_n):
                self._jobs.put(None)
            for thread in self._threads[1:]:
                thread.join()
            router.close(0)

    def _reply_bad_framing(self, router: zmq.Socket, frames: list[bytes]) -> None:
        self.served += 1
        self.rejected += 1
        text = f"expected frames [request_id, payload], got {len(frames) - 1} frame(s)"
        logger.warning("%s: bad request: %s", self._name, text)
        request_id = frames[1] if len(frames) > 2 else b""  # with 2 frames, frames[1] is the payload
        _send_frames(router, [frames[0], request_id, _error_reply("MessageError", text)])

    def _work(self, routing_id: bytes) -> None:
        out = self._internal_socket(routing_id)
        try:
            while True:
                job = self._jobs.get()
                if job is None:
                    return
                identity, request_id, payload = job
                reply = self._handle(payload)
                try:
                    _send_frames(out, [identity, request_id, reply], _NOBLOCK)
                except zmq.Again:
                    logger.warning("%s: reply pipe full; reply dropped", self._name)
        finally:
            out.close(0)

    def _handle(self, payload: bytes) -> bytes:
        """Request frame -> reply frame; never raises."""
        self.served += 1
        try:
            request = decode(payload, max_bytes=self._max_bytes)
        except MessageError as e:
            self.rejected += 1
            logger.warning("%s: bad request: %s", self._name, e)
            return _error_reply("MessageError", str(e))
        try:
            kind, fields = self._handler(request)
        except Exception as e:  # answered, logged with traceback, server keeps going
            self.rejected += 1
            logger.exception("%s: handler failed on a %r request", self._name, request.kind)
            return _error_reply(type(e).__name__, str(e))
        try:
            return encode(kind, fields)
        except MessageError as e:
            self.rejected += 1
            logger.error("%s: handler returned an invalid %r reply: %s", self._name, kind, e)
            return _error_reply("MessageError", f"server built an invalid reply: {e}")


# --------------------------------------------------------------------------- client


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


# --------------------------------------------------------------------------- streams


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
