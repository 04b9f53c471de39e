"""Actor `search`: plans over a lattice of discrete actions, through the world model and cost.

For the coarse levels of a hierarchy, where a sampling optimiser meets its
limit: a leg that must first lead away from the goal (a door behind the robot,
a maze's detour) is a narrow, non-convex target that CEM rarely samples. This
actor instead grows a tree of action sequences, layer by layer, in one batch
per layer:

    # expand   every frontier state by each of K actions (one rollout step, batched)
    # score    an edge costs the one-step plan that takes it minus the one-step plan that
    #          stays (zero action) where it starts; any predicted violation prunes it
    # merge    states in the same cell of `cell` metres keep only the cheapest way there
    # pick     after at most `horizon` layers (or when nothing improves), the cheapest node

Scored this way the edge costs telescope: with a cost made of per-step terms
(a path length) and a goal term that counts where a plan ends (goal_distance
with `running: 0`), the cost so far of a node is its path's cost plus the goal
term at the node, less a constant, so the cheapest node is the end of the
cheapest "go there, then stay" plan. It is a shortest-path search whose edge
costs come from the cost module and whose edges come from the world model
(Bellman-Ford on the lattice the actions span; edges may be negative, cycles
never are). Guardrails bind exactly: no pruned edge is ever in a plan. The
plan is the best path padded with "stay" actions to the horizon, rolled out and
scored again as one sequence, so its CostReport means what any actor's means.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from amiagent.contracts import Actor, Cost, Plan, Settings, WorldModel
from amiagent.errors import ConfigError


class SearchActor(Actor):
    """Lattice search over `directions` actions of full length; see the module docstring."""

    @dataclass(frozen=True)
    class Params:
        directions: int = 8
        """Actions tried from each state: unit directions scaled to the action bound (A = 2: evenly spaced
        angles; otherwise +-each axis)."""
        cell: float = 0.25
        """Size of the cells (in the units of the keyed state dims) that merge nearby states."""
        key_dims: tuple[int, ...] = ()
        """State dims that identify a cell; empty: the first A dims (positions, for a waypoint model)."""
        max_nodes: int = 20000
        """Stop growing the tree beyond this many nodes (the best path so far is used)."""

        def __post_init__(self) -> None:
            if self.directions < 2 or self.cell <= 0 or self.max_nodes < 1:
                raise ConfigError(f"actor.search: directions >= 2, cell > 0 and max_nodes >= 1 required, got {self}")

    def __init__(self, params: Params | None = None):
        super().__init__(params)
        self.horizon = 16
        self.world_model: WorldModel | None = None
        self.cost: Cost | None = None

    def bind(self, world_model: WorldModel, cost: Cost) -> None:
        self.world_model, self.cost = world_model, cost
        a = world_model.action_dim
        if a == 2:
            angles = torch.arange(self.params.directions) * (2 * math.pi / self.params.directions)
            units = torch.stack([angles.cos(), angles.sin()], dim=1)
        else:
            units = torch.cat([torch.eye(a), -torch.eye(a)])
        # scaled to the bound along each direction, so every move is as long as the box allows
        scale = torch.minimum(world_model.action_high / units.clamp_min(1e-9),
                              world_model.action_low / units.clamp_max(-1e-9)).amin(dim=1, keepdim=True)
        self._moves = units * scale  # (K, A)
        dims = self.params.key_dims or tuple(range(a))
        if max(dims) >= world_model.state_dim:
            raise ConfigError(f"actor.search: key_dims {dims} exceed the world model's state ({world_model.state_dim})")
        self._key_dims = list(dims)

    def apply(self, settings: Settings) -> None:
        self.horizon = settings.horizon

    def act(self, state: torch.Tensor) -> Plan:
        if self.world_model is None or self.cost is None:
            raise ConfigError("actor.search: bind(world_model, cost) must be called before act()")
        started = time.perf_counter()
        model, cost, moves = self.world_model, self.cost, self._moves
        k = moves.shape[0]
        # the tree, one entry per node: state, cost so far, parent, action that led here
        start = state.reshape(1, -1)
        states, spent = [start], [torch.zeros(1)]
        parent, action = [torch.full((1,), -1)], [torch.zeros(1, moves.shape[1])]
        known, best = self._key(start), torch.zeros(1)  # cells reached so far (sorted ids), cheapest cost
        frontier = torch.zeros(1, dtype=torch.long)  # node ids
        count, evaluated = 1, 0
        for _ in range(self.horizon):
            if not len(frontier) or count >= self.params.max_nodes:
                break
            all_states, all_spent = torch.cat(states), torch.cat(spent)
            # expand
            origin = frontier.repeat_interleave(k)
            tried = moves.repeat(len(frontier), 1)  # (F K, A)
            nxt = model.rollout(all_states[origin], tried.unsqueeze(1))[:, 0]  # (F K, D)
            # score: moving minus staying, each as a one-step plan; any predicted violation prunes the edge
            report = cost.evaluate(nxt.unsqueeze(1), tried.unsqueeze(1))
            still = torch.zeros(len(frontier), 1, moves.shape[1])
            stay = cost.evaluate(model.rollout(all_states[frontier], still), still).total
            evaluated += len(tried) + len(frontier)
            total = all_spent[origin] + report.total - stay.repeat_interleave(k)
            ok = ((report.violation_total <= 0) & torch.isfinite(total)).nonzero().flatten()
            if not len(ok):
                break
            # merge: the cheapest new way into each cell, kept if it beats every earlier way there
            ids, values = self._key(nxt[ok]), total[ok]
            order = torch.argsort(values)
            order = order[torch.argsort(ids[order], stable=True)]  # by cell, cheapest first within a cell
            cells, counts = torch.unique_consecutive(ids[order], return_counts=True)
            first = order[torch.cumsum(counts, 0) - counts]  # the cheapest candidate of each cell
            cheapest = values[first]
            at = torch.searchsorted(known, cells).clamp_max(len(known) - 1)
            seen = known[at] == cells
            better = torch.where(seen, cheapest < best[at], torch.ones_like(seen))
            if not bool(better.any()):
                break
            best[at[seen & better]] = cheapest[seen & better]
            fresh = ~seen
            if bool(fresh.any()):
                known, sort = torch.sort(torch.cat([known, cells[fresh]]))
                best = torch.cat([best, cheapest[fresh]])[sort]
            keep = ok[first[better]]
            states.append(nxt[keep])
            spent.append(total[keep])
            parent.append(origin[keep])
            action.append(tried[keep])
            frontier = torch.arange(count, count + len(keep))
            count += len(keep)
        # pick: the cheapest way to anywhere (cost so far telescopes to the path's cost from here)
        all_spent = torch.cat(spent)
        node = int(all_spent.argmin())
        path = []
        all_parent, all_action = torch.cat(parent), torch.cat(action)
        while node > 0:
            path.append(all_action[node])
            node = int(all_parent[node])
        path.reverse()
        actions = torch.zeros(self.horizon, moves.shape[1])
        if path:
            actions[: len(path)] = torch.stack(path)
        planned = model.rollout(state.reshape(1, -1), actions.unsqueeze(0))
        report = cost.evaluate(planned, actions.unsqueeze(0))
        info = {"plan_ms": (time.perf_counter() - started) * 1e3, "nodes": float(count), "legs": float(len(path)),
                "model_steps": float(evaluated + self.horizon)}
        return Plan(actions, planned[0], report, info)

    def _key(self, states: torch.Tensor) -> torch.Tensor:
        """(N, D) -> (N,) int64 id of each state's cell (the keyed dims, floored to `cell`)."""
        cells = torch.floor(states[:, self._key_dims] / self.params.cell).long()
        ids = cells[:, 0]
        for column in cells.unbind(1)[1:]:  # mixed radix: distinct for cells within +-2^20 of the origin
            ids = ids * (1 << 21) + column
        return ids
