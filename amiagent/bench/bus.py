"""`amiagent bench bus`: request/reply round trip of the amiagent bus against raw pyzmq.

One run measures, for a `--size` byte payload (default 1 KiB), over ipc and tcp
between two processes (the peer is started with multiprocessing "spawn") and
over inproc between two threads of this process:
  * raw: pyzmq DEALER -> ROUTER echo of the payload bytes, with the same socket
    calls the bus makes (per-frame send, copy=False receive that reads the
    frame's `more` flag). This is the reference for the bus/raw ratios: it
    differs from the bus by exactly what amiagent adds.
  * raw-multipart: the same echo with pyzmq's `send_multipart` /
    `recv_multipart`, the idiomatic way to write it. Shown for scale: those
    helpers look up RCVMORE through pyzmq's option enum after every frame.
  * inline: amiagent `Client` -> `Server(inline=True)`, the handler running on
    the server's socket thread (for handlers that take microseconds).
  * pooled: the same with the default `Server` (handler on a worker thread).
The bus sends an `echo` message (payload as a uint8 array), validated and
decoded at both ends. Every server waits in a plain blocking receive. The
configurations are measured in interleaved blocks, in a fresh random order each
round, so machine noise hits them alike, and nothing else (no progress spinner)
runs while timing. Figures are microseconds per round trip.

Then, unless `--no-ray`, into a Ray actor (Ray is started only if this process
has not initialised it, and shut down only if the bench started it; the actor
takes no CPU), measured afterwards on their own so that Ray's background
processes do not weigh on the figures above:
  * ray-raw: the raw echo above (same socket calls) in the actor, on a ROUTER
    bound on tcp://<node ip>:0. The reference for this section.
  * ray-bus: `Client` -> `Server(inline=True)` in the actor, same endpoint kind,
    serving the same `echo` message (the actor imports this module, which
    registers the schema).
  * ray-call: a synchronous Ray actor call, `ray.get(actor.echo.remote(payload))`
    with the payload bytes, for scale.
The three are interleaved the same way (blocks, fresh random order each round).
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import random
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from amiagent.bench.echo import RayEcho, Servers, bus_caller, peer_main, raw_caller
from amiagent.bus import default_context

VARIANTS = ("raw", "raw-multipart", "inline", "pooled")
REFERENCE = "raw"
TRANSPORTS = ("ipc", "tcp", "inproc")
RAY = "ray"  # the "transport" of the Ray section: tcp to the node IP, into an actor
RAY_VARIANTS = ("ray-raw", "ray-bus", "ray-call")
RAY_REFERENCE = "ray-raw"

_BLOCK = 500  # round trips per interleaved block
_WARMUP = 300


# --------------------------------------------------------------------------- measurement


def _from_peer(conn: Any, peer: Any, limit_s: float = 120.0) -> Any:
    """The peer process's next message; an error, not a hang, if the peer died or went silent (a script run
    without an `if __name__ == "__main__":` guard, for instance, re-runs itself in the spawned peer)."""
    deadline = time.monotonic() + limit_s
    while not conn.poll(0.2):
        if not peer.is_alive() and not conn.poll():  # (it may have answered just before exiting)
            raise RuntimeError(f"the bench's peer process exited (code {peer.exitcode}) before answering")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the bench's peer process did not answer within {limit_s:g} s")
    return conn.recv()


def _measure(callers: dict[str, Callable[[], None]], n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Interleave blocks of each caller, in a shuffled order per round, until each has `n` round trips (µs)."""
    clock = time.perf_counter_ns
    for call in callers.values():
        for _ in range(_WARMUP):
            call()
    times = {name: np.empty(n) for name in callers}
    order = list(callers)
    rng = random.Random(seed)
    done = 0
    while done < n:
        k = min(_BLOCK, n - done)
        rng.shuffle(order)  # no configuration always follows the same one
        for name in order:
            call, out = callers[name], times[name]
            for i in range(done, done + k):
                t0 = clock()
                call()
                out[i] = clock() - t0
        done += k
    return {name: t / 1000.0 for name, t in times.items()}


def _run_ray(n: int, payload: np.ndarray, address: str | None = None) -> dict[str, np.ndarray]:
    """The Ray section: ray-raw, ray-bus and ray-call into one actor, interleaved like `_measure`.
    Joins the cluster at `address` (None: a new local instance) unless this process already runs Ray."""
    import ray

    logging.getLogger("ray").setLevel(logging.ERROR)  # Ray's start-up notices
    started = not ray.is_initialized()
    if started:  # address="local": a new instance, even when another process's Ray runs on this machine
        where = {"address": "local", "num_cpus": 2} if address is None else {"address": address}
        ray.init(**where, include_dashboard=False, log_to_driver=False, configure_logging=False)
    actor = None
    closers: list[Callable[[], None]] = []
    try:
        actor = ray.remote(num_cpus=0)(RayEcho).remote()
        endpoints = ray.get(actor.endpoints.remote(), timeout=120)
        raw_bytes = payload.tobytes()
        raw_call, raw_close = raw_caller(default_context(), endpoints["ray-raw"], raw_bytes, multipart=False)
        closers.append(raw_close)
        bus_call, bus_close = bus_caller(endpoints["ray-bus"], payload)
        closers.append(bus_close)
        echo = actor.echo

        def ray_call() -> None:
            ray.get(echo.remote(raw_bytes))

        return _measure({"ray-raw": raw_call, "ray-bus": bus_call, "ray-call": ray_call}, n)
    finally:
        for close in closers:
            close()
        if actor is not None:
            try:
                ray.get(actor.close.remote(), timeout=10)
            finally:
                ray.kill(actor, no_restart=True)
        if started:
            ray.shutdown()


def run(n: int, size: int, with_ray: bool = False, address: str | None = None) -> dict[str, Any]:
    """Run every configuration; returns {"results": {"transport/variant": figures}} with ratios to raw.
    `with_ray` adds the Ray section (the CLI's default), under transport "ray", with ratios to ray-raw,
    into an actor of the cluster at `address` (None: a local instance started for it)."""
    ctx = default_context()
    payload = np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8)
    raw_bytes = payload.tobytes()

    spawn = mp.get_context("spawn")
    here, there = spawn.Pipe()
    peer = spawn.Process(target=peer_main, args=(there,), name="bench-bus-peer", daemon=True)
    peer.start()
    endpoints = _from_peer(here, peer)  # ipc and tcp: in the other process
    local = Servers(("inproc",))  # inproc: a thread of this one
    endpoints |= local.endpoints

    callers: dict[str, Callable[[], None]] = {}
    closers: list[Callable[[], None]] = []
    try:
        for transport in TRANSPORTS:
            for variant in VARIANTS:
                name = f"{transport}/{variant}"
                if variant.startswith("raw"):
                    call, close = raw_caller(ctx, endpoints[name], raw_bytes, variant == "raw-multipart")
                else:
                    call, close = bus_caller(endpoints[name], payload)
                callers[name] = call
                closers.append(close)
        times = _measure(callers, n)
    finally:
        for close in closers:
            close()
        local.close()
        if peer.is_alive():
            here.send("stop")
            _from_peer(here, peer)
        peer.join(timeout=10)
    if with_ray:  # after the rest, so that Ray's processes are not running while it is timed
        times |= {f"{RAY}/{variant}": t for variant, t in _run_ray(n, payload, address).items()}

    results: dict[str, Any] = {}
    for name, t in times.items():
        results[name] = {"p50_us": float(np.percentile(t, 50)), "p99_us": float(np.percentile(t, 99))}
    for name, row in results.items():
        transport, variant = name.split("/")
        reference = RAY_REFERENCE if transport == RAY else REFERENCE
        if variant != reference:
            ref = results[f"{transport}/{reference}"]
            row["ratio_p50"] = row["p50_us"] / ref["p50_us"]
            row["ratio_p99"] = row["p99_us"] / ref["p99_us"]
    report: dict[str, Any] = {"n": n, "size": size, "reference": REFERENCE, "results": results}
    if with_ray:
        bus = results[f"{RAY}/ray-bus"]
        report["ray_reference"] = RAY_REFERENCE
        report["ray_bus_over_raw"] = {"p50": bus["ratio_p50"], "p99": bus["ratio_p99"]}
    return report


def main(argv: list[str] | None = None) -> int:
    """CLI entry: `amiagent bench bus [--n N] [--size BYTES] [--json PATH] [--no-ray | --address ADDR]`."""
    from rich.console import Console
    from rich.table import Table

    parser = argparse.ArgumentParser(prog="amiagent bench bus", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10000, help="timed round trips per configuration")
    parser.add_argument("--size", type=int, default=1024, help="payload bytes")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray actor section (Ray starts in ~5 s)")
    parser.add_argument("--address", help="run the Ray section's actor on the cluster at this address (default: "
                                          "start a local instance for it, shut down at the end)")
    args = parser.parse_args(argv)
    if args.n < 1 or args.size < 0:
        parser.error("--n must be >= 1 and --size >= 0")
    if args.no_ray and args.address:
        parser.error("--address is for the Ray section; drop it or --no-ray")

    console = Console()
    configs = len(TRANSPORTS) * len(VARIANTS)
    extra = "" if args.no_ray else f" (+{len(RAY_VARIANTS)} into a Ray actor)"
    # a plain line, not a spinner: a spinner's refresh thread would take the GIL while we time
    console.print(f"bench bus: {args.n} round trips x {configs} configurations{extra}, {args.size} B payload ...")
    report = run(args.n, args.size, with_ray=not args.no_ray, address=args.address)

    table = Table(title=f"amiagent bus vs raw pyzmq, {args.size} B round trip (µs), n={args.n}")
    for column in ("transport", "variant", "p50", "p99", "/raw p50", "/raw p99"):
        table.add_column(column, justify="left" if column in ("transport", "variant") else "right")
    sections = [(transport, VARIANTS) for transport in TRANSPORTS]
    if not args.no_ray:
        sections.append((RAY, RAY_VARIANTS))
    for transport, variants in sections:
        for variant in variants:
            row = report["results"][f"{transport}/{variant}"]
            ratio50 = f"{row['ratio_p50']:.2f}x" if "ratio_p50" in row else ""
            ratio99 = f"{row['ratio_p99']:.2f}x" if "ratio_p99" in row else ""
            table.add_row(transport, variant, f"{row['p50_us']:.1f}", f"{row['p99_us']:.1f}", ratio50, ratio99)
        table.add_section()
    console.print(table)
    console.print(
        "ipc/tcp: two processes; inproc: two threads of one process. raw: pyzmq with the bus's own socket "
        "calls (the reference); raw-multipart: pyzmq send_multipart/recv_multipart. inline: Server(inline=True), "
        "handler on the socket thread; pooled: default Server, handler on a worker thread."
    )
    if not args.no_ray:
        console.print(
            "ray: into a Ray actor, tcp to the node IP, ratios to ray-raw (raw pyzmq echo in the actor); "
            "ray-bus: Client -> Server(inline=True) in the actor; ray-call: ray.get(actor.echo.remote(payload))."
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
