"""The agent: six modules and the parts that run their cycle.

    body.observe -> perception.encode -> actor.act -> safety filter -> body.command
                                                                   -> memory.write

`Agent` only wires its parts, each in its own module:
- `PlanScheduler` (scheduler.py): level 0's plans on a worker thread, under a
  deadline; late plans, and the last valid plan's later steps.
- `LevelClock` (levels.py): the upper hierarchy levels, on their own thread.
- `Arbiter` (arbiter.py): plan, else fallback, then the safety filter, else stop.
- `Health` (health.py): modules down or gone for good, and work queued for a
  cycle boundary (a module coming back, a hot swap).
- `Swapper` (swap.py): module replacement at a cycle boundary only.
- `Outbox` (outbox.py): memory records, kept in order while memory is away.

Modules may live in other processes (the Ray runtime) and go down. A runtime
marks them with `module_down(...)`; the cycle then never calls them: without
perception the body is stopped, without the planning chain (actor, world model,
cost) the cycle falls back as for a late plan, and memory records wait in the
outbox.

Where the modules live is the runtime's business (`handles.py`): `InProcess`
builds them here; the Ray runtime hands the agent proxies to its actors.
"""

from amiagent.agent.arbiter import Arbiter, Decision, check_actions, check_state
from amiagent.agent.core import SHARED_MODULES, Agent
from amiagent.agent.handles import InProcess, ModuleHandles
from amiagent.agent.health import Health
from amiagent.agent.levels import LevelClock
from amiagent.agent.options import (LOCKSTEP_GRACE_S, MODULE_NAMES, PLANNER_GRACE_S, PLANNING_CHAIN, AgentOptions,
                                    LoopConfig, Modules)
from amiagent.agent.outbox import UNWRITTEN_MAX, UNWRITTEN_PER_CYCLE, Outbox
from amiagent.agent.records import SOURCES, Counters, Cycle, to_body_action
from amiagent.agent.scheduler import PlanScheduler
from amiagent.agent.swap import SwapTicket, Swapper, check_swappable

__all__ = [
    "Agent", "AgentOptions", "Arbiter", "Counters", "Cycle", "Decision", "Health", "InProcess", "LevelClock",
    "LoopConfig", "ModuleHandles", "Modules", "Outbox", "PlanScheduler", "SwapTicket", "Swapper", "check_actions", "check_state", "check_swappable",
    "to_body_action", "LOCKSTEP_GRACE_S", "MODULE_NAMES", "PLANNER_GRACE_S", "PLANNING_CHAIN", "SHARED_MODULES",
    "SOURCES", "UNWRITTEN_MAX", "UNWRITTEN_PER_CYCLE",
]
