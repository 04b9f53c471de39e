"""Bodies served over real ZeroMQ: a tiny recording body (round trips, malformed commands, e-stop) and
open_field's point robot in real pybullet (observe, command, stop, e-stop, the watchdog), in lock-step."""

from __future__ import annotations

import threading
import time
import uuid

import msgpack
import numpy as np
import pytest
import zmq

from amiagent.bus.body import BodyServer, RemoteBody
from amiagent.bus import Publisher, default_context
from amiagent.contracts import Body, Observation
from amiagent.errors import BodyError, MessageError, RemoteError
from amiagent.messages import decode, encode


class RecordingBody(Body):
    """A 2-D point body that records what it is told; checks its own bounds like a real one."""

    def __init__(self):
        self.action_low = np.array([-1.0, -1.0])
        self.action_high = np.array([1.0, 1.0])
        self.commands: list[np.ndarray] = []
        self.stops = 0
        self.t = 0.0

    def observe(self) -> Observation:
        self.t += 0.1
        return Observation(t=self.t, state=np.array([self.t, 0.0, 0.0, 0.0]),
                           images={"cam": np.full((4, 6, 3), 7, np.uint8)})

    def command(self, action: np.ndarray) -> None:
        action = np.asarray(action, dtype=np.float64)
        if action.shape != self.action_low.shape or not np.isfinite(action).all():
            raise BodyError(f"bad action {action!r}")
        if (action < self.action_low).any() or (action > self.action_high).any():
            raise BodyError(f"action {action} outside [{self.action_low}, {self.action_high}]")
        action[0] += 0.0  # must be writable: the server hands the body its own copy
        self.commands.append(action)

    def stop(self) -> None:
        self.stops += 1


@pytest.fixture(params=["inproc", "tcp"])
def served(request):
    body = RecordingBody()
    endpoint = f"inproc://body-{uuid.uuid4().hex}" if request.param == "inproc" else "tcp://127.0.0.1:0"
    with BodyServer(body, endpoint) as server:
        remote = RemoteBody(server.endpoint, timeout=2.0)
        yield body, server, remote
        remote.close()


def raw_request(endpoint: str, frame: bytes) -> tuple[str, str]:
    """Send one unvalidated frame; return the error reply's (kind, message)."""
    sock = default_context().socket(zmq.DEALER)
    sock.linger = 0
    sock.rcvtimeo = 2000
    sock.connect(endpoint)
    try:
        sock.send_multipart([b"r", frame])
        msg = decode(sock.recv_multipart()[1])
    finally:
        sock.close(0)
    assert msg.kind == "error", msg
    return msg["kind"], msg["message"]


def ext(arr: np.ndarray) -> msgpack.ExtType:
    import struct

    dstr = arr.dtype.str
    header = struct.pack(f"<B{len(dstr)}sB{arr.ndim}I", len(dstr), dstr.encode(), arr.ndim, *arr.shape)
    return msgpack.ExtType(1, header + np.ascontiguousarray(arr).tobytes())


def command_frame(action, kind: str = "command", **extra) -> bytes:
    fields = {"k": kind, "v": 1, "action": ext(np.asarray(action)), "seq": 1}
    fields.update(extra)
    return msgpack.packb(fields, use_bin_type=True)


def test_describe_observe_command_round_trip(served):
    body, _, remote = served
    np.testing.assert_array_equal(remote.action_low, body.action_low)
    np.testing.assert_array_equal(remote.action_high, body.action_high)
    obs = remote.observe()
    assert obs.t == pytest.approx(0.1)
    np.testing.assert_array_equal(obs.state, [0.1, 0.0, 0.0, 0.0])
    assert obs.images["cam"].shape == (4, 6, 3) and obs.images["cam"].dtype == np.uint8
    remote.command(np.array([0.5, -0.5]))
    remote.command([0.1, 0.2])
    np.testing.assert_array_equal(body.commands[0], [0.5, -0.5])
    assert len(body.commands) == 2
    remote.stop()
    assert body.stops == 1


BAD_COMMANDS = {
    "nan": (command_frame([np.nan, 0.0]), "MessageError", "field 'action'"),
    "inf": (command_frame([np.inf, 0.0]), "MessageError", "finite"),
    "too-long": (command_frame([0.1, 0.2, 0.3]), "MessageError", "expected shape (2,) for this body"),
    "2-d": (command_frame([[0.1, 0.2]]), "MessageError", "shape"),
    "int-dtype": (command_frame(np.array([1, 0], np.int64)), "MessageError", "dtype"),
    "big-endian": (command_frame(np.array([0.1, 0.2], ">f8")), "MessageError", "'>f8' not allowed"),
    "unknown-kind": (command_frame([0.1, 0.2], kind="comand"), "MessageError", "unknown message kind 'comand'"),
    "wrong-kind": (command_frame([0.1, 0.2], kind="plan"), "MessageError", "missing field"),
    "unserved-kind": (encode("telemetry", {"cycle": 1, "t": 0.0, "values": {}}), "MessageError",
                      "a body server serves"),
    "extra-field": (command_frame([0.1, 0.2], extra=1), "MessageError", "unexpected field"),
    "no-seq": (msgpack.packb({"k": "command", "v": 1, "action": ext(np.zeros(2))}), "MessageError",
               "missing field 'seq'"),
    "not-a-map": (b"\x92\x01", "MessageError", "not a valid msgpack"),
    # well-formed but out of bounds: refused by the body's own check
    "out-of-bounds": (command_frame([2.0, 0.0]), "BodyError", "outside"),
}


@pytest.mark.parametrize("frame, kind, text", BAD_COMMANDS.values(), ids=BAD_COMMANDS.keys())
def test_malformed_commands_never_reach_the_body(served, frame, kind, text):
    body, server, remote = served
    got_kind, message = raw_request(server.endpoint, frame)
    assert got_kind == kind and text in message, message
    assert body.commands == []
    remote.command([0.0, 0.0])  # and the server still serves
    assert len(body.commands) == 1


def test_remote_body_refuses_bad_actions_locally(served):
    body, _, remote = served
    with pytest.raises(MessageError, match="finite"):
        remote.command([np.nan, 0.0])
    with pytest.raises(MessageError, match="shape"):
        remote.command([0.0, 0.0, 0.0])
    with pytest.raises(RemoteError, match="outside") as info:
        remote.command([5.0, 0.0])
    assert info.value.kind == "BodyError"
    assert body.commands == []


def test_estop_refuses_commands_and_stops_the_body(served):
    body, server, remote = served
    remote.command([0.1, 0.1])
    remote.estop("operator pressed the button")
    assert server.estopped and body.stops == 1
    with pytest.raises(RemoteError, match="emergency-stopped.*operator") as info:
        remote.command([0.2, 0.2])
    assert info.value.kind == "EStop"
    assert len(body.commands) == 1
    remote.observe()  # observing is still fine
    remote.release()
    assert not server.estopped
    remote.command([0.3, 0.3])
    assert len(body.commands) == 2


def test_estop_topic():
    body = RecordingBody()
    with Publisher("tcp://127.0.0.1:0") as pub, \
            BodyServer(body, "tcp://127.0.0.1:0", estop_endpoint=pub.endpoint) as server:
        remote = RemoteBody(server.endpoint)
        try:
            deadline = time.monotonic() + 2.0
            while not server.estopped and time.monotonic() < deadline:  # slow joiner: repeat
                pub.publish("estop", "estop", {"reason": "watchdog"})
                time.sleep(0.01)
            assert server.estopped and body.stops >= 1
            with pytest.raises(RemoteError, match="watchdog"):
                remote.command([0.0, 0.0])
            pub.publish("estop", "release")
            deadline = time.monotonic() + 2.0
            while server.estopped and time.monotonic() < deadline:
                time.sleep(0.01)
            remote.command([0.0, 0.0])
            assert len(body.commands) == 1
        finally:
            remote.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("amiagent-")]


def test_remote_body_close_twice_and_server_close_twice():
    body = RecordingBody()
    server = BodyServer(body, "ipc://*").start()
    remote = RemoteBody(server.endpoint)
    remote.close()
    remote.close()
    server.close()
    server.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("amiagent-")]


# --------------------------------------------------------------------------- a real pybullet body


@pytest.fixture
def served_robot():
    """open_field's point robot (real pybullet) served over real tcp. The test steps the simulation itself,
    between requests: lock-step, so every figure below is the simulation's, never the machine's timing."""
    from amiagent.sim.worlds import OpenField

    world = OpenField(OpenField.Params(n_zones=0))
    world.reset(0)
    server = BodyServer(world.body, "tcp://127.0.0.1:0").start()
    remote = RemoteBody(server.endpoint, timeout=30.0)  # generous: only a hang should time out
    yield world, server, remote
    remote.close()
    server.close()
    world.close()


def speed(obs: Observation) -> float:
    return float(np.hypot(*obs.state[2:]))


def test_a_served_point_robot_observes_moves_and_stops(served_robot):
    world, _, remote = served_robot
    robot = world.body
    np.testing.assert_array_equal(remote.action_low, robot.action_low)
    np.testing.assert_array_equal(remote.action_high, robot.action_high)
    start = remote.observe()
    assert start.t == 0.0 and start.images == {}
    np.testing.assert_array_equal(start.state, robot.observe().state)  # float64 unchanged over the wire
    np.testing.assert_array_equal(start.state[2:], [0.0, 0.0])

    remote.command(np.array([1.0, -0.5]))
    assert robot.held_command == (1.0, -0.5)
    world.advance(world.dt)
    moved = remote.observe()
    np.testing.assert_array_equal(moved.state, robot.observe().state)
    assert moved.t == pytest.approx(world.dt)
    # the exact double integrator: v = a t, p = a h^2 n(n+1)/2 over n = 24 substeps of h = 1/240 s
    np.testing.assert_allclose(moved.state[2:], [0.1, -0.05], atol=1e-12)
    np.testing.assert_allclose(moved.state[:2] - start.state[:2], np.array([1.0, -0.5]) * 300 / 240**2, atol=1e-12)

    with pytest.raises(MessageError, match="finite"):  # refused before the wire: the held command stands
        remote.command([np.nan, 0.0])
    remote.command([5.0, 0.0])  # beyond the bounds: the real body clips (the recording one refuses)
    assert robot.held_command == (2.0, 0.0)

    remote.stop()
    assert robot.held_command is None
    world.advance(world.dt)  # braking at 2 m/s^2 from 0.1 m/s takes 0.05 s
    held = remote.observe()
    assert speed(held) < 1e-12
    world.advance(world.dt)
    np.testing.assert_array_equal(remote.observe().state, held.state)  # and it holds


def test_a_served_point_robot_is_e_stopped_and_released(served_robot):
    world, server, remote = served_robot
    robot = world.body
    remote.command([2.0, 2.0])
    world.advance(world.dt)
    assert speed(remote.observe()) > 0.2
    remote.estop("operator pressed the button")
    assert server.estopped and robot.held_command is None  # the server braked the body
    with pytest.raises(RemoteError, match="emergency-stopped.*operator") as info:
        remote.command([2.0, 2.0])
    assert info.value.kind == "EStop" and robot.held_command is None
    world.advance(2 * world.dt)
    stopped = remote.observe()
    assert speed(stopped) < 1e-12
    world.advance(world.dt)
    np.testing.assert_array_equal(remote.observe().state, stopped.state)
    remote.release()
    assert not server.estopped
    remote.command([-1.0, 0.0])
    world.advance(world.dt)
    assert remote.observe().state[2] == pytest.approx(-0.1, abs=1e-12)


def test_a_served_point_robot_brakes_when_commands_stop_coming(served_robot):
    """The body's watchdog: one command, then silence; the robot stops by itself, the command still held."""
    world, _, remote = served_robot
    robot = world.body
    watchdog_s, max_accel = world.params.watchdog_s, world.params.max_accel
    sent = remote.observe().t
    remote.command([max_accel, 0.0])
    speeds, stopped_at = [], None
    for _ in range(100):  # 10 s of sim time: a generous bound on a stop due after 0.5 s
        world.advance(world.dt)
        obs = remote.observe()
        speeds.append(speed(obs))
        if speeds[-1] < 1e-12:
            stopped_at = obs.t
            break
    assert stopped_at is not None, f"still moving after 10 s: speeds {speeds}"
    assert robot.held_command == (max_accel, 0.0)  # nobody sent stop: the watchdog braked
    assert speeds[0] == pytest.approx(max_accel * world.dt, abs=1e-12)  # the fresh command was obeyed
    # the stale command pushed for watchdog_s, no longer: a peak of max_accel * watchdog_s, then braking at
    # max_accel takes watchdog_s again; observed at control steps, so the stop is seen within one more step
    assert max(speeds) <= max_accel * watchdog_s + 1e-12
    assert stopped_at - sent <= 2 * watchdog_s + world.dt + 1e-9
    world.advance(world.dt)
    assert speed(remote.observe()) < 1e-12  # and it stays stopped
