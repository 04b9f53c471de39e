"""Hot swap: a module replaced only at a cycle boundary, checked before anything changes."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from amiagent.contracts import Cost, Module, Perception, WorldModel
from amiagent.errors import ConfigError

if TYPE_CHECKING:
    from amiagent.agent.core import Agent

PLANNER_MODULES = ("world_model", "cost", "actor", "mode1")
"""A swap of one of these rebinds the actors."""


class SwapTicket(threading.Event):
    """Set when a queued swap has been carried out (or has failed: then `error` says why)."""

    def __init__(self, label: str = "") -> None:
        super().__init__()
        self.error: str | None = None
        self.label = label
        """The plugin taking over, as `Agent.plugins` will show it."""

    def run(self, commit: Callable[[], None]) -> Callable[[], None]:
        """`commit`, wrapped to record its outcome on this ticket."""
        def work() -> None:
            try:
                commit()
            except Exception as exc:
                self.error = f"{type(exc).__name__}: {exc}"
                raise
            finally:
                self.set()
        return work


def check_swappable(name: str, old: Module, new: Module) -> None:
    """Refuse a replacement module of another kind or with other dimensions than the one it replaces."""
    if type(new).kind != type(old).kind:
        raise ConfigError(f"cannot swap {name}: the new module is a {type(new).kind}, not a {type(old).kind}")
    if isinstance(old, WorldModel):
        same = (old.state_dim, old.action_dim) == (new.state_dim, new.action_dim) and old.action_space.same(
            new.action_space)
        if not same:
            raise ConfigError(
                f"cannot swap {name}: the new world model has D={new.state_dim}, A={new.action_dim}, bounds "
                f"{new.action_low.tolist()}...{new.action_high.tolist()}; the running one D={old.state_dim}, "
                f"A={old.action_dim}, bounds {old.action_low.tolist()}...{old.action_high.tolist()}")
    if isinstance(old, WorldModel) and abs(float(old.dt) - float(new.dt)) > 1e-9:
        raise ConfigError(f"cannot swap {name}: the new world model steps {float(new.dt):g} s, the running one "
                          f"{float(old.dt):g} s (the control period): a plan would mean something else")
    if isinstance(old, Perception) and old.state_dim != new.state_dim:
        raise ConfigError(f"cannot swap {name}: the new perception gives {new.state_dim} values, "
                          f"the running one {old.state_dim}")


class Swapper:
    """Replaces an agent's modules (and the safety filter's own copies) at its next cycle boundary."""

    def __init__(self, agent: Agent):
        self.agent = agent

    def swap(self, name: str, module: Module, *, label: str = "", safety_world_model: WorldModel | None = None,
             safety_cost: Cost | None = None, spec: Mapping[str, Any] | None = None) -> SwapTicket:
        """Queue `module` in place of module `name`; the ticket returned is set when done.

        The new module must speak the old one's dimensions. It gets the current
        settings and is activated; the old one is closed. Replacing the world
        model or cost rebinds the actors; `safety_world_model` and
        `safety_cost` replace the safety filter's own model and guardrails in
        the same step.
        """
        agent = self.agent
        old = agent.modules.named().get(name)
        if old is None:
            raise ConfigError(f"cannot swap {name!r}: this agent's modules are {sorted(agent.modules.named())}")
        check_swappable(name, old, module)
        done = SwapTicket(label or type(module).__name__)

        def commit() -> None:
            agent.modules = dataclasses.replace(agent.modules, **{name: module})
            if name in PLANNER_MODULES:
                agent.modules.bind_actors()
            self.replace_safety_copies(safety_world_model, safety_cost)
            safety = agent.safety
            if safety is not None:  # a filter sharing the planner's instances follows them
                if safety.world_model is old:
                    safety.world_model = module
                if safety.cost is old:
                    safety.cost = module
            agent.refresh([name])
            old.close()
            self.done(name, label or type(module).__name__, spec)

        agent.between_cycles(done.run(commit))
        return done

    def swap_plugin(self, name: str, spec: Mapping[str, Any]) -> SwapTicket:
        """Build module `name` from its spec merged with `spec`, and queue it.

        `{"params": {"substeps": 12}}` changes one parameter and keeps the
        others; a new `name` starts from that plugin's defaults. Built and
        checked now (errors raise here and nothing changes). When the safety
        filter uses a copy of the planner's world model, a world-model swap
        replaces that copy too; a cost swap rebuilds the filter's guardrails.
        """
        from amiagent.build import build_module, describe, merge_spec

        agent = self.agent
        if name not in agent.specs:
            raise ConfigError(f"cannot swap {name!r}: this agent's modules are {sorted(agent.specs)}")
        spec = merge_spec(agent.specs[name], spec)
        module = build_module(name, spec)
        checker, guardrails = self.safety_copies(name, spec)
        try:
            return self.swap(name, module, label=describe(spec), safety_world_model=checker,
                             safety_cost=guardrails, spec=spec)
        except BaseException:
            for m in (module, checker, guardrails):
                if m is not None:
                    m.close()
            raise

    def safety_copies(self, name: str, spec: Mapping[str, Any]) -> tuple[WorldModel | None, Cost | None]:
        """The safety filter's own copies for a swap: its model (when it follows the planner's) for a
        world-model swap, its guardrails (with the configured extra margin) for a cost swap."""
        from amiagent.build import build_cost, build_module

        agent, safety = self.agent, self.agent.safety
        if safety is None or not isinstance(safety.world_model, WorldModel):
            return None, None
        shared = safety.world_model is agent.modules.world_model
        if name == "world_model" and agent.options.safety_follows_planner and not shared:
            return build_module("world_model", spec), None
        if name == "cost" and safety.cost is not agent.modules.cost:
            return None, build_cost(spec, "swap cost", terms=False, extra_margin=agent.options.safety_margin)
        return None, None

    def replace_safety_copies(self, world_model: WorldModel | None, cost: Cost | None) -> None:
        """Give the safety filter these as its own model and guardrails (None: keep), with the current
        settings; the old ones are closed."""
        for attr, new in (("world_model", world_model), ("cost", cost)):
            if new is not None and self.agent.safety is not None:
                self._replace(attr, new)

    def done(self, name: str, label: str, spec: Mapping[str, Any] | None) -> None:
        """Record that module `name` now runs `label` (built from `spec`, when given)."""
        self.agent.plugins[name] = label
        if spec is not None:  # what a rebuild of this module would use from now on
            self.agent.specs[name] = dict(spec)
        self.agent.note(f"swap {name}: {label}")

    def _replace(self, attr: str, new: Module) -> None:
        agent = self.agent
        old = getattr(agent.safety, attr)
        setattr(agent.safety, attr, new)
        agent.safety_modules = [new if m is old else m for m in agent.safety_modules]
        if agent.settings is not None:
            new.apply(agent.settings)
        new.activate()
        old.close()
