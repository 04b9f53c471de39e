"""A Body served over the bus (`BodyServer`), and the agent's side of it (`RemoteBody`).

Requests the server answers (declared once, in `amiagent.contracts.declared.BODY`;
server dispatch and `RemoteBody` are derived from it):

    describe        -> body_info {action_low (A,), action_high (A,)}
    observe         -> observation (see messages.observation_to_fields)
    command {action (A,) finite float, seq}  -> ok
    stop            -> ok      brake and hold
    estop {reason}  -> ok      refuse commands (and brake) until release
    release         -> ok

Every request is validated on receipt (messages.decode), and a command's
action length is checked against the body's, before anything reaches the
body: a malformed command gets an `error` reply and never reaches
`body.command`. The body's own bounds checks remain the last line. While
e-stopped, `command` gets an error reply of kind "EStop". Body calls are
serialised by a lock; the e-stop flag is raised before the lock is taken, so
no command slips in behind an e-stop.
"""

from __future__ import annotations

import itertools
import logging
import threading

import numpy as np
import zmq

from amiagent.bus import Server, Subscriber
from amiagent.bus.rpc import Proxy, dispatcher
from amiagent.contracts import Body, Observation
from amiagent.contracts.declared import BODY
from amiagent.errors import BodyError, MessageError

logger = logging.getLogger(__name__)

SERVED = tuple(BODY.by_kind)
"""Request kinds a BodyServer answers (declared in amiagent.contracts.declared.BODY)."""


class EStop(BodyError):
    """A command was refused because the body is emergency-stopped."""


class BodyServer:
    """Serves `body` on `endpoint` (a ROUTER; see amiagent.bus.Server).

    `estop_endpoint`: optionally also listen to an e-stop stream there (a
    Publisher's address), on `estop_topic`: an `estop` message stops the
    body, a `release` message lifts it. `workers`: request threads (2 lets an
    e-stop request in while an observe runs).
    """

    def __init__(
        self,
        body: Body,
        endpoint: str,
        *,
        estop_endpoint: str | None = None,
        estop_topic: str = "estop",
        workers: int = 2,
        context: zmq.Context | None = None,
    ):
        self.body = body
        self._low = np.array(body.action_low, dtype=np.float64)
        self._high = np.array(body.action_high, dtype=np.float64)
        self._lock = threading.Lock()  # one body call at a time
        self._estop = threading.Event()
        self._estop_reason = ""
        self._server = Server(endpoint, dispatcher(BODY, lambda: self), workers=workers, context=context,
                              name="body-server")
        self._estop_endpoint = estop_endpoint
        self._estop_topic = estop_topic
        self._ctx = context
        self._listener: threading.Thread | None = None
        self._stopping = threading.Event()

    @property
    def endpoint(self) -> str:
        """The resolved request endpoint."""
        return self._server.endpoint

    @property
    def estopped(self) -> bool:
        """Whether commands are currently refused."""
        return self._estop.is_set()

    def start(self) -> BodyServer:
        """Bind and start serving (and listening for e-stops); returns self."""
        self._server.start()
        if self._estop_endpoint is not None:
            sub = Subscriber(self._estop_endpoint, [self._estop_topic], context=self._ctx)
            self._listener = threading.Thread(target=self._listen, args=(sub,), name="amiagent-estop", daemon=True)
            self._listener.start()
        return self

    def close(self) -> None:
        """Stop serving and join threads; the body itself is left to its owner. Idempotent."""
        self._stopping.set()
        if self._listener is not None:
            self._listener.join()
            self._listener = None
        self._server.close()

    def __enter__(self) -> BodyServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def estop(self, reason: str) -> None:
        """Refuse commands from now on and brake the body."""
        self._estop_reason = reason
        self._estop.set()  # before the lock: a command waiting for the lock sees it
        logger.warning("e-stop: %s", reason)
        with self._lock:
            self.body.stop()

    def release(self) -> None:
        """Accept commands again."""
        if self._estop.is_set():
            logger.warning("e-stop released (was: %s)", self._estop_reason)
        self._estop.clear()

    @property
    def action_low(self) -> np.ndarray:
        """The served body's lower action bound (A,), float64."""
        return self._low

    @property
    def action_high(self) -> np.ndarray:
        """The served body's upper action bound (A,), float64."""
        return self._high

    def observe(self) -> Observation:
        """The body's observation."""
        with self._lock:
            return self.body.observe()

    def command(self, action: np.ndarray) -> None:
        """Hand `action` to the body, unless e-stopped (EStop)."""
        self._refuse_if_estopped()
        with self._lock:
            self._refuse_if_estopped()  # an e-stop may have arrived while we waited
            self.body.command(np.array(action, dtype=np.float64))  # the body gets its own copy

    def stop(self) -> None:
        """Brake the body to a standstill."""
        with self._lock:
            self.body.stop()

    def _refuse_if_estopped(self) -> None:
        if self._estop.is_set():
            raise EStop(f"body is emergency-stopped ({self._estop_reason}); send 'release' first")

    def _listen(self, sub: Subscriber) -> None:
        try:
            while not self._stopping.is_set():
                item = sub.recv(timeout=0.1)
                if item is None:
                    continue
                _, msg = item
                if msg.kind == "estop":
                    self.estop(msg["reason"])
                elif msg.kind == "release":
                    self.release()
                else:
                    logger.warning("e-stop topic: ignoring a %r message", msg.kind)
        except Exception:  # the listener is a safety path: say loudly that it died
            logger.exception("e-stop listener failed; e-stops now arrive only as requests")
        finally:
            sub.close()


class RemoteBody(Proxy, Body, contract=BODY):
    """A Body whose calls are requests to a BodyServer at `endpoint`.

    `action_low` / `action_high` ((A,) float64) are fetched from the server
    at construction. Calls raise BusTimeout after `timeout` s, RemoteError for
    a refusal (its `.kind` is e.g. "EStop", "MessageError", "BodyError"), and
    MessageError for an action that is non-finite or misshaped, which is never
    sent. `observe`, `stop`, `estop(reason)` and `release` are derived from the
    body protocol's declaration. Thread-safe (see amiagent.bus.Client).
    """

    def __init__(self, endpoint: str, *, timeout: float = 1.0, context: zmq.Context | None = None):
        super().__init__(endpoint, timeout=timeout, context=context)
        self._seq = itertools.count()

    def command(self, action: np.ndarray) -> None:
        """Send `action` (A,) to hold until the next command."""
        action = np.asarray(action, dtype=np.float64)
        if action.shape != self.action_low.shape:
            raise MessageError(f"command: action must have shape {self.action_low.shape}, got {action.shape}")
        self._invoke(BODY.method("command"), action, seq=next(self._seq))
