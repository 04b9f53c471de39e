"""`amiagent bench bus`: request/reply round trip of the amiagent bus against raw pyzmq.

One run measures, for a `--size` byte payload (default 1 KiB):
  * between two processes (the peer is started with multiprocessing "spawn"),
    over ipc and tcp: raw pyzmq DEALER/ROUTER echo, and the amiagent bus
    (Client -> Server with an inline handler, and with the default thread pool);
  * inside one process over inproc: raw echo thread vs bus Server.
The bus sends an `echo` message (payload as a uint8 array), validated and
decoded at both ends; raw pyzmq sends the bytes. Configurations are measured
in interleaved blocks so machine noise hits them alike. Figures are
microseconds per round trip (p50, p99) and the bus/raw ratios.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import zmq

from amiagent.bus import Client, Server, default_context, ipc_endpoint
from amiagent.messages import Array, Message, Schema, register_schema

ECHO = register_schema(Schema("echo", {"data": Array({"uint8"}, (None,))}, "Bench payload, echoed back."))

_BLOCK = 500  # round trips per interleaved block
_WARMUP = 300


def _echo(msg: Message) -> tuple[str, dict[str, Any]]:
    return "echo", {"data": msg["data"]}


def _raw_echo(router: zmq.Socket, stop: threading.Event) -> None:
    router.rcvtimeo = 100  # wake now and then to notice `stop`
    while not stop.is_set():
        try:
            router.send_multipart(router.recv_multipart())
        except zmq.Again:
            continue
    router.close(0)


def _start_raw(ctx: zmq.Context, endpoint: str, stop: threading.Event) -> tuple[str, threading.Thread]:
    router = ctx.socket(zmq.ROUTER)
    router.linger = 0
    router.bind(endpoint)
    resolved = router.getsockopt_string(zmq.LAST_ENDPOINT)
    thread = threading.Thread(target=_raw_echo, args=(router, stop), name="raw-echo", daemon=True)
    thread.start()
    return resolved, thread


def _peer(conn: Any) -> None:
    """The other process: raw echo and bus servers on ipc and tcp, until told to stop."""
    ctx = default_context()
    stop = threading.Event()
    raw_ipc, t1 = _start_raw(ctx, ipc_endpoint("raw"), stop)
    raw_tcp, t2 = _start_raw(ctx, "tcp://127.0.0.1:0", stop)
    servers = {
        "ipc/inline": Server("ipc://*", _echo, inline=True, name="bench-inline").start(),
        "ipc/pooled": Server("ipc://*", _echo, workers=2, name="bench-pooled").start(),
        "tcp/inline": Server("tcp://127.0.0.1:0", _echo, inline=True, name="bench-tcp").start(),
    }
    endpoints = {"ipc/raw": raw_ipc, "tcp/raw": raw_tcp} | {k: s.endpoint for k, s in servers.items()}
    conn.send(endpoints)
    conn.recv()  # stop
    stop.set()
    for server in servers.values():
        server.close()
    t1.join()
    t2.join()
    shutil.rmtree(os.path.dirname(raw_ipc[len("ipc://"):]), ignore_errors=True)
    conn.send("done")


def _raw_caller(ctx: zmq.Context, endpoint: str, payload: bytes) -> tuple[Callable[[], None], Callable[[], None]]:
    dealer = ctx.socket(zmq.DEALER)
    dealer.linger = 0
    dealer.connect(endpoint)
    frames = [b"\0" * 8, payload]

    def call() -> None:
        dealer.send_multipart(frames)
        dealer.recv_multipart()

    return call, lambda: dealer.close(0)


def _bus_caller(endpoint: str, data: np.ndarray) -> tuple[Callable[[], None], Callable[[], None]]:
    client = Client(endpoint, timeout=5.0)
    fields = {"data": data}

    def call() -> None:
        client.request("echo", fields)

    return call, client.close


def _measure(callers: dict[str, Callable[[], None]], n: int) -> dict[str, np.ndarray]:
    """Interleave blocks of each caller until each has `n` timed round trips (µs)."""
    clock = time.perf_counter_ns
    for call in callers.values():
        for _ in range(_WARMUP):
            call()
    times = {name: np.empty(n) for name in callers}
    done = 0
    while done < n:
        k = min(_BLOCK, n - done)
        for name, call in callers.items():
            out = times[name]
            for i in range(done, done + k):
                t0 = clock()
                call()
                out[i] = clock() - t0
        done += k
    return {name: t / 1000.0 for name, t in times.items()}


def run(n: int, size: int) -> dict[str, Any]:
    """Run every configuration; returns {config: {"p50_us", "p99_us"}} plus ratios."""
    ctx = default_context()
    payload = np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8)
    raw_bytes = payload.tobytes()
    callers: dict[str, Callable[[], None]] = {}
    closers: list[Callable[[], None]] = []

    # two processes
    spawn = mp.get_context("spawn")
    here, there = spawn.Pipe()
    peer = spawn.Process(target=_peer, args=(there,), name="bench-bus-peer", daemon=True)
    peer.start()
    remote = here.recv()
    for name, endpoint in remote.items():
        call, close = _raw_caller(ctx, endpoint, raw_bytes) if name.endswith("/raw") else _bus_caller(endpoint, payload)
        callers[name] = call
        closers.append(close)

    # one process, inproc
    stop = threading.Event()
    raw_inproc, raw_thread = _start_raw(ctx, "inproc://bench-raw", stop)
    server = Server("inproc://bench-bus", _echo, inline=True, name="bench-inproc").start()
    for name, (call, close) in {
        "inproc/raw": _raw_caller(ctx, raw_inproc, raw_bytes),
        "inproc/inline": _bus_caller(server.endpoint, payload),
    }.items():
        callers[name] = call
        closers.append(close)

    try:
        times = _measure(callers, n)
    finally:
        for close in closers:
            close()
        server.close()
        stop.set()
        raw_thread.join()
        here.send("stop")
        here.recv()
        peer.join(timeout=10)

    results: dict[str, Any] = {
        name: {"p50_us": float(np.percentile(t, 50)), "p99_us": float(np.percentile(t, 99))}
        for name, t in times.items()
    }
    for name in list(results):
        transport, variant = name.split("/")
        if variant != "raw":
            raw = results[f"{transport}/raw"]
            results[name]["ratio_p50"] = results[name]["p50_us"] / raw["p50_us"]
            results[name]["ratio_p99"] = results[name]["p99_us"] / raw["p99_us"]
    return {"n": n, "size": size, "results": results}


def main(argv: list[str] | None = None) -> int:
    """CLI entry: `amiagent bench bus [--n N] [--size BYTES] [--json PATH]`."""
    from rich.console import Console
    from rich.table import Table

    parser = argparse.ArgumentParser(prog="amiagent bench bus", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10000, help="timed round trips per configuration")
    parser.add_argument("--size", type=int, default=1024, help="payload bytes")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    if args.n < 1 or args.size < 0:
        parser.error("--n must be >= 1 and --size >= 0")

    console = Console()
    with console.status(f"bench bus: {args.n} round trips x 7 configurations, {args.size} B payload"):
        report = run(args.n, args.size)

    table = Table(title=f"amiagent bus vs raw pyzmq, {args.size} B round trip (µs), n={args.n}")
    for column in ("transport", "variant", "p50", "p99", "bus/raw p50", "bus/raw p99"):
        table.add_column(column, justify="left" if column in ("transport", "variant") else "right")
    for name, row in report["results"].items():
        transport, variant = name.split("/")
        ratio50 = f"{row['ratio_p50']:.2f}x" if "ratio_p50" in row else ""
        ratio99 = f"{row['ratio_p99']:.2f}x" if "ratio_p99" in row else ""
        table.add_row(transport, variant, f"{row['p50_us']:.1f}", f"{row['p99_us']:.1f}", ratio50, ratio99)
    console.print(table)
    console.print("ipc/tcp: two processes; inproc: two threads of one process. "
                  "inline: handler on the server's socket thread; pooled: handler on a worker thread.")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
