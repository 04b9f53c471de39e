"""A Body served over the bus (`BodyServer`), and the agent's side of it (`RemoteBody`).

Requests the server answers:

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
from collections.abc import Mapping
from typing import Any

import numpy as np
import zmq

from amiagent.bus import Client, Server, Subscriber
from amiagent.contracts import Body, Observation
from amiagent.errors import BodyError, MessageError
from amiagent.messages import Message, observation_from_message, observation_to_fields

logger = logging.getLogger(__name__)

SERVED = ("describe", "observe", "command", "stop", "estop", "release")
"""Request kinds a BodyServer answers."""


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
        self._server = Server(endpoint, self._handle, workers=workers, context=context, name="body-server")
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

    def _handle(self, msg: Message) -> tuple[str, Mapping[str, Any]]:
        kind = msg.kind
        if kind == "command":
            action = msg["action"]
            if action.shape != self._low.shape:
                raise MessageError(
                    f"message 'command', field 'action': expected shape {self._low.shape} for this body, "
                    f"got {action.shape}"
                )
            self._refuse_if_estopped()
            with self._lock:
                self._refuse_if_estopped()  # an e-stop may have arrived while we waited
                self.body.command(np.array(action, dtype=np.float64))  # decoded arrays are read-only
            return "ok", {}
        if kind == "observe":
            with self._lock:
                obs = self.body.observe()
            return "observation", observation_to_fields(obs)
        if kind == "describe":
            return "body_info", {"action_low": self._low, "action_high": self._high}
        if kind == "stop":
            with self._lock:
                self.body.stop()
            return "ok", {}
        if kind == "estop":
            self.estop(msg["reason"])
            return "ok", {}
        if kind == "release":
            self.release()
            return "ok", {}
        raise MessageError(f"field 'k': a body server serves {list(SERVED)}, got {kind!r}")

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


class RemoteBody(Body):
    """A Body whose calls are requests to a BodyServer at `endpoint`.

    `action_low` / `action_high` ((A,) float64) are fetched from the server
    at construction. Calls raise BusTimeout after `timeout` s, RemoteError for
    a refusal (its `.kind` is e.g. "EStop", "MessageError", "BodyError"), and
    MessageError for an action that is non-finite or misshaped, which is never
    sent. Thread-safe (see amiagent.bus.Client).
    """

    def __init__(self, endpoint: str, *, timeout: float = 1.0, context: zmq.Context | None = None):
        self._client = Client(endpoint, timeout=timeout, context=context)
        try:
            info = self._client.request("describe", expect="body_info")
        except BaseException:
            self._client.close()
            raise
        self.action_low = np.array(info["action_low"], dtype=np.float64)
        self.action_high = np.array(info["action_high"], dtype=np.float64)
        self._seq = itertools.count()

    def observe(self) -> Observation:
        """The body's observation; its arrays are read-only."""
        return observation_from_message(self._client.request("observe", expect="observation"))

    def command(self, action: np.ndarray) -> None:
        """Send `action` (A,) to hold until the next command."""
        action = np.asarray(action, dtype=np.float64)
        if action.shape != self.action_low.shape:
            raise MessageError(f"command: action must have shape {self.action_low.shape}, got {action.shape}")
        self._client.request("command", {"action": action, "seq": next(self._seq)}, expect="ok")

    def stop(self) -> None:
        """Brake to a standstill and hold."""
        self._client.request("stop", expect="ok")

    def estop(self, reason: str) -> None:
        """Emergency-stop the body: commands are refused until `release()`."""
        self._client.request("estop", {"reason": reason}, expect="ok")

    def release(self) -> None:
        """Lift an emergency stop."""
        self._client.request("release", expect="ok")

    def close(self) -> None:
        """Close the connection (the served body stays up). Safe to call twice."""
        self._client.close()
