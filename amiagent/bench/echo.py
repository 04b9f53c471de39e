"""The echo ends of `amiagent bench bus`: raw pyzmq echoes, amiagent bus servers, and the Ray actor.

Every server answers an `echo` message (the payload as a uint8 array) or, for
the raw ones, echoes the frames back. `Servers` starts one of each kind per
transport in a process; `peer_main` runs them in the bench's second process;
`RayEcho` is the Ray section's actor (its class lives in this module, so the
actor's process imports it and registers the `echo` schema). `raw_caller` and
`bus_caller` are the calling ends the bench times.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import zmq

from amiagent.bus import Client, Server, _recv_frames, _send_frames, default_context, ipc_endpoint
from amiagent.messages import Array, Message, Schema, register_schema

ECHO = register_schema(Schema("echo", {"data": Array({"uint8"}, (None,))}, "Bench payload, echoed back."))


def _echo(msg: Message) -> tuple[str, dict[str, Any]]:
    return "echo", {"data": msg["data"]}


# --------------------------------------------------------------------------- raw pyzmq


# The raw reference makes exactly the socket calls the bus makes (pyzmq frame by
# frame, no amiagent codec), so the ratio measures the bus's own work.
_recv_lean = _recv_frames
_send_lean = _send_frames


def _raw_echo(router: zmq.Socket, multipart: bool) -> None:
    # blocks like the bus server's I/O thread; a lone frame (`Servers.close`) stops it
    while True:
        frames = router.recv_multipart() if multipart else _recv_lean(router)
        if len(frames) == 2:
            break
        if multipart:
            router.send_multipart(frames)
        else:
            _send_lean(router, frames)
    router.close(0)


def _start_raw(ctx: zmq.Context, endpoint: str, multipart: bool) -> tuple[str, threading.Thread]:
    router = ctx.socket(zmq.ROUTER)
    router.linger = 0
    router.bind(endpoint)
    resolved = router.getsockopt_string(zmq.LAST_ENDPOINT)
    thread = threading.Thread(target=_raw_echo, args=(router, multipart), name="raw-echo", daemon=True)
    thread.start()
    return resolved, thread


def _stop_raw(ctx: zmq.Context, endpoint: str, thread: threading.Thread) -> None:
    """Stop a `_start_raw` echo with a lone frame and join its thread."""
    stopper = ctx.socket(zmq.DEALER)
    stopper.linger = 0
    stopper.connect(endpoint)
    stopper.send(b"stop")
    thread.join()
    stopper.close(0)


def raw_caller(
    ctx: zmq.Context, endpoint: str, payload: bytes, multipart: bool
) -> tuple[Callable[[], None], Callable[[], None]]:
    """One round trip of `payload` to a raw echo at `endpoint` (multipart or frame by frame), and its closer."""
    dealer = ctx.socket(zmq.DEALER)
    dealer.linger = 0
    dealer.connect(endpoint)
    frames = [b"\0" * 8, payload]  # [request id, payload], as the bus client sends

    def call_multipart() -> None:
        dealer.send_multipart(frames)
        dealer.recv_multipart()

    def call_lean() -> None:
        _send_lean(dealer, frames)
        _recv_lean(dealer)

    return (call_multipart if multipart else call_lean), lambda: dealer.close(0)


# --------------------------------------------------------------------------- servers


class Servers:
    """Every echo server of one process: raw (both styles) and bus (inline, pooled) per transport."""

    def __init__(self, transports: tuple[str, ...]):
        self._ctx = default_context()
        self._raw: list[tuple[str, threading.Thread]] = []
        self._tmpdirs: list[str] = []
        self._servers: list[Server] = []
        self.endpoints: dict[str, str] = {}
        for transport in transports:
            for variant in ("raw", "raw-multipart"):
                endpoint = _fresh_endpoint(transport, variant)
                if transport == "ipc":
                    self._tmpdirs.append(os.path.dirname(endpoint[len("ipc://"):]))
                resolved, thread = _start_raw(self._ctx, endpoint, variant == "raw-multipart")
                self.endpoints[f"{transport}/{variant}"] = resolved
                self._raw.append((resolved, thread))
            for variant, options in (("inline", {"inline": True}), ("pooled", {"workers": 2})):
                endpoint = _fresh_endpoint(transport, variant, bus=True)
                server = Server(endpoint, _echo, name=f"bench-{variant}", **options)
                self._servers.append(server.start())
                self.endpoints[f"{transport}/{variant}"] = server.endpoint

    def close(self) -> None:
        """Stop every server and remove the ipc directories."""
        for server in self._servers:
            server.close()
        for endpoint, thread in self._raw:
            _stop_raw(self._ctx, endpoint, thread)
        for tmpdir in self._tmpdirs:
            shutil.rmtree(tmpdir, ignore_errors=True)


def _fresh_endpoint(transport: str, name: str, bus: bool = False) -> str:
    if transport == "inproc":
        return f"inproc://bench-{name}-{os.getpid()}"
    if transport == "tcp":
        return "tcp://127.0.0.1:0"
    return "ipc://*" if bus else ipc_endpoint(name)


def peer_main(conn: Any) -> None:
    """The other process: echo servers on ipc and tcp, until told to stop."""
    servers = Servers(("ipc", "tcp"))
    conn.send(servers.endpoints)
    conn.recv()  # stop
    servers.close()
    conn.send("done")


class RayEcho:
    """The Ray section's actor (wrapped by `ray.remote` in `bench.bus._run_ray`, so that Ray is imported only
    when used): a raw echo and an inline bus server, both on tcp://<node ip>:0, and `echo` for Ray
    calls. Its class lives in this module, so the actor's process imports it and registers `echo`."""

    def __init__(self) -> None:
        import ray

        address = ray.util.get_node_ip_address()
        self._ctx = default_context()
        self._raw = _start_raw(self._ctx, f"tcp://{address}:0", multipart=False)
        try:
            self._server = Server(f"tcp://{address}:0", _echo, inline=True, name="bench-ray-bus").start()
        except BaseException:
            _stop_raw(self._ctx, *self._raw)
            raise

    def endpoints(self) -> dict[str, str]:
        return {"ray-raw": self._raw[0], "ray-bus": self._server.endpoint}

    def echo(self, data: bytes) -> bytes:
        return data

    def close(self) -> None:
        self._server.close()
        _stop_raw(self._ctx, *self._raw)


def bus_caller(endpoint: str, data: np.ndarray) -> tuple[Callable[[], None], Callable[[], None]]:
    """One `echo` request of `data` to a bus server at `endpoint`, and its closer."""
    client = Client(endpoint, timeout=5.0)
    fields = {"data": data}

    def call() -> None:
        client.request("echo", fields)

    return call, client.close
