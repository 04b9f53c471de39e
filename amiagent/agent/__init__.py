"""The agent: six modules, and the parts that run their cycle (see `core.Agent`)."""

from amiagent.agent.arbiter import Arbiter, Decision, check_actions, check_state
from amiagent.agent.core import SHARED_MODULES, Agent
from amiagent.agent.health import Health
from amiagent.agent.levels import LevelClock
from amiagent.agent.options import (LOCKSTEP_GRACE_S, MODULE_NAMES, PLANNER_GRACE_S, PLANNING_CHAIN, AgentOptions,
                                    LoopConfig, Modules)
from amiagent.agent.outbox import UNWRITTEN_MAX, UNWRITTEN_PER_CYCLE, Outbox
from amiagent.agent.records import SOURCES, Counters, Cycle, to_body_action
from amiagent.agent.scheduler import PlanScheduler
from amiagent.agent.swap import SwapTicket, Swapper, check_swappable

__all__ = [
    "Agent", "AgentOptions", "Arbiter", "Counters", "Cycle", "Decision", "Health", "LevelClock", "LoopConfig",
    "Modules", "Outbox", "PlanScheduler", "SwapTicket", "Swapper", "check_actions", "check_state", "check_swappable",
    "to_body_action", "LOCKSTEP_GRACE_S", "MODULE_NAMES", "PLANNER_GRACE_S", "PLANNING_CHAIN", "SHARED_MODULES",
    "SOURCES", "UNWRITTEN_MAX", "UNWRITTEN_PER_CYCLE",
]
