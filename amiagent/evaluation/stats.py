"""Episode statistics: one definition of success, infeasible and violation for `run`, `eval` and `bench`.

* **success**: the episode ended with the status `reached` (the goal within its
  tolerance, nearly at rest, while the agent held it feasible).
* **infeasible**: the agent judged the goal infeasible (no state that realises
  it satisfies every guardrail), whether or not the episode then ended on it
  (`infeasible_goal`: it came to rest as close as the guardrails allow) or ran
  out of steps first.
* **violated**: the world's ground truth counted at least one physics substep
  in violation, of any kind; `total_violations` is the sum over kinds.

An episode that raised (a benchmark carries on past it) has the status `error`:
not a success, its violations unknown (counted as none), its steps not in
`steps_mean`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

REACHED = "reached"
INFEASIBLE_GOAL = "infeasible_goal"
STALLED = "stalled"
TIMEOUT = "timeout"
MODULE_FAILED = "module_failed"
ERROR = "error"
STATUSES = (REACHED, INFEASIBLE_GOAL, STALLED, TIMEOUT, MODULE_FAILED, ERROR)
"""How an episode can end; `error` only in benchmarks, for an episode that raised."""

_KIND = "violations."
"""Prefix of the per-kind violation counts in a row (`violations.keep_out`, ...)."""


@dataclass(frozen=True)
class EpisodeStats:
    """The figures of one episode that every report counts; see the module docstring for the definitions.

    `violations`: substeps in violation per kind (ground truth). `infeasible_reports`:
    times level 0 reported its (sub)goal infeasible to a level above. `replans`:
    plans made by upper hierarchy levels. `safety_filtered`: actions the safety
    filter replaced. `error`: what an episode that raised raised.
    """

    seed: int
    status: str
    steps: int = 0
    goal_feasible: bool = True
    violations: Mapping[str, int] = field(default_factory=dict)
    infeasible_reports: int = 0
    missed_deadlines: int = 0
    replans: int = 0
    safety_filtered: int = 0
    error: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"episode status must be one of {STATUSES}, got {self.status!r}")

    @classmethod
    def of(cls, episode: Any) -> EpisodeStats:
        """The statistics of a finished `amiagent.runtime.local.Episode`."""
        return cls(seed=episode.seed, status=episode.status, steps=episode.steps, goal_feasible=episode.goal_feasible,
                   violations={k: int(n) for k, n in episode.violations.items()},
                   infeasible_reports=episode.infeasible_reports, missed_deadlines=episode.missed_deadlines,
                   replans=episode.replans, safety_filtered=episode.filtered)

    @classmethod
    def failed(cls, seed: int, exc: BaseException) -> EpisodeStats:
        """An episode that raised `exc`."""
        return cls(seed=seed, status=ERROR, error=f"{type(exc).__name__}: {exc}")

    @property
    def success(self) -> bool:
        """The goal was reached."""
        return self.status == REACHED

    @property
    def infeasible(self) -> bool:
        """The agent judged the goal infeasible."""
        return not self.goal_feasible

    @property
    def total_violations(self) -> int:
        """Ground-truth substeps in violation, summed over kinds."""
        return int(sum(self.violations.values()))

    @property
    def violated(self) -> bool:
        """Ground truth counted at least one violation."""
        return self.total_violations > 0

    @property
    def ran(self) -> bool:
        """The episode ran to an end (it did not raise)."""
        return self.status != ERROR

    def row(self) -> dict[str, Any]:
        """Plain figures: seed, status, success, steps, goal_feasible, infeasible_reports, violations (the
        total), missed_deadlines, `violations.<kind>` each, and `error` for an episode that raised."""
        row = {"seed": self.seed, "status": self.status, "success": self.success, "steps": self.steps,
               "goal_feasible": self.goal_feasible, "infeasible_reports": self.infeasible_reports,
               "violations": self.total_violations, "missed_deadlines": self.missed_deadlines}
        row.update({f"{_KIND}{kind}": int(n) for kind, n in self.violations.items()})
        if self.error:
            row["error"] = self.error
        return row

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> EpisodeStats:
        """Back from `row()` (or an eval row, which holds the same keys and more)."""
        kinds = {k[len(_KIND):]: int(n) for k, n in row.items() if k.startswith(_KIND)}
        if not kinds and row.get("violations"):
            kinds = {"all": int(row["violations"])}  # a row without the per-kind split
        return cls(seed=row["seed"], status=row["status"], steps=row.get("steps", 0),
                   goal_feasible=row.get("goal_feasible", True), violations=kinds,
                   infeasible_reports=row.get("infeasible_reports", 0),
                   missed_deadlines=row.get("missed_deadlines", 0), replans=row.get("replans", 0),
                   safety_filtered=row.get("safety_filtered", 0), error=row.get("error", ""))


@dataclass(frozen=True)
class Tally:
    """Figures over a set of episodes, each counted by the EpisodeStats definitions."""

    episodes: int
    successes: int
    statuses: dict[str, int]
    episodes_with_violations: int
    total_violations: int
    infeasible: int
    infeasible_reports: int
    steps_mean: float
    missed_deadlines: int
    replans: int
    safety_filtered: int
    failures: list[int]
    seeds_with_violations: list[int]
    errors: dict[int, str]

    @classmethod
    def of(cls, stats: Sequence[EpisodeStats]) -> Tally:
        """Count `stats`; `steps_mean` over the episodes that ran (0.0 when none did)."""
        statuses: dict[str, int] = {}
        for s in stats:
            statuses[s.status] = statuses.get(s.status, 0) + 1
        ran = [s.steps for s in stats if s.ran]
        return cls(
            episodes=len(stats),
            successes=sum(s.success for s in stats),
            statuses=statuses,
            episodes_with_violations=sum(s.violated for s in stats),
            total_violations=sum(s.total_violations for s in stats),
            infeasible=sum(s.infeasible for s in stats),
            infeasible_reports=sum(s.infeasible_reports for s in stats),
            steps_mean=sum(ran) / len(ran) if ran else 0.0,
            missed_deadlines=sum(s.missed_deadlines for s in stats),
            replans=sum(s.replans for s in stats),
            safety_filtered=sum(s.safety_filtered for s in stats),
            failures=sorted(s.seed for s in stats if not s.success),
            seeds_with_violations=sorted(s.seed for s in stats if s.violated),
            errors={s.seed: s.error for s in stats if not s.ran},
        )

    @property
    def success_rate(self) -> float:
        """Successes / episodes (0.0 for none)."""
        return self.successes / self.episodes if self.episodes else 0.0

    @property
    def success_rate_95ci(self) -> list[float]:
        """The 95% Wilson interval of the success rate, rounded to 4 places."""
        return [round(v, 4) for v in wilson(self.successes, self.episodes)]

    def progress(self) -> str:
        """One line for a progress bar: successes and episodes with violations so far."""
        return f"success {self.successes}/{self.episodes}, with violations {self.episodes_with_violations}"


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a success rate (0, 0 for no episodes)."""
    if n == 0:
        return 0.0, 0.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)
