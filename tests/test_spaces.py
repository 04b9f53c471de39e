"""`Box`: one convention for bounds, the same for numpy bodies and torch planners."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from amiagent.errors import ConfigError
from amiagent.contracts.spaces import TOLERANCE, Box

finite = st.floats(-1e3, 1e3, allow_nan=False)


@st.composite
def boxes_and_points(draw, kind: str = "numpy"):
    """A box of 1-4 axes (low <= high), and a point of the same size drawn anywhere near it."""
    n = draw(st.integers(1, 4))
    a = draw(st.lists(finite, min_size=n, max_size=n))
    b = draw(st.lists(finite, min_size=n, max_size=n))
    low, high = np.minimum(a, b), np.maximum(a, b)
    point = np.array(draw(st.lists(st.floats(-2e3, 2e3, allow_nan=False), min_size=n, max_size=n)))
    if kind == "torch":
        return Box(torch.tensor(low, dtype=torch.float64), torch.tensor(high, dtype=torch.float64)), point
    return Box(low, high), point


@settings(deadline=None)  # no timed asserts: a loaded machine is not a failure
@given(boxes_and_points())
def test_clip_lands_inside_and_leaves_inside_points_alone(case):
    box, x = case
    clipped = box.clip(x)
    assert box.contains(clipped, tol=0.0)
    assert np.array_equal(clipped, x) == box.contains(x, tol=0.0)
    assert np.array_equal(box.clip(clipped), clipped)  # idempotent


@settings(deadline=None)  # no timed asserts: a loaded machine is not a failure
@given(boxes_and_points("torch"))
def test_numpy_torch_and_plain_sequences_agree(case):
    box, x = case
    as_numpy = Box(box.low.numpy(), box.high.numpy())
    for tol in (0.0, TOLERANCE, 0.5):
        verdict = as_numpy.contains(x, tol)
        assert box.contains(torch.tensor(x, dtype=torch.float64), tol) == verdict
        assert box.contains(tuple(float(v) for v in x), tol) == verdict  # the per-substep path
    assert torch.equal(box.clip(torch.tensor(x, dtype=torch.float64)), torch.tensor(as_numpy.clip(x)))


@settings(deadline=None)  # no timed asserts: a loaded machine is not a failure
@given(boxes_and_points(), st.floats(0.0, 10.0))
def test_the_tolerance_is_inclusive_and_absolute(case, tol):
    box, _ = case
    edge = np.array(box.high, dtype=np.float64)
    assert box.contains(edge, tol=0.0)  # closed: the bound itself is inside
    assert box.contains(edge + tol, tol=tol)
    beyond = edge + tol + max(1e-6, abs(float(edge.max())) * 1e-12) * 4
    assert not box.contains(beyond, tol=tol)


def test_the_default_tolerance_absorbs_float32_rounding_of_a_float64_bound():
    body = Box(np.array([-0.1]), np.array([0.1]))  # float64, as a body's
    model = Box(torch.tensor([-0.1]), torch.tensor([0.1]))  # float32, as a world model's: 0.10000000149...
    assert float(model.high[0]) > 0.1
    assert model.within(body) and not model.within(body, tol=0.0)
    assert body.contains(model.high.numpy()) and not body.contains(model.high.numpy(), tol=0.0)
    assert not body.contains(np.array([0.1 + 2 * TOLERANCE]))
    # a tensor is compared in its own precision: the bounds are rounded to it, not the values widened
    assert body.contains(torch.tensor([0.1]), tol=0.0)


def test_nan_is_never_inside_and_shapes_are_checked():
    box = Box([0.0, 0.0], [1.0, 1.0])
    assert not box.contains([math.nan, 0.5])
    assert not box.contains(torch.tensor([[0.5, 0.5], [0.5, math.nan]]))
    with pytest.raises(ValueError, match="3 values for 2 bounds"):
        box.contains((0.0, 0.0, 0.0))


@pytest.mark.parametrize(("low", "high", "why"), [
    ([1.0, 0.0], [0.0, 1.0], "low <= high"),
    ([0.0, math.nan], [1.0, 1.0], "NaN"),
    ([0.0, 0.0], [1.0], "one length"),
    ([[0.0]], [[1.0]], "1-D"),
])
def test_invalid_bounds_are_refused_naming_the_box(low, high, why):
    with pytest.raises(ConfigError, match=why) as info:
        Box(low, high, name="world.body action bounds")
    assert "world.body action bounds" in str(info.value)


def test_inset_shrinks_and_grows_and_refuses_to_empty_the_box():
    box = Box([-5.0, -3.0], [5.0, 3.0], name="arena")
    assert box.inset(0.2).same(Box([-4.8, -2.8], [4.8, 2.8]))
    assert box.inset(-1.0).same(Box([-6.0, -4.0], [6.0, 4.0]))
    with pytest.raises(ConfigError, match="arena inset by 3.5"):
        box.inset(3.5)


def test_derived_figures_and_comparisons():
    box = Box(torch.tensor([-2.0, -1.0]), torch.tensor([2.0, 3.0]))
    assert box.shape == (2,)
    assert torch.equal(box.centre, torch.tensor([0.0, 1.0])) and torch.equal(box.half_range, torch.tensor([2.0, 2.0]))
    assert box.within(Box([-2.0, -1.0], [2.0, 3.0 + 1e-7])) and not box.within(Box([-2.0, -1.0], [2.0, 2.9]))
    assert not box.within(Box([-2.0], [2.0]))  # another dimension is never inside
    assert box.same(Box(np.array([-2.0, -1.0]), np.array([2.0, 3.0]))) and not box.same(box.inset(0.1))


def test_uniform_and_per_axis_bounds_clip_alike():
    x = torch.tensor([[3.0, -3.0], [0.5, -0.5]])
    uniform = Box(torch.full((2,), -2.0), torch.full((2,), 2.0))
    per_axis = Box(torch.tensor([-2.0, -2.0 - 1e-7]), torch.tensor([2.0, 2.0]))
    assert torch.equal(uniform.clip(x), torch.tensor([[2.0, -2.0], [0.5, -0.5]]))
    assert torch.allclose(per_axis.clip(x), uniform.clip(x))


def test_of_actions_and_sample():
    class Model:
        action_low, action_high = torch.tensor([-1.0, 0.0]), torch.tensor([1.0, 2.0])

    box = Box.of_actions(Model())
    assert "Model action bounds" in repr(box)
    rng = np.random.default_rng(0)
    points = np.array([box.sample(rng) for _ in range(200)])
    assert box.contains(points, tol=0.0) and points.shape == (200, 2)
    again = np.array([box.sample(np.random.default_rng(0)) for _ in range(1)])
    assert np.array_equal(again[0], points[0])  # the same generator, the same point
