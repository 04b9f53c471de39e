"""The wire codec: round trips, validation errors that name the field, hostile frames."""

from __future__ import annotations

import math
import struct

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amiagent.contracts import Observation, Settings, Task
from amiagent.errors import ConfigError, MessageError
from amiagent.messages import (
    NDARRAY_EXT,
    Int,
    Message,
    Schema,
    decode,
    encode,
    kinds,
    observation_from_message,
    observation_to_fields,
    register_schema,
    schema_for,
    settings_from_message,
    settings_to_fields,
    task_from_message,
    task_to_fields,
)

RNG = np.random.default_rng(0)

VALID: dict[str, dict] = {
    "observation": {
        "t": 1.5,
        "state": np.array([0.0, 1.0, -0.5, 0.25]),
        "images": {"front": RNG.integers(0, 256, (4, 5, 3), dtype=np.uint8)},
    },
    "command": {"action": np.array([0.5, -0.25], dtype=np.float32), "seq": 7},
    "stop": {},
    "estop": {"reason": "operator"},
    "release": {},
    "observe": {},
    "describe": {},
    "body_info": {"action_low": -np.ones(2), "action_high": np.ones(2)},
    "telemetry": {"cycle": 3, "t": 0.3, "values": {"cost.total": 1.25, "violation": 0}},
    "task": {
        "name": "reach",
        "goal": [1.0, 2.0],
        "constraints": {"keep_out": {"circles": [[1.0, 1.0, 0.3]]}, "speed_limit": {"limit": 1.5}},
        "goal_tolerance": 0.2,
        "max_steps": 400,
    },
    "settings": {
        "goal": [1.0, 2.0, 0.0, 0.0],
        "horizon": 16,
        "weights": {"goal_distance": 1.0, "action_effort": 0.01},
        "guardrails": {"speed_limit": {"limit": 1.5}},
        "mode": "mode2",
        "version": 2,
    },
    "plan": {
        "actions": RNG.standard_normal((16, 2)).astype(np.float32),
        "states": RNG.standard_normal((16, 4)).astype(np.float32),
        "total": 3.5,
        "violation": np.zeros(16),
    },
    "ok": {"payload": {"n": 1, "xs": [1.0, "a", None, True], "arr": np.arange(3, dtype=np.int64)}},
    "error": {"kind": "ValueError", "message": "bad"},
}
CORE_KINDS = tuple(VALID)


def assert_same(a, b):
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray)
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    elif isinstance(a, dict):
        assert set(a) == set(b)
        for k in a:
            assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    else:
        assert a == b and type(a) is type(b)


def pack_raw(obj) -> bytes:
    """msgpack without our validation, to build malformed frames."""
    return msgpack.packb(obj, use_bin_type=True)


def ext_array(dtype: str, shape: tuple[int, ...], data: bytes) -> msgpack.ExtType:
    header = struct.pack(f"<B{len(dtype)}sB{len(shape)}I", len(dtype), dtype.encode(), len(shape), *shape)
    return msgpack.ExtType(NDARRAY_EXT, header + data)


def deep_field(kind: str, name: str, depth: int = 1000) -> bytes:
    """A frame whose field `name` is a list nested `depth` deep."""
    head = b"\x83" + b"".join(pack_raw(x) for x in ("k", kind, "v", 1, name))
    return head + b"\x91" * depth + b"\x01"


def envelope(_kind: str, _fields: dict | None = None, **fields) -> dict:
    out = {"k": _kind, "v": 1}
    out.update(_fields or {})
    out.update(fields)
    return out


# --------------------------------------------------------------------------- round trips


def test_every_core_kind_is_registered():
    assert set(CORE_KINDS) <= set(kinds())


@pytest.mark.parametrize("kind", CORE_KINDS)
def test_round_trip_every_kind(kind):
    frame = encode(kind, VALID[kind])
    msg = decode(frame, expect=kind)
    assert msg.kind == kind
    assert_same(dict(VALID[kind]), dict(msg.fields))


def test_decoded_arrays_are_read_only_views():
    msg = decode(encode("command", VALID["command"]))
    action = msg["action"]
    assert not action.flags.writeable
    with pytest.raises(ValueError):
        action[0] = 1.0


@pytest.mark.parametrize("dtype", ["bool", "uint8", "int32", "int64", "float32", "float64"])
@pytest.mark.parametrize("shape", [(0,), (3,), (2, 3), (2, 1, 4), ()])
def test_arrays_keep_dtype_shape_values(dtype, shape):
    arr = np.asarray(RNG.standard_normal(shape) * 10).astype(dtype)
    msg = decode(encode("ok", {"payload": {"a": arr}}))
    assert_same(arr, msg["payload"]["a"])


def test_non_contiguous_arrays_are_sent_contiguous():
    arr = np.arange(12, dtype=np.float64).reshape(3, 4)[:, ::2]
    out = decode(encode("ok", {"payload": arr}))["payload"]
    np.testing.assert_array_equal(arr, out)


def test_non_contiguous_arrays_in_array_fields_are_sent_contiguous():
    actions = np.arange(32, dtype=np.float32).reshape(2, 16).T  # (16, 2), Fortran order
    image = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)[:, ::-1]
    plan = decode(encode("plan", dict(VALID["plan"], actions=actions)))
    obs = decode(encode("observation", dict(VALID["observation"], images={"cam": image})))
    np.testing.assert_array_equal(plan["actions"], actions)
    np.testing.assert_array_equal(obs["images"]["cam"], image)


def test_received_arrays_are_read_only_ndarrays_wherever_they_sit():
    # arrays are built by the spec of the field that holds them: Array, MapOf(Array), nested Data
    obs = decode(encode("observation", VALID["observation"]))
    ok = decode(encode("ok", {"payload": {"xs": [np.arange(3)], "m": {"a": np.ones(2)}}}))
    for arr in (obs["state"], obs["images"]["front"], ok["payload"]["xs"][0], ok["payload"]["m"]["a"]):
        assert type(arr) is np.ndarray and not arr.flags.writeable


def test_an_array_where_a_scalar_belongs_is_named_by_dtype_and_shape():
    frame = pack_raw(envelope("estop", reason=ext_array("<f8", (2,), b"\0" * 16)))
    with pytest.raises(MessageError, match=r"field 'reason': expected a string, got <f8 array of shape \(2,\)"):
        decode(frame)


def test_memoryview_frames_decode():
    frame = encode("estop", {"reason": "x"})
    assert decode(memoryview(frame))["reason"] == "x"


def test_observation_converter_round_trip():
    obs = Observation(t=2.0, state=np.array([1.0, 2.0, 0.1, 0.2]), images={"cam": np.zeros((8, 8, 3), np.uint8)})
    back = observation_from_message(decode(encode("observation", observation_to_fields(obs))))
    assert back.t == obs.t
    assert_same(obs.state, back.state)
    assert_same(dict(obs.images), dict(back.images))
    bare = Observation(t=0.0, state=np.zeros(4))
    assert observation_from_message(decode(encode("observation", observation_to_fields(bare)))).images == {}


def test_task_and_settings_converters_round_trip():
    task = Task(name="reach", goal=(1.0, 2.0), constraints={"keep_out": {"circles": [[1.0, 1.0, 0.3]]}},
                goal_tolerance=0.3, max_steps=50)
    assert task_from_message(decode(encode("task", task_to_fields(task)))) == task
    st_ = Settings(goal=(1.0, 2.0, 0.0, 0.0), horizon=8, weights={"goal_distance": 1.0},
                   guardrails={"speed_limit": {"limit": 1.5}}, mode="mode1", version=3)
    assert settings_from_message(decode(encode("settings", settings_to_fields(st_)))) == st_


def test_task_carries_its_goal_observation_and_rejects_a_malformed_one():
    frame = np.zeros((8, 8, 3), dtype=np.uint8)
    frame[2, 3] = (38, 89, 229)
    seen = Observation(t=0.0, state=np.array([1.0, 2.0, 0.0, 0.0]), images={"top": frame})
    task = Task(name="reach", goal=(1.0, 2.0), goal_tolerance=0.3, max_steps=50, goal_observation=seen)
    back = task_from_message(decode(encode("task", task_to_fields(task))))
    assert back == task  # goal_observation is not part of equality: compare it on its own
    assert_same(back.goal_observation.state, seen.state)
    assert_same(back.goal_observation.images["top"], frame)
    assert task_from_message(decode(encode("task", task_to_fields(Task(name="r", goal=(1.0,)))))).goal_observation \
        is None
    fields = task_to_fields(task)
    for bad, why in (({**fields["goal_observation"], "images": {"top": frame.astype(np.float32)}}, "uint8"),
                     ({**fields["goal_observation"], "pose": 1.0}, "unexpected"),
                     ({"t": 0.0, "images": {"top": frame}}, "missing"),
                     ({**fields["goal_observation"], "state": np.array([np.nan])}, "finite")):
        with pytest.raises(MessageError, match=why):
            encode("task", {**fields, "goal_observation": bad})


def test_converter_rejects_invalid_values_as_message_error():
    fields = dict(VALID["settings"], mode="mode9")
    with pytest.raises(MessageError, match="mode"):
        settings_from_message(decode(encode("settings", fields)))
    with pytest.raises(MessageError, match="'task'"):
        task_from_message(decode(encode("estop", {"reason": "x"})))


def test_register_schema_extends_and_guards_the_table():
    schema = Schema("test_counter", {"n": Int(min=0)})
    register_schema(schema)
    register_schema(schema)  # same schema again: fine
    assert decode(encode("test_counter", {"n": 3}))["n"] == 3
    with pytest.raises(ConfigError, match="already registered"):
        register_schema(Schema("test_counter", {"m": Int()}))
    with pytest.raises(ConfigError, match="reserved"):
        Schema("bad", {"k": Int()})
    assert schema_for("test_counter") is schema


# --------------------------------------------------------------------------- validation errors


@pytest.mark.parametrize(
    "fields, match",
    [
        ({"action": np.array([np.nan, 0.0]), "seq": 1}, r"field 'action'.*finite.*1 NaN"),
        ({"action": np.array([np.inf, 0.0]), "seq": 1}, r"field 'action'.*finite"),
        ({"action": np.zeros((2, 2)), "seq": 1}, r"field 'action'.*shape \(\*,\).*\(2, 2\)"),
        ({"action": np.zeros(2, np.int32), "seq": 1}, r"field 'action'.*dtype float32\|float64.*<i4"),
        ({"action": np.zeros(2, ">f8"), "seq": 1}, r"field 'action'.*>f8"),
        ({"action": [0.0, 1.0], "seq": 1}, r"field 'action'.*array.*got list"),
        ({"action": np.zeros(2), "seq": 1.0}, r"field 'seq'.*int.*float"),
        ({"action": np.zeros(2), "seq": True}, r"field 'seq'.*int.*bool"),
        ({"action": np.zeros(2)}, r"missing field 'seq'"),
        ({"action": np.zeros(2), "seq": 1, "extra": 2}, r"unexpected field.*'extra'"),
    ],
)
def test_encode_refuses_malformed_fields_naming_them(fields, match):
    with pytest.raises(MessageError, match=match):
        encode("command", fields)


def test_encode_unknown_kind():
    with pytest.raises(MessageError, match="unknown message kind 'nope'"):
        encode("nope", {})


def test_nested_paths_are_named():
    bad = dict(VALID["observation"], images={"front": np.zeros((4, 4, 4), np.uint8)})
    with pytest.raises(MessageError, match=r"field 'images\['front'\]'.*shape"):
        encode("observation", bad)
    bad = dict(VALID["telemetry"], values={"x": float("nan")})
    with pytest.raises(MessageError, match=r"field 'values\['x'\]'.*non-finite"):
        encode("telemetry", bad)
    bad = dict(VALID["task"], constraints={"keep_out": {"circles": [[1.0, float("inf"), 0.3]]}})
    with pytest.raises(MessageError, match=r"field 'constraints\['keep_out'\]\['circles'\]\[0\]\[1\]'"):
        encode("task", bad)


@pytest.mark.parametrize(
    "frame, match",
    [
        (b"", r"not a valid msgpack"),
        (b"\xc1", r"not a valid msgpack"),
        (encode("estop", {"reason": "x"})[:-2], r"not a valid msgpack"),
        (encode("estop", {"reason": "x"}) + b"\x00", r"not a valid msgpack"),
        (pack_raw([1, 2]), r"expected a msgpack map envelope, got list"),
        (pack_raw({"v": 1}), r"missing field 'k'"),
        (pack_raw({"k": 3, "v": 1}), r"field 'k'"),
        (pack_raw({"k": "estop", "reason": "x"}), r"missing field 'v'"),
        (pack_raw({"k": "estop", "v": 2, "reason": "x"}), r"field 'v'.*version 1"),
        (pack_raw({"k": "warp", "v": 1}), r"unknown message kind 'warp'"),
        (pack_raw(envelope("estop")), r"missing field 'reason'"),
        (pack_raw(envelope("estop", reason="x", why=1)), r"unexpected field.*'why'"),
        (pack_raw(envelope("estop", reason=b"x")), r"field 'reason'.*string.*bytes"),
        (pack_raw(envelope("command", action=ext_array("<f8", (2,), b"\0" * 15), seq=1)),
         r"field 'action'.*malformed array.*15 data bytes"),
        (pack_raw(envelope("command", action=ext_array("|O", (2,), b"\0" * 16), seq=1)),
         r"field 'action'.*malformed array.*dtype '\|O' not allowed"),
        (pack_raw(envelope("command", action=ext_array(">f8", (2,), b"\0" * 16), seq=1)),
         r"field 'action'.*dtype '>f8' not allowed"),
        (pack_raw(envelope("command", action=ext_array("<f8", (2**32 - 1, 2**32 - 1), b""), seq=1)),
         r"field 'action'.*malformed array.*needs"),
        (pack_raw(envelope("command", action=ext_array("<f4", (2,), b"\0" * 8), seq=1)),
         None),  # float32 is allowed for actions
        (pack_raw(envelope("command", action=ext_array("<f8", (2,), struct.pack("<2d", math.nan, 0)), seq=1)),
         r"field 'action'.*finite"),
        (pack_raw(envelope("command", action=ext_array("<i8", (2,), b"\0" * 16), seq=1)),
         r"field 'action'.*dtype float32\|float64.*<i8"),
        (pack_raw(envelope("command", action=ext_array("<f8", (1, 2), b"\0" * 16), seq=1)),
         r"field 'action'.*shape"),
        (pack_raw(envelope("command", action=msgpack.ExtType(9, b"xx"), seq=1)), r"field 'action'.*ExtType"),
        (pack_raw(envelope("ok", payload=ext_array("|b1", (2,), b"\x00\x07"))), r"field 'payload'.*bool"),
        (b"\xdd\xff\xff\xff\xff", r"not a valid msgpack.*max_array_len"),
        (b"\xc6\x7f\xff\xff\xff", r"not a valid msgpack"),  # bin32 declaring 2 GiB
        (b"\xdd\x00\x10\x00\x00" + b"\xc0" * 100_000, r"exceeds max_array_len\(65536\)"),  # big frame, 1M items
        (b"\x91" * 5000 + b"\x01", r"not a valid msgpack"),  # nesting bomb
        (b"\x91" * 1000 + b"\x01", r"expected a msgpack map envelope, got list \[\[\["),  # deeper than repr likes
        (deep_field("estop", "reason"), r"field 'reason'.*got list"),
        (deep_field("ok", "payload"), r"field 'payload.*nested at most 8 deep"),
    ],
)
def test_decode_rejects_with_a_clear_message(frame, match):
    if match is None:
        decode(frame)
        return
    with pytest.raises(MessageError, match=match):
        decode(frame)


def test_decode_checks_size_before_unpacking():
    frame = encode("ok", {"payload": np.zeros(1000, np.uint8)})
    with pytest.raises(MessageError, match=r"exceeds the limit of 100 bytes"):
        decode(frame, max_bytes=100)
    assert_same(dict(decode(frame, max_bytes=len(frame)).fields), {"payload": np.zeros(1000, np.uint8)})


def test_decode_expect():
    frame = encode("stop")
    assert decode(frame, expect={"stop", "ok"}).kind == "stop"
    with pytest.raises(MessageError, match=r"expected message kind 'ok', got 'stop'"):
        decode(frame, expect="ok")


def test_decode_rejects_non_bytes():
    with pytest.raises(MessageError, match="bytes"):
        decode("not bytes")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- hostile input


def assert_valid(msg: Message) -> None:
    """What decodes is a message `encode` accepts, and it comes back from the wire unchanged."""
    sent = {k: v for k, v in msg.fields.items() if v is not None}  # encode leaves optional Nones out
    again = decode(encode(msg.kind, dict(msg.fields)))
    assert again.kind == msg.kind
    assert_same(dict(again.fields), sent)


def check_decode(frame: bytes) -> Message | None:
    """Decode `frame`: either a MessageError with a text, or a valid message (returned)."""
    try:
        msg = decode(frame)
    except MessageError as e:
        assert str(e)
        return None
    assert_valid(msg)
    return msg


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(
    st.binary(max_size=512),
    # nesting bombs, alone and inside a field
    st.builds(lambda n, unit: unit * n + b"\x01", st.integers(1, 1200), st.sampled_from([b"\x91", b"\x81\xa1a"])),
    st.builds(deep_field, st.sampled_from(["estop", "ok", "telemetry", "task"]),
              st.sampled_from(["reason", "payload", "values", "constraints"]), st.integers(1, 1200)),
))
def test_arbitrary_bytes_raise_only_message_error(frame):
    check_decode(frame)


VALID_FRAMES = [encode(k, v) for k, v in VALID.items()]


@st.composite
def mutated_frames(draw):
    frame = bytearray(draw(st.sampled_from(VALID_FRAMES)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "truncate", "insert", "set"]))
        if not frame:
            break
        i = draw(st.integers(0, len(frame) - 1))
        if op == "flip":
            frame[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del frame[i:]
        elif op == "insert":
            frame[i:i] = draw(st.binary(min_size=1, max_size=8))
        else:
            frame[i] = draw(st.integers(0, 255))
    return bytes(frame)


@settings(max_examples=400, deadline=None)
@given(mutated_frames())
def test_mutated_frames_raise_only_message_error(frame):
    check_decode(frame)


wild_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.binary(max_size=8),
    st.lists(st.floats(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(-(2**63), 2**63 - 1), max_size=2),
    st.builds(
        lambda dt, shape, fill: ext_array(dt, shape, fill * (len(fill) and 64)),
        st.sampled_from(["<f8", "<f4", "|u1", "<i4", "<i8", "|b1", "<f2", ">f8", "|O", "<c16", "xx"]),
        st.lists(st.integers(0, 3), max_size=3).map(tuple),
        st.binary(max_size=4),
    ),
    st.builds(
        lambda dt, shape: ext_array(dt, shape, b""),  # huge declared shapes, no data
        st.sampled_from(["<f8", "|u1"]),
        st.lists(st.integers(2**20, 2**32 - 1), min_size=1, max_size=3).map(tuple),
    ),
)


@st.composite
def structured_mutations(draw):
    kind = draw(st.sampled_from([k for k in CORE_KINDS if VALID[k]]))
    fields = dict(VALID[kind])
    op = draw(st.sampled_from(["replace", "drop", "add"]))
    name = draw(st.sampled_from(sorted(fields)))
    if op == "replace":
        fields[name] = draw(wild_values)
    elif op == "drop":
        del fields[name]
    else:
        name = draw(st.text(min_size=1, max_size=5).filter(lambda s: s not in fields and s not in ("k", "v")))
        fields[name] = draw(wild_values)
    return kind, op, name, pack_raw(envelope(kind, _to_wire(fields)))


def _to_wire(value):
    """Like encode's packing, but with no validation."""
    if isinstance(value, np.ndarray):
        arr = np.ascontiguousarray(value)
        return ext_array(arr.dtype.str, arr.shape, arr.tobytes())
    if isinstance(value, dict):
        return {k: _to_wire(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_wire(v) for v in value]
    return value


@settings(max_examples=400, deadline=None)
@given(structured_mutations())
def test_structured_mutations_name_the_field(case):
    kind, op, name, frame = case
    try:
        msg = decode(frame)
    except MessageError as e:
        text = str(e)
        assert repr(name) in text or f"'{name}" in text, text
        return
    # accepted: only a value the field's spec allows, or dropping an optional field; never an unknown field
    assert op != "add", f"unknown field {name!r} accepted"
    assert msg.kind == kind
    if op == "drop":
        assert schema_for(kind).fields[name].optional and name not in msg.fields
    assert_valid(msg)
    for other, value in VALID[kind].items():  # the fields left alone arrive as they were
        if other != name:
            assert_same(msg[other], decode(encode(kind, VALID[kind]))[other])
