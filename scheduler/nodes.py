"""The cluster's nodes as trainq shows and drains them (the shell's side of ``core.drains``).

``RayNodes`` asks Ray (through ``raycompat``) which nodes are draining, where each active attempt's
workers are, and to drain a node; it hands the core plain data. The pure helpers below it
(``real_resources``, ``node_views``) are what the CLI, the API and the page show, tested without Ray.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import raycompat
from .core import DrainNotice, idle_drain_refusal
from .errors import DrainRefused, InvalidSpec, NodeNotFound
from .states import ACTIVE

if TYPE_CHECKING:
    from .core import Scheduler

#: Ray's own bookkeeping in a node's or the cluster's resources: a placement group's bundles
#: (``CPU_group_<pg id>``, ``CPU_group_0_<pg id>``, ``bundle_group_<pg id>``), node markers
#: (``node:<ip>``, ``node:__internal_head__``). They say nothing to a person and grow with every job.
_BOOKKEEPING = re.compile(r"^(node:|bundle_group_)|_group_(\d+_)?[0-9a-f]{16,}$")
#: a drain's deadline: at most a day (Ray takes any; a longer one is a mistake)
MAX_DEADLINE_S = 86400.0
#: why trainq drains a node when asked to (Ray's preemption reason: always accepted)
DEFAULT_REASON = "preemption"


def real_resources(resources: Mapping[str, Any]) -> dict[str, float]:
    """``resources`` without Ray's placement-group and node-marker bookkeeping."""
    return {k: float(v) for k, v in resources.items() if not _BOOKKEEPING.search(k)}


@dataclass
class RayNodes:
    """Ray's nodes, drains and placements for the scheduler actor (blocking calls: run in a thread).

    Ray lists a drain's deadline but not its reason; a drain trainq asked for keeps the reason
    and message it was given (``asked``), any other reads ``unknown``.
    """

    asked: dict[str, tuple[str, str]] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)  # draining nodes already counted

    def notices(self, draining: Mapping[str, float | None]) -> list[DrainNotice]:
        """The drains in ``draining`` (``raycompat.draining_nodes``) with the reasons trainq knows."""
        return [DrainNotice(node_id, deadline, *self.asked.get(node_id, ("unknown", "")))
                for node_id, deadline in sorted(draining.items())]

    def new_drains(self, draining: Iterable[str]) -> int:
        """How many of ``draining`` were not draining at the last call (for the drains counter)."""
        now = set(draining)
        fresh = len(now - self.seen)
        self.seen = now
        return fresh

    @staticmethod
    def run_names(core: Scheduler) -> dict[str, tuple[str, int]]:
        """Ray Train run name -> ``(job_id, attempt)`` of every active job's current attempt (on the
        actor's loop: it reads the core)."""
        out = {}
        for job in list(core.writer.live.values()):
            record = core.attempt(job.job_id, job.attempt) if job.status in ACTIVE else None
            if record is not None and record.run_name:
                out[record.run_name] = (job.job_id, job.attempt)
        return out

    async def views(self, core: Scheduler, draining: Mapping[str, float | None]) -> list[dict[str, Any]]:
        """``node_views`` of the live nodes now, with the jobs on each (Ray calls in a thread)."""
        runs = self.run_names(core)

        def read() -> tuple[list[dict[str, Any]], dict[str, dict[str, float]], dict[tuple[str, int], set[str]]]:
            return alive_nodes(), raycompat.available_resources_per_node(), self.placements(runs)

        nodes, free, placements = await asyncio.to_thread(read)
        jobs_on: dict[str, list[str]] = {}
        for (job_id, _), on in placements.items():
            for node_id in on:
                jobs_on.setdefault(node_id, []).append(job_id)
        return node_views(nodes, free, self.notices(draining), jobs_on)

    @staticmethod
    def placements(run_names: Mapping[str, tuple[str, int]]) -> dict[tuple[str, int], set[str]]:
        """The nodes each attempt's workers are on, by ``(job_id, attempt)``, for the attempts
        named in ``run_names`` (Ray Train run name -> key). Blocking."""
        found = raycompat.train_run_nodes(set(run_names))
        return {run_names[name]: nodes for name, nodes in found.items()}

    def drain(self, node_id: str, deadline_s: float | None, reason: str = DEFAULT_REASON,
              message: str = "", run_names: Mapping[str, tuple[str, int]] | None = None) -> dict[str, Any]:
        """Ask Ray to drain ``node_id`` (blocking). Raises ``InvalidSpec`` for a bad reason or
        deadline, ``NodeNotFound``, or ``DrainRefused``: an idle-termination drain of a node a
        trainq job of ``run_names`` (``run_names()``) is on, or one Ray refused (a busy node)."""
        if reason not in raycompat.DRAIN_REASONS:
            raise InvalidSpec(f"reason must be one of {sorted(raycompat.DRAIN_REASONS)}, not {reason!r}", "reason")
        if deadline_s is not None and not 0 < deadline_s <= MAX_DEADLINE_S:
            raise InvalidSpec(f"deadline_s must be from 0 to {MAX_DEADLINE_S:g} seconds, got {deadline_s}",
                              "deadline_s")
        if node_id not in {n["node_id"] for n in alive_nodes()}:
            raise NodeNotFound(f"no live Ray node {node_id!r}; `trainq nodes` lists them", node_id=node_id)
        refusal = idle_drain_refusal(node_id, reason, self.placements(run_names)) \
            if reason == "idle" and run_names else None
        if refusal is not None:
            raise DrainRefused(f"trainq will not drain node {node_id} for idle termination: {refusal}", "reason",
                               node_id=node_id)
        deadline_at = time.time() + deadline_s if deadline_s is not None else None
        accepted, rejection = raycompat.drain_node(node_id, reason, message or "drained with trainq", deadline_at)
        if not accepted:
            raise DrainRefused(f"Ray refused to drain node {node_id}: {rejection}", "node_id", node_id=node_id)
        self.asked[node_id] = (reason, message or "drained with trainq")
        return {"node_id": node_id, "accepted": True, "reason": reason, "deadline_at": deadline_at}


def alive_nodes() -> list[dict[str, Any]]:
    """Ray's live nodes: id, address, head or not, total resources (real ones only). Blocking."""
    import ray

    return [{"node_id": n["NodeID"], "address": n.get("NodeManagerAddress", ""),
             "is_head": "node:__internal_head__" in n.get("Resources", {}),
             "resources": real_resources(n.get("Resources", {}))}
            for n in ray.nodes() if n.get("Alive")]


def node_views(nodes: Iterable[Mapping[str, Any]], free: Mapping[str, Mapping[str, float]],
               draining: Iterable[DrainNotice], jobs_on: Mapping[str, list[str]]) -> list[dict[str, Any]]:
    """What ``trainq nodes`` and ``GET /api/cluster/nodes`` show, one entry per live node: its
    resources (total and free, real ones only), the jobs with a worker on it, and whether it is
    draining, why and until when (epoch seconds)."""
    drains = {d.node_id: d for d in draining}
    out = []
    for node in sorted(nodes, key=lambda n: (not n["is_head"], n["node_id"])):
        node_id = node["node_id"]
        drain = drains.get(node_id)
        out.append({"node_id": node_id, "address": node["address"], "is_head": node["is_head"],
                    "resources": dict(node["resources"]), "free": real_resources(free.get(node_id, {})),
                    "jobs": sorted(jobs_on.get(node_id, [])), "draining": drain is not None,
                    "drain_reason": drain.reason if drain else None,
                    "drain_deadline_at": drain.deadline_at if drain else None})
    return out
