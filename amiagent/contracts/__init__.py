"""The module contracts of an amiagent agent, and the values they exchange.

Six modules make an agent (Configurator, Perception, WorldModel, Cost, Memory,
Actor); a Body is what the agent controls and a World hosts bodies in
simulation. Every contract works on batched torch tensors. Shapes use:

    B  batch (candidate plans, or 1)      H  planning horizon, in control steps
    D  latent state dimension             A  action dimension
    T  number of cost terms

Units are SI throughout: metres, seconds, m/s, m/s^2. Contracts are base
classes with no-op lifecycle defaults, so a plugin overrides only what it needs.

The package: `values` (the dataclasses exchanged), `modules` (the contract
classes), `codecs` (how values cross the wire) and `declared` (each contract
that crosses processes, declared once: its methods with argument and return
schemas, from which proxies, server dispatch and wire validation derive).
Import from `amiagent.contracts`.
"""

# `declared` registers the wire schemas of every contract that crosses processes: a process that knows the
# contracts speaks their requests
from amiagent.contracts import declared  # noqa: F401
from amiagent.contracts.modules import (
    CONTRACTS,
    Actor,
    Body,
    Configurator,
    Control,
    Cost,
    CostTerm,
    Critic,
    Guardrail,
    Memory,
    Module,
    Perception,
    PlansAhead,
    World,
    WorldModel,
)
from amiagent.contracts.values import (
    MODES,
    CostReport,
    MemoryRecord,
    NoParams,
    Observation,
    Plan,
    Settings,
    Task,
    WorldLayout,
)

__all__ = [
    "CONTRACTS", "MODES", "Actor", "Body", "Configurator", "Control", "Cost", "CostReport", "CostTerm", "Critic",
    "Guardrail", "Memory", "MemoryRecord", "Module", "NoParams", "Observation", "Perception", "Plan", "PlansAhead",
    "Settings",
    "Task", "World", "WorldLayout", "WorldModel",
]
