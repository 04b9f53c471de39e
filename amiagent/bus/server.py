"""The request side of the bus: `Server`, a ROUTER answering requests with a handler."""

from __future__ import annotations

import logging
import queue
import secrets
import threading
import uuid

import zmq

from amiagent.bus.sockets import (
    _NOBLOCK,
    Handler,
    _bound_endpoint,
    _error_reply,
    _recv_frames,
    _remove_ipc,
    _send_frames,
    default_context,
)
from amiagent.errors import BusError, ConfigError, MessageError
from amiagent.messages import MAX_FRAME_BYTES, decode, encode

logger = logging.getLogger(__name__)

_MAX_BACKLOG = 1024  # requests waiting for a worker before the server answers "Busy"
_STOP = b"stop"


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
