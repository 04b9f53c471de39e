"""A planner whose lateness the test sets: deadline tests with no race against the machine's load.

`ScheduledPlanner` is the MPC actor speaking the `begin_act` protocol of actors that plan elsewhere (as
`amiagent.bus.remote.RemoteActor` does): the agent gets a Future and waits on it until its deadline. The plan
is made at once, from the state it was asked for, and the Future is completed when the test's schedule
says, counted in cycles, never in seconds:

  lateness 0     the Future is done before the agent waits on it: on time whatever the load
  lateness n > 0 it lands at the start of the n-th cycle after the one that asked (before that cycle runs)
  lateness None  it never lands: in flight until the agent drops it

`lateness(call)` and `fails(call)` number the plans asked from 1, the agent's warm-up plan (made by
`Agent.start`, which waits for it: keep its lateness 0) included. A plan that `fails` raises instead,
when it lands. `drive` runs cycles and tells the planner each time a cycle begins.
"""

from __future__ import annotations

import concurrent.futures as cf
from collections.abc import Callable

import pytest

from amiagent import registry
from amiagent.agent import Cycle, to_body_action

MPC = registry.load_class("actor", "mpc")


class ScheduledPlanner(MPC):
    """The MPC actor, its plans handed to the agent when `lateness` says (see the module docstring)."""

    lateness: Callable[[int], int | None] = staticmethod(lambda call: 0)
    fails: Callable[[int], bool] = staticmethod(lambda call: False)

    def __init__(self, params=None):
        super().__init__(params)
        self.calls = 0
        self.now = -1  # the cycle running (-1: before the first, when the warm-up plan is asked)
        self._held: list[tuple[int | None, cf.Future, object]] = []  # (lands at cycle, future, plan or error)

    def begin_act(self, state, limit=None) -> cf.Future:
        self.calls += 1
        outcome = RuntimeError("planner crashed") if self.fails(self.calls) else self.act(state)
        lateness = self.lateness(self.calls)
        future: cf.Future = cf.Future()  # left pending (not running), so the agent can cancel it when it drops it
        if lateness == 0:
            _land(future, outcome)
        else:
            self._held.append((None if lateness is None else self.now + lateness, future, outcome))
        return future

    def tick(self) -> None:
        """A cycle begins: hand over the plans due by now."""
        self.now += 1
        due = [h[0] is not None and h[0] <= self.now for h in self._held]
        landing = [h for h, d in zip(self._held, due) if d]
        self._held = [h for h, d in zip(self._held, due) if not d]
        for _, future, outcome in landing:
            _land(future, outcome)


def _land(future: cf.Future, outcome) -> None:
    if future.cancelled():  # the agent dropped it
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


@pytest.fixture
def scheduled_planner():
    """`make(lateness, fails=...)` registers a ScheduledPlanner with that schedule and returns its actor name."""
    names: list[str] = []

    def make(lateness: Callable[[int], int | None], fails: Callable[[int], bool] = lambda call: False) -> str:
        name = f"scheduled_{len(names)}"
        cls = type("Scheduled", (ScheduledPlanner,), {"lateness": staticmethod(lateness),
                                                       "fails": staticmethod(fails)})
        registry.register("actor", name, cls)
        names.append(name)
        return name

    yield make
    for name in names:
        registry.unregister("actor", name)


def drive(agent, world, cycles: int) -> list[Cycle]:
    """Run `cycles` cycles on the world's body, each period simulated; a scheduled planner is told of each."""
    body, out = world.body, []
    planner = agent.modules.actor if isinstance(agent.modules.actor, ScheduledPlanner) else None
    for _ in range(cycles):
        if planner is not None:
            planner.tick()
        cycle = agent.cycle(body.observe())
        body.command(to_body_action(cycle.action))
        world.advance(agent.loop.period)
        out.append(cycle)
    return out
