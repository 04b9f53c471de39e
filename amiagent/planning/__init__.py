"""Planning: optimisers over action sequences, feasibility-first ranking, the safety filter."""

from amiagent.planning.cem import CEMConfig, cem
from amiagent.planning.common import Result, best_start, feasibility_first, warm_start
from amiagent.planning.mppi import MPPIConfig, mppi
from amiagent.planning.safety import SafetyFilter, SafetyVerdict

__all__ = [
    "CEMConfig",
    "MPPIConfig",
    "Result",
    "SafetyFilter",
    "SafetyVerdict",
    "best_start",
    "cem",
    "feasibility_first",
    "mppi",
    "warm_start",
]
