"""Assembling agents and worlds from plain config mappings (what Hydra composes).

Every mapping is checked here, at launch: unknown keys, ill-typed values and
modules whose dimensions disagree fail with the config path that is wrong,
never deep inside a control loop.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from amiagent import registry
from amiagent.agent import MODULE_NAMES, Agent, AgentOptions, LoopConfig
from amiagent.agent.handles import InProcess, ModuleHandles
from amiagent.config import check_keys, check_number
from amiagent.contracts import World, WorldModel
from amiagent.planning.cost import IntrinsicCost
from amiagent.errors import ConfigError
from amiagent.planning import SafetyFilter
from amiagent.planning.hierarchy import Hierarchy, Level, LevelConfig

AGENT_KEYS = {"name", "loop", "configurator", "perception", "world_model", "cost", "memory", "actor", "mode1", "safety",
              "hierarchy", "goal_from", "checkpoint", "checkpoint_coarse"}
"""`checkpoint`: a learned model's file, which the module sections interpolate (`${agent.checkpoint}`);
`checkpoint_coarse`: a second one, for a level above level 0 (`${agent.checkpoint_coarse}`)."""
PLUGIN_KEYS = {"name", "params"}
TERM_KEYS = {"plugin", "weight", "params"}
GUARDRAIL_KEYS = {"plugin", "params"}
CRITIC_KEYS = {"name", "params", "weight"}
COST_KEYS = {"terms", "guardrails", "critic"}
SAFETY_KEYS = {"enabled", "directions", "extra_margin", "world_model", "state"}
SAFETY_STATES = ("perceived", "measured")
GOAL_SOURCES = ("task", "observation")
LEVEL_MODULES = ("perception", "world_model", "cost", "actor")


def plugin(kind: str, spec: Any, where: str, default_name: str | None = None, name_key: str = "name",
           extra_margin: float = 0.0, build: bool = True):
    """A plugin from `{name, params}`; `extra_margin` widens a `margin` parameter if it has one.
    `build=False` checks the spec (name, parameters) and returns its parameters, building nothing."""
    spec = check_keys(where, spec, {name_key, "params"})
    name = spec.get(name_key, default_name)
    if not isinstance(name, str):
        raise ConfigError(f"{where}.{name_key}: a {kind} plugin name is needed; installed: {', '.join(registry.names(kind))}")
    params = spec.get("params") or {}
    if not isinstance(params, Mapping):
        raise ConfigError(f"{where}.params must be a mapping, got {params!r}")
    params = dict(params)
    if extra_margin:
        fields = {f.name: f for f in dataclasses.fields(registry.load_class(kind, name).Params)}
        if "margin" in fields:
            base = params.get("margin", fields["margin"].default)
            params["margin"] = check_number(f"{where}.params.margin", base) + extra_margin
    if not build:
        return registry.build_params(registry.load_class(kind, name), params, where=f"{where} ({kind}.{name})")
    return registry.create(kind, name, params, where=f"{where} ({kind}.{name})")


def build_module(name: str, spec: Any, build: bool = True) -> Any:
    """Module `name` of an agent (configurator, perception, world_model, cost, memory, actor, mode1) from its
    spec; `build=False` only checks the spec, for a module that will be built in another process."""
    if name == "cost":
        return build_cost(spec, build=build)
    return plugin("actor" if name == "mode1" else name, spec, f"agent.{name}", build=build)


def merge_spec(current: Mapping[str, Any], change: Mapping[str, Any]) -> dict:
    """`change` merged onto a module's `current` spec (nested mappings merged, other values replaced).

    A `name` other than the current one starts from that plugin's defaults:
    the parameters of one plugin mean nothing to another.
    """
    import copy

    if "name" in change and change["name"] != current.get("name"):
        return copy.deepcopy(dict(change))

    def merge(base: dict, over: Mapping[str, Any]) -> dict:
        for key, value in over.items():
            if isinstance(value, Mapping) and isinstance(base.get(key), Mapping):
                base[key] = merge(dict(base[key]), value)
            else:
                base[key] = copy.deepcopy(value)
        return base

    return merge(copy.deepcopy(dict(current)), change)


def describe(spec: Any) -> str:
    """A short label for a plugin spec: its name and parameters."""
    if not isinstance(spec, Mapping):
        return repr(spec)
    params = spec.get("params") or {}
    name = spec.get("name", "cost" if "terms" in spec or "guardrails" in spec else "?")
    return f"{name} {dict(params)}" if params else str(name)


def build_cost(spec: Any, where: str = "agent.cost", terms: bool = True, extra_margin: float = 0.0,
               build: bool = True) -> IntrinsicCost | None:
    """Cost module from `{terms: {name: {weight, params, plugin?}}, guardrails: {name: {params, plugin?}},
    critic: {name, params, weight}?}`. With `terms=False` only the guardrails are built (the safety filter's);
    with `build=False` the spec is only checked (None is returned)."""
    spec = check_keys(where, spec, COST_KEYS)
    built_terms = {}
    if terms:
        for name, entry in check_keys(f"{where}.terms", spec.get("terms"), set(spec.get("terms") or {})).items():
            entry_where = f"{where}.terms.{name}"
            entry = check_keys(entry_where, entry, TERM_KEYS)
            weight = check_number(f"{entry_where}.weight", entry.get("weight", 1.0))
            term = plugin("cost_term", {k: v for k, v in entry.items() if k != "weight"}, entry_where,
                          default_name=name, name_key="plugin", build=build)
            built_terms[name] = (term, weight)
    guardrails = {}
    for name, entry in check_keys(f"{where}.guardrails", spec.get("guardrails"), set(spec.get("guardrails") or {})).items():
        entry_where = f"{where}.guardrails.{name}"
        guardrails[name] = plugin("guardrail", check_keys(entry_where, entry, GUARDRAIL_KEYS), entry_where,
                                  default_name=name, name_key="plugin", extra_margin=extra_margin, build=build)
    critic, critic_weight = None, 1.0
    if terms and spec.get("critic"):
        critic_spec = check_keys(f"{where}.critic", spec["critic"], CRITIC_KEYS)
        critic_weight = check_number(f"{where}.critic.weight", critic_spec.get("weight", 1.0))
        critic = plugin("critic", {k: v for k, v in critic_spec.items() if k != "weight"}, f"{where}.critic",
                        build=build)
    return IntrinsicCost(built_terms, guardrails, critic, critic_weight) if build else None


def build_safety(agent_cfg: Mapping[str, Any]) -> SafetyFilter | None:
    """The safety filter with its own world model and guardrails (never the planner's instances).

    `safety.world_model` may name a more conservative model than the planner's;
    `safety.extra_margin` (m) widens every guardrail's margin for the check.
    `safety.state: measured` checks against the body's measured state (a
    planner in a learned latent space still gets a physical check); the filter
    then needs its own `world_model` over that state.
    """
    spec = check_keys("agent.safety", agent_cfg.get("safety"), SAFETY_KEYS)
    enabled = spec.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ConfigError(f"agent.safety.enabled must be true or false, got {enabled!r}")
    if not enabled:
        return None
    directions = spec.get("directions", 8)
    if isinstance(directions, bool) or not isinstance(directions, int) or directions < 0:
        raise ConfigError(f"agent.safety.directions must be an integer >= 0, got {directions!r}")
    margin = check_number("agent.safety.extra_margin", spec.get("extra_margin", 0.0))
    state = spec.get("state", "perceived")
    if state not in SAFETY_STATES:
        raise ConfigError(f"agent.safety.state must be one of {SAFETY_STATES}, got {state!r}")
    if state == "measured" and not spec.get("world_model"):
        raise ConfigError("agent.safety.state: measured needs agent.safety.world_model, a model over the body's "
                          "measured state (e.g. point_mass)")
    model_where = "agent.safety.world_model" if spec.get("world_model") else "agent.world_model"
    world_model = plugin("world_model", spec.get("world_model") or agent_cfg["world_model"], model_where)
    guardrails = build_cost(agent_cfg["cost"], terms=False, extra_margin=margin)
    return SafetyFilter(world_model, guardrails, directions=directions)


def build_agent(agent_cfg: Mapping[str, Any], runtime: ModuleHandles | None = None, name: str | None = None) -> Agent:
    """An Agent from the `agent` section of a config (plain containers, not OmegaConf), built once.

    `runtime` supplies the module handles (default: built in this process); `name` (default `agent.name`)
    names the agent in telemetry and on its control endpoint. Every part of the config
    is checked, and the safety filter and upper levels (which always run here) are built, before the
    runtime is asked for modules, so a config error never starts a process.
    """
    runtime = runtime if runtime is not None else InProcess()
    agent_cfg = dict(agent_cfg)
    options = check_agent_config(agent_cfg, modules=not runtime.in_process)  # built elsewhere: checked here
    built: list = []
    try:
        safety = build_safety(agent_cfg)
        built += [safety.world_model, safety.cost] if safety is not None else []
        hierarchy = build_hierarchy(agent_cfg.get("hierarchy"))
        built += [hierarchy] if hierarchy is not None else []
        modules = runtime.modules(agent_cfg, options.loop)
        built += modules.all()
        if modules.perception.state_dim != modules.world_model.state_dim:
            raise ConfigError(
                f"agent.perception gives states of {modules.perception.state_dim} values but agent.world_model "
                f"expects {modules.world_model.state_dim}: make their dimensions agree"
            )
        if safety is not None:
            _check_models_agree(safety.world_model, modules.world_model, same_states=not options.safety_on_measured)
        agent = Agent(modules, options, safety=safety, hierarchy=hierarchy, runtime=runtime,
                      name=name or str(agent_cfg.get("name", "agent")))
    except BaseException:
        for part in built:
            part.close()
        runtime.close()
        raise
    agent.plugins = {name: describe(agent_cfg[name]) for name in modules.named()}
    agent.specs = {name: dict(agent_cfg[name]) for name in modules.named()}
    return agent


def check_agent_config(agent_cfg: Mapping[str, Any], modules: bool = True) -> AgentOptions:
    """Check the `agent` section of a config without building anything: its keys, its options (returned)
    and, with `modules`, every module's spec (plugin names and parameters)."""
    agent_cfg = check_keys("agent", agent_cfg, AGENT_KEYS)
    missing = sorted({"configurator", "perception", "world_model", "cost", "memory", "actor"} - set(agent_cfg))
    if missing:
        raise ConfigError(f"agent: missing section(s) {missing}")
    options = agent_options(agent_cfg)
    if modules:
        for name in MODULE_NAMES:
            if agent_cfg.get(name):
                build_module(name, agent_cfg[name], build=False)
    return options


def agent_options(agent_cfg: Mapping[str, Any]) -> AgentOptions:
    """The agent's options (`loop`, `safety`, `goal_from`) from the `agent` section of a config, checked."""
    loop_spec = check_keys("agent.loop", agent_cfg.get("loop"), {f.name for f in dataclasses.fields(LoopConfig)})
    goal_from = agent_cfg.get("goal_from", "task")
    if goal_from not in GOAL_SOURCES:
        raise ConfigError(f"agent.goal_from must be one of {GOAL_SOURCES}, got {goal_from!r}")
    safety = check_keys("agent.safety", agent_cfg.get("safety"), SAFETY_KEYS)
    return AgentOptions(
        loop=LoopConfig(**loop_spec),
        safety_on_measured=safety.get("enabled", True) is not False and safety.get("state") == "measured",
        goal_from_observation=goal_from == "observation",
        safety_follows_planner=not safety.get("world_model"),
        safety_margin=check_number("agent.safety.extra_margin", safety.get("extra_margin", 0.0)),
    )


def build_hierarchy(spec: Any, where: str = "agent.hierarchy") -> Hierarchy | None:
    """The levels above level 0, from `{level_name: {every, horizon, ..., perception, world_model, cost,
    actor}}` listed from level 1 upward; None (or an empty mapping) means a flat agent."""
    if not spec:
        return None
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{where}: expected a mapping of level name -> level, got {spec!r}")
    level_keys = {f.name for f in dataclasses.fields(LevelConfig)}
    levels: list[Level] = []
    try:
        for name, entry in spec.items():
            entry_where = f"{where}.{name}"
            entry = check_keys(entry_where, entry, level_keys | set(LEVEL_MODULES))
            missing = [m for m in LEVEL_MODULES if not entry.get(m)]
            if missing:
                raise ConfigError(f"{entry_where}: missing section(s) {missing}; a level has its own "
                                  f"{', '.join(LEVEL_MODULES)}")
            settings = {k: v for k, v in entry.items() if k in level_keys}
            if "subgoal_dims" in settings:
                settings["subgoal_dims"] = tuple(settings["subgoal_dims"])
            try:
                config = LevelConfig(**settings)
            except ConfigError as exc:
                raise ConfigError(f"{entry_where}: {exc}") from None
            built = {}
            try:
                for module in LEVEL_MODULES:
                    built[module] = (build_cost(entry["cost"], f"{entry_where}.cost") if module == "cost"
                                     else plugin(module, entry[module], f"{entry_where}.{module}"))
            except BaseException:
                for m in built.values():
                    m.close()
                raise
            levels.append(Level(str(name), config, **built))
        return Hierarchy(levels)
    except BaseException:
        for level in levels:
            for m in level.modules():
                m.close()
        raise


def _check_models_agree(checker: WorldModel, planner: WorldModel, same_states: bool = True) -> None:
    """The safety filter's model must speak the planner's states (unless it checks measured states) and
    actions, with the same bounds."""
    dims = (checker.state_dim, checker.action_dim) == (planner.state_dim, planner.action_dim) if same_states \
        else checker.action_dim == planner.action_dim
    same = dims and checker.action_space.same(planner.action_space)
    if not same:
        raise ConfigError(
            "agent.safety.world_model must have the planner's state and action dimensions and action bounds; got "
            f"D={checker.state_dim}, A={checker.action_dim}, bounds {checker.action_low.tolist()}..."
            f"{checker.action_high.tolist()} against D={planner.state_dim}, A={planner.action_dim}, "
            f"bounds {planner.action_low.tolist()}...{planner.action_high.tolist()}"
        )


def build_world(world_cfg: Any) -> World:
    """A World from the `world` section of a config."""
    return plugin("world", world_cfg, "world")


def check_body_fits(agent: Agent, world: World) -> None:
    """The world's body must take the actions the agent plans, within bounds the body honours.

    A model that assumes more authority than the body has (a larger acceleration
    bound, say) would plan and check braking the body cannot do: refused.
    """
    wm = agent.modules.world_model
    low, high = np.asarray(world.body.action_low, dtype=float), np.asarray(world.body.action_high, dtype=float)
    if len(low) != wm.action_dim:
        raise ConfigError(f"the world's body takes {len(low)}-dimensional actions but agent.world_model plans "
                          f"{wm.action_dim}: choose a world model for this body")
    model_low, model_high = wm.action_low.double().numpy(), wm.action_high.double().numpy()
    if not wm.action_space.within(world.body.action_space):
        raise ConfigError(
            f"agent.world_model plans actions in {model_low.tolist()}...{model_high.tolist()} but the body only "
            f"takes {low.tolist()}...{high.tolist()}: the planner would count on authority the body does not have "
            "(set the world model's bounds, e.g. max_accel, from the world's)"
        )
    check_frames_match(agent, world)


CAMERA_SETTINGS = ("image_size", "camera_supersample", "camera_zones")
"""World camera settings a learned perception's frames depend on."""


def check_frames_match(agent: Agent, world: World) -> None:
    """A perception trained on camera frames must see frames rendered as its training data's were.

    Frames drawn another way (other size, sampling, or zones drawn) are
    inputs the encoder never saw: its latents, and every plan on them, would
    be off without any error. Refused, naming the setting to change.
    """
    trained = agent.modules.perception.info.get("world_params")
    if not trained or not dataclasses.is_dataclass(world.params):
        return
    fields = dataclasses.fields(world.params)
    values = {f.name: getattr(world.params, f.name) for f in fields}
    if not values.get("camera"):
        return
    defaults = {f.name: f.default for f in fields}  # what data older than a setting used
    for name in CAMERA_SETTINGS:
        want, have = trained.get(name, defaults.get(name)), values.get(name)
        if want != have:
            raise ConfigError(f"agent.perception was trained on frames with {name}={want} but the world renders "
                              f"{name}={have}: set world.params.{name}={want}")
