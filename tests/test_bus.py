"""The bus over real ZeroMQ sockets: request/reply, concurrency, timeouts, hostile frames, pub/sub, shutdown."""

from __future__ import annotations

import math
import os
import threading
import time
import uuid

import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amiagent.bus import Client, Publisher, Server, Subscriber, default_context, ipc_endpoint
from amiagent.errors import BusError, BusTimeout, MessageError, RemoteError
from amiagent.messages import Array, Int, Number, Schema, decode, encode, register_schema

register_schema(Schema("test_echo", {
    "x": Int(),
    "sleep": Number(optional=True),
    "data": Array({"uint8", "float64"}, (None,), finite=True, optional=True),
}))


def echo(msg):
    if msg.get("sleep"):
        time.sleep(msg["sleep"])
    return "test_echo", {"x": msg["x"], "data": msg.get("data")}


def endpoint_for(transport: str) -> str:
    if transport == "inproc":
        return f"inproc://test-{uuid.uuid4().hex}"
    if transport == "ipc":
        return "ipc://*"
    return "tcp://127.0.0.1:0"


@pytest.fixture(autouse=True)
def no_leaked_threads():
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        extra = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not extra:
            return
        time.sleep(0.01)
    pytest.fail(f"threads left running: {extra}")


def raw_request(endpoint: str, frames: list[bytes], timeout_ms: int = 2000) -> list[bytes]:
    """Send raw frames through a DEALER (no validation on our side) and return the reply frames."""
    sock = default_context().socket(zmq.DEALER)
    sock.linger = 0
    sock.rcvtimeo = timeout_ms
    sock.connect(endpoint)
    try:
        sock.send_multipart(frames)
        return sock.recv_multipart()
    finally:
        sock.close(0)


# --------------------------------------------------------------------------- request/reply


@pytest.mark.parametrize("transport", ["inproc", "ipc", "tcp"])
@pytest.mark.parametrize("inline", [False, True], ids=["pooled", "inline"])
def test_request_reply(transport, inline):
    data = np.arange(100, dtype=np.float64)
    with Server(endpoint_for(transport), echo, inline=inline) as server, Client(server.endpoint) as client:
        assert server.endpoint.startswith(transport + "://")
        assert not server.endpoint.endswith(":0") and "*" not in server.endpoint
        for i in range(5):
            reply = client.request("test_echo", {"x": i, "data": data}, expect="test_echo")
            assert reply["x"] == i
            np.testing.assert_array_equal(reply["data"], data)
        assert server.served == 5


def test_ipc_file_lives_while_serving_and_is_removed():
    server = Server("ipc://*", echo).start()
    path = server.endpoint[len("ipc://"):]
    assert os.path.exists(path)
    server.close()
    assert not os.path.exists(path)
    assert not os.path.exists(os.path.dirname(path))

    explicit = ipc_endpoint("explicit")
    server = Server(explicit, echo).start()
    assert server.endpoint == explicit
    server.close()
    assert not os.path.exists(explicit[len("ipc://"):])
    assert not os.path.exists(os.path.dirname(explicit[len("ipc://"):]))


def test_slow_handler_does_not_block_another_client():
    with Server(endpoint_for("tcp"), echo, workers=4) as server:
        slow_done = {}

        def slow():
            with Client(server.endpoint, timeout=5) as c:
                c.request("test_echo", {"x": 1, "sleep": 1.0})
                slow_done["t"] = time.monotonic()

        thread = threading.Thread(target=slow)
        start = time.monotonic()
        thread.start()
        time.sleep(0.05)  # the slow request is in its handler now
        with Client(server.endpoint) as fast:
            assert fast.request("test_echo", {"x": 2})["x"] == 2
            fast_done = time.monotonic()
        thread.join()
    # behaviour, not speed: the fast request was answered while the slow one was still in its handler
    assert fast_done < slow_done["t"]
    assert slow_done["t"] - start >= 1.0


def test_timeout_then_late_reply_is_discarded():
    with Server(endpoint_for("ipc"), echo) as server, Client(server.endpoint, timeout=0.1) as client:
        with pytest.raises(BusTimeout, match="within 0.1 s"):
            client.request("test_echo", {"x": 1, "sleep": 0.3})
        time.sleep(0.3)  # the late reply (x=1) has arrived by now
        assert client.request("test_echo", {"x": 2})["x"] == 2
        assert client.request("test_echo", {"x": 3}, timeout=1.0)["x"] == 3


def test_no_server_times_out():
    with Client(endpoint_for("tcp").replace(":0", ":1"), timeout=0.05) as client:
        with pytest.raises(BusTimeout):
            client.request("test_echo", {"x": 1})


def test_handler_exception_becomes_error_reply_and_server_survives(caplog):
    def handler(msg):
        if msg["x"] < 0:
            raise ValueError(f"x must be >= 0, got {msg['x']}")
        return "test_echo", {"x": msg["x"]}

    with Server(endpoint_for("inproc"), handler) as server, Client(server.endpoint) as client:
        with pytest.raises(RemoteError, match="ValueError: x must be >= 0, got -1") as info:
            client.request("test_echo", {"x": -1})
        assert info.value.kind == "ValueError"
        assert "handler failed" in caplog.text
        assert client.request("test_echo", {"x": 1})["x"] == 1


def test_invalid_reply_from_handler_is_an_error_reply():
    with Server(endpoint_for("inproc"), lambda msg: ("test_echo", {"x": "not an int"})) as server:
        with Client(server.endpoint) as client, pytest.raises(RemoteError, match="invalid reply.*field 'x'") as info:
            client.request("test_echo", {"x": 1})
        assert info.value.kind == "MessageError"


def test_expect_mismatch():
    with Server(endpoint_for("inproc"), echo) as server, Client(server.endpoint) as client:
        with pytest.raises(MessageError, match="expected kind 'ok'"):
            client.request("test_echo", {"x": 1}, expect="ok")


def test_malformed_request_is_never_sent():
    with Server(endpoint_for("inproc"), echo) as server, Client(server.endpoint) as client:
        with pytest.raises(MessageError, match="field 'data'.*finite"):
            client.request("test_echo", {"x": 1, "data": np.array([np.nan])})
        assert server.served == 0


@pytest.mark.parametrize("inline", [False, True], ids=["pooled", "inline"])
def test_malformed_frames_get_error_replies(inline):
    with Server(endpoint_for("tcp"), echo, inline=inline) as server:
        bad = {
            b"\xc1": "not a valid msgpack",
            encode("stop"): "",  # valid frame, but the handler chokes on a 'stop' (no 'x')
            b"\x81\xa1k\xa9test_echo": "missing field 'v'",
        }
        for frame, text in bad.items():
            rid, reply = raw_request(server.endpoint, [b"id", frame])
            msg = decode(reply, expect="error")
            assert rid == b"id" and text in msg["message"]
        # bad framing: no request id
        _, reply = raw_request(server.endpoint, [b"only-one-frame"])
        assert "expected frames" in decode(reply)["message"]
        with Client(server.endpoint) as client:
            assert client.request("test_echo", {"x": 9})["x"] == 9


@pytest.mark.parametrize("inline", [False, True], ids=["pooled", "inline"])
def test_extra_frames_get_an_error_reply_and_do_not_desync_the_server(inline):
    with Server(endpoint_for("tcp"), echo, inline=inline) as server:
        rid, reply = raw_request(server.endpoint, [b"id", encode("test_echo", {"x": 1}), b"extra"])
        assert rid == b"id" and "got 3 frame(s)" in decode(reply, expect="error")["message"]
        with Client(server.endpoint) as client:
            assert client.request("test_echo", {"x": 9})["x"] == 9


@pytest.mark.parametrize("inline", [False, True], ids=["pooled", "inline"])
def test_a_client_cannot_pose_as_the_servers_own_threads(inline):
    # workers and close() reach the I/O thread through the ROUTER under secret routing ids;
    # a client that picks look-alike ids is just another (here malformed) client
    with Server(endpoint_for("tcp"), echo, inline=inline) as server:
        for routing_id in (b"amiagent-stop-" + b"0" * 32, b"amiagent-worker0-" + b"0" * 32):
            sock = default_context().socket(zmq.DEALER)
            sock.linger = 0
            sock.rcvtimeo = 2000
            sock.setsockopt(zmq.ROUTING_ID, routing_id)
            sock.connect(server.endpoint)
            try:
                sock.send(b"stop")
                assert "expected frames" in decode(sock.recv_multipart()[1], expect="error")["message"]
            finally:
                sock.close(0)
        with Client(server.endpoint) as client:
            assert client.request("test_echo", {"x": 3})["x"] == 3


def test_oversize_request_is_refused():
    with Server(endpoint_for("tcp"), echo, max_bytes=1024) as server:
        frame = encode("test_echo", {"x": 1, "data": np.zeros(1500, np.uint8)})
        _, reply = raw_request(server.endpoint, [b"id", frame])
        assert "exceeds the limit of 1024 bytes" in decode(reply)["message"]
        with Client(server.endpoint) as client:
            assert client.request("test_echo", {"x": 1})["x"] == 1


def _apply(frame: bytes, edits: list[tuple[int, int]]) -> bytes:
    out = bytearray(frame)
    for i, value in edits:
        out[i] = value
    return bytes(out[: max(1, len(out) - edits[0][1] % 3)])


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(frame=st.one_of(
    st.binary(max_size=256),
    st.sampled_from([encode("test_echo", {"x": 1, "data": np.arange(4.0)})]).flatmap(
        lambda f: st.lists(st.tuples(st.integers(0, len(f) - 1), st.integers(0, 255)), min_size=1, max_size=4).map(
            lambda edits: _apply(f, edits))),
))
def test_hostile_frames_through_a_socket(hostile_server, frame):
    rid, reply = raw_request(hostile_server.endpoint, [b"h", frame])
    msg = decode(reply)
    assert rid == b"h"
    assert msg.kind in ("error", "test_echo")


HOSTILE = [
    [b"h", b"\xc1"],  # not msgpack
    [b"h", encode("test_echo", {"x": 1, "data": np.arange(4.0)})[:-5]],  # truncated
    [b"h", b"\x92\x01\x02"],  # msgpack [1, 2]: not a map envelope
    [b"only-one-frame"],  # bad framing
]


@pytest.mark.parametrize("inline", [False, True], ids=["pooled", "inline"])
def test_hostile_server_still_serves(inline):
    # its own server and its own garbage: nothing here depends on what ran before
    with Server(endpoint_for("tcp"), echo, inline=inline) as server:
        for frames in HOSTILE:
            reply = raw_request(server.endpoint, frames)[-1]
            assert decode(reply, expect="error")["kind"] == "MessageError"
        assert server.rejected == server.served == len(HOSTILE)
        with Client(server.endpoint) as client:
            assert client.request("test_echo", {"x": 7})["x"] == 7
        assert (server.served, server.rejected) == (len(HOSTILE) + 1, len(HOSTILE))


@pytest.fixture(scope="module")
def hostile_server():
    server = Server("tcp://127.0.0.1:0", echo).start()
    yield server
    # after all the garbage, a good request is still answered
    with Client(server.endpoint) as client:
        assert client.request("test_echo", {"x": 42})["x"] == 42
    server.close()


def test_client_is_thread_safe():
    with Server(endpoint_for("inproc"), echo) as server, Client(server.endpoint) as client:
        errors = []

        def worker(base):
            try:
                for i in range(20):
                    assert client.request("test_echo", {"x": base + i})["x"] == base + i
            except Exception as e:  # collected and asserted below
                errors.append(e)

        threads = [threading.Thread(target=worker, args=(k * 100,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors


# --------------------------------------------------------------------------- lifecycle


@pytest.mark.parametrize("transport", ["inproc", "ipc", "tcp"])
def test_close_is_idempotent_and_leaves_no_threads(transport):
    before = set(threading.enumerate())
    server = Server(endpoint_for(transport), echo, workers=3).start()
    client = Client(server.endpoint)
    assert client.request("test_echo", {"x": 1})["x"] == 1
    assert len(set(threading.enumerate()) - before) == 4  # I/O thread + 3 workers
    client.close()
    client.close()
    server.close()
    server.close()
    assert set(threading.enumerate()) <= before
    with pytest.raises(BusError, match="closed"):
        client.request("test_echo", {"x": 1})


def test_close_returns_when_the_io_thread_has_failed(caplog, monkeypatch):
    server = Server(endpoint_for("inproc"), echo, workers=2).start()
    io_thread = server._threads[0]

    def broken(*args):
        raise RuntimeError("boom")

    monkeypatch.setattr(server, "_reply_bad_framing", broken)
    sock = default_context().socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(server.endpoint)
    sock.send(b"only-one-frame")  # bad framing: the I/O thread fails, closes the ROUTER, ends
    sock.close(0)
    io_thread.join(timeout=2)
    assert not io_thread.is_alive() and "I/O thread failed" in caplog.text
    closer = threading.Thread(target=server.close)  # nothing is left to wake: close() must not block
    closer.start()
    closer.join(timeout=2)
    assert not closer.is_alive()


def test_close_without_start_and_endpoint_before_start():
    server = Server(endpoint_for("tcp"), echo)
    with pytest.raises(BusError, match="not started"):
        _ = server.endpoint
    server.close()
    with pytest.raises(BusError, match="closed"):
        server.start()


def test_bind_conflict_is_a_bus_error():
    with Server(endpoint_for("tcp"), echo) as server:
        with pytest.raises(BusError, match="cannot bind"):
            Server(server.endpoint, echo).start()


# --------------------------------------------------------------------------- pub/sub


def recv_until(sub: Subscriber, pub: Publisher, topic: str, fields: dict, deadline_s: float = 2.0):
    """Publish until something arrives (a new subscriber joins late: zmq's slow joiner)."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        pub.publish(topic, "telemetry", fields)
        got = sub.recv(timeout=0.02)
        if got is not None:
            return got
    return None


@pytest.mark.parametrize("transport", ["inproc", "ipc", "tcp"])
def test_pub_sub_topics_filter(transport):
    with Publisher(endpoint_for(transport)) as pub, \
            Subscriber(pub.endpoint, ["telemetry"]) as sub, \
            Subscriber(pub.endpoint, ["estop"]) as other:
        fields = {"cycle": 1, "t": 0.1, "values": {"a": 1.0}}
        topic, msg = recv_until(sub, pub, "telemetry", fields)
        assert topic == "telemetry" and msg.kind == "telemetry" and msg["values"] == {"a": 1.0}
        assert other.recv(timeout=0.05) is None  # subscribed elsewhere: filtered out


def test_subscriber_drops_malformed_messages(caplog):
    ctx = default_context()
    raw_pub = ctx.socket(zmq.PUB)
    raw_pub.linger = 0
    port = raw_pub.bind_to_random_port("tcp://127.0.0.1")
    try:
        with Subscriber(f"tcp://127.0.0.1:{port}", [""]) as sub:
            good = encode("estop", {"reason": "x"})
            deadline = time.monotonic() + 2.0
            got = None
            while got is None and time.monotonic() < deadline:  # wait out the slow joiner
                raw_pub.send_multipart([b"estop", good])
                got = sub.recv(timeout=0.02)
            assert got is not None
            while sub.recv(timeout=0.05) is not None:
                pass
            raw_pub.send_multipart([b"estop", b"\xc1garbage"])
            raw_pub.send_multipart([b"estop", encode("estop", {"reason": "y"}), b"extra"])
            raw_pub.send_multipart([b"estop", encode("estop", {"reason": "z"})])
            topic, msg = sub.recv(timeout=1.0)
            assert msg["reason"] == "z"
            assert sub.dropped == 2
            assert "dropped a malformed message" in caplog.text
        with pytest.raises(BusError, match="closed"):
            sub.recv(timeout=0)
        sub.close()
    finally:
        raw_pub.close(0)


def test_publisher_validates_and_closes_cleanly():
    pub = Publisher("ipc://*")
    path = pub.endpoint[len("ipc://"):]
    assert os.path.exists(path)
    with pytest.raises(MessageError, match="field 'cycle'"):
        pub.publish("telemetry", "telemetry", {"cycle": -1, "t": 0.0, "values": {}})
    pub.close()
    pub.close()
    assert not os.path.exists(path)
    with pytest.raises(BusError, match="closed"):
        pub.publish("telemetry", "telemetry", {"cycle": 1, "t": 0.0, "values": {}})


def test_backlog_is_bounded():
    release = threading.Event()

    def blocked(msg):
        release.wait(5)
        return "test_echo", {"x": msg["x"]}

    with Server(endpoint_for("inproc"), blocked, workers=1) as server:
        sock = default_context().socket(zmq.DEALER)
        sock.linger = 0
        sock.rcvtimeo = 2000
        sock.connect(server.endpoint)
        try:
            frame = encode("test_echo", {"x": 1})
            for _ in range(1100):
                sock.send_multipart([b"b", frame])
            busy = decode(sock.recv_multipart()[1])  # the first replies are refusals; the worker is stuck
            assert busy.kind == "error" and busy["kind"] == "Busy"
            release.set()
        finally:
            release.set()
            sock.close(0)


# --------------------------------------------------------------------------- benchmark


def test_bench_bus_reports_every_configuration_against_raw():
    from amiagent.bench import bus as bench

    report = bench.run(n=20, size=64)
    assert (report["n"], report["size"], report["reference"]) == (20, 64, "raw")
    results = report["results"]
    assert set(results) == {f"{t}/{v}" for t in bench.TRANSPORTS for v in bench.VARIANTS}
    for name, row in results.items():
        assert math.isfinite(row["p99_us"]) and 0 < row["p50_us"] <= row["p99_us"], name
        transport, variant = name.split("/")
        if variant == "raw":
            assert set(row) == {"p50_us", "p99_us"}, name
            continue
        # each ratio is this configuration's figure over its own transport's raw reference
        raw = results[f"{transport}/raw"]
        assert row["ratio_p50"] == pytest.approx(row["p50_us"] / raw["p50_us"], rel=1e-12), name
        assert row["ratio_p99"] == pytest.approx(row["p99_us"] / raw["p99_us"], rel=1e-12), name
