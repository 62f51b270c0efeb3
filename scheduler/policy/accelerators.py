"""Accelerator types, pure: which type a gang gets, where it goes, and how quotas count it.

A node of type X carries Ray's resource ``accelerator_type:X``, and Ray Train given
``ScalingConfig(accelerator_type=X)`` asks for 0.001 of it per worker (Ray 2.60,
``ray/air/config.py``, ``_resources_per_worker_not_none``): every worker of the gang lands on an
X node, so a gang never mixes types. A job names one type or several in order of preference
(Kueue's resource flavors with a fallback order); admission gives it the first type that fits
now, within its owner's quota for that type.

Quotas and usage count a placed job's resources twice: under their own names (``GPU``) and under
``<name>:<type>`` (``GPU:A100``), so a users file may cap or guarantee one type. A job that names
no type is counted under the plain names only (Ray may place it on any node).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from .placement import STRICT_PACK, STRICT_SPREAD, holds, place_gang
from .queue import Entry, Resources, fits

#: Ray's resource prefix for a node's accelerator type, and what Ray Train asks per worker.
MARKER = "accelerator_type:"
PER_WORKER = 0.001
_EPS = 1e-9


@dataclass(frozen=True)
class Choice:
    """Where a gang goes: its type (None: the job names none), the whole gang's and one worker's
    resources with that type's marker, and workers per node (``nodes`` order; None: nodes unknown)."""

    accelerator_type: str | None
    demand: Resources
    worker: Resources
    placement: list[int] | None


def typed(worker: Mapping[str, float], accelerator_type: str | None) -> Resources:
    """One worker's resources as Ray Train asks for them with this type."""
    return {**worker, MARKER + accelerator_type: PER_WORKER} if accelerator_type else dict(worker)


def per_type(demand: Mapping[str, float], accelerator_type: str | None) -> Resources:
    """``demand`` as quotas and usage count it: its own names, plus ``<name>:<type>`` when placed on a type."""
    plain = {k: v for k, v in demand.items() if not k.startswith(MARKER)}
    if not accelerator_type:
        return plain
    return {**plain, **{f"{k}:{accelerator_type}": v for k, v in plain.items()}}


def is_typed(name: str) -> bool:
    """Whether a quota's resource name is per type (``GPU:A100``)."""
    return ":" in name


def types_in(resources: Iterable[Mapping[str, float]]) -> list[str]:
    """The accelerator types named in these resource maps (nodes, or a promised maximum), sorted."""
    return sorted({k[len(MARKER):] for r in resources for k, v in r.items() if k.startswith(MARKER) and v > 0})


def choose(entry: Entry, free: Mapping[str, float], nodes: Sequence[Mapping[str, float]] | None,
           allowed: Callable[[str | None, Resources], bool] | None = None) -> Choice | None:
    """The first of the job's types (in its order) that ``allowed`` (its owner's quota) permits and
    whose whole gang fits ``free`` and, when known, the ``nodes`` with the job's strategy."""
    for t in entry.types or (None,):
        worker = typed(entry.worker, t)
        demand = {k: v * entry.num_workers for k, v in worker.items()} if entry.worker else \
            {**entry.demand, **({MARKER + t: PER_WORKER} if t else {})}
        if allowed is not None and not allowed(t, demand):
            continue
        if not fits(demand, free):
            continue
        placement = None
        if nodes is not None and entry.worker:
            placement = place_gang(worker, entry.num_workers, nodes, entry.strategy)
            if placement is None:
                continue
        return Choice(t, demand, worker, placement)
    return None


def unknown_types(wanted: Sequence[str], nodes: Sequence[Mapping[str, float]],
                  promised: Mapping[str, float]) -> list[str] | None:
    """The cluster's types when none of ``wanted`` is on any node or promised (``TRAINQ_MAX_RESOURCES``),
    so the job could never start; None when one of them is there (or the job names none)."""
    if not wanted:
        return None
    present = types_in([*nodes, promised])
    return None if set(wanted) & set(present) else present


def never_fits(entry: Entry, max_capacity: Mapping[str, float], nodes: Sequence[Mapping[str, float]]) -> bool:
    """True when no type of the job fits an empty cluster of its largest size (its totals, and the
    node sizes when known, with the job's strategy)."""
    size = _promised(max_capacity, nodes)
    return choose(entry, size, list(nodes) or None) is None


def _promised(max_capacity: Mapping[str, float], nodes: Sequence[Mapping[str, float]]) -> Resources:
    # A type a node carries is in Ray's totals too; the max may be a user-written promise without it.
    out = dict(max_capacity)
    for t in types_in(nodes):
        out.setdefault(MARKER + t, sum(n.get(MARKER + t, 0.0) for n in nodes))
    return out


def why_not(entry: Entry, free: Mapping[str, float], nodes: Sequence[Mapping[str, float]]) -> str | None:
    """Why a gang that fits the totals cannot be placed on the nodes now, with the numbers; None when
    it can (or the job names no type and keeps Ray's default PACK, for which the totals explain it)."""
    if choose(entry, free, nodes) is not None or not entry.worker:
        return None
    parts = []
    for t in entry.types or (None,):
        worker = typed(entry.worker, t)
        kind = [n for n in nodes if not t or n.get(MARKER + t, 0.0) > _EPS]
        on = f" {t}" if t else ""
        if not kind:
            parts.append(f"no{on} node is up")
            continue
        room = [holds(worker, n) for n in kind]
        need = _fmt(entry.worker)
        if entry.strategy == STRICT_PACK:
            parts.append(f"STRICT_PACK needs {entry.num_workers} workers × {need} on one{on} node; the most any"
                         f"{on} node holds now is {max(room)} ({_fmt(_best(kind, worker))} free)")
        elif entry.strategy == STRICT_SPREAD:
            parts.append(f"STRICT_SPREAD needs {entry.num_workers}{on} nodes with room for one worker ({need});"
                         f" {sum(1 for r in room if r)} have it now")
        else:
            parts.append(f"needs {entry.num_workers} workers × {need} on{on} nodes; they hold {sum(room)} now")
    return "; ".join(parts)


def _best(nodes: Sequence[Mapping[str, float]], worker: Mapping[str, float]) -> Resources:
    best = max(nodes, key=lambda n: min((n.get(k, 0.0) / v for k, v in worker.items() if v > 0), default=0.0))
    return {k: max(0.0, best.get(k, 0.0)) for k in worker if not k.startswith(MARKER)}


def _fmt(r: Mapping[str, float]) -> str:
    return ", ".join(f"{v:g} {k}" for k, v in sorted(r.items()) if not k.startswith(MARKER))
