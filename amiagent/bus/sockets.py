"""The plumbing the bus's sockets share: frames in and out, endpoints, the process's zmq context."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

import zmq

from amiagent.errors import BusError
from amiagent.messages import Message, encode

logger = logging.getLogger(__name__)

Handler = Callable[[Message], "tuple[str, Mapping[str, Any] | None]"]
"""A request handler: request Message -> (reply kind, reply fields)."""

_MAX_ERROR_TEXT = 4000
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
