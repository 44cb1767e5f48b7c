"""Resource requests: options, then the resources hooks, then a feasibility check against the cluster.

Shared by every Ray driver: the request goes to Ray only after the hooks have had their say, and a
request that no node of the cluster could ever satisfy fails at once instead of pending forever.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from raydrive.core.errors import InfeasibleResourcesError
from raydrive.core.options import RayOptions
from raydrive.core.plugins import PluginManager
from raydrive.core.policy_types import ResourceRequest

__all__ = ["check_feasible", "resource_request"]


def resource_request(options: RayOptions, action: str, plugins: PluginManager) -> ResourceRequest:
    """The request from the driver's options, adjusted (or vetoed) by the resources hooks."""
    request = ResourceRequest(
        num_cpus=options.num_cpus,
        num_gpus=options.num_gpus,
        memory=options.memory,
        resources=dict(options.resources or {}),
    )
    return plugins.adjust_resources(action, request)


def _needs(request: ResourceRequest, default_cpus: float) -> dict[str, float]:
    needs = {"CPU": request.num_cpus if request.num_cpus is not None else default_cpus}
    if request.num_gpus:
        needs["GPU"] = request.num_gpus
    if request.memory:
        needs["memory"] = float(request.memory)
    needs.update(request.resources)
    return {k: v for k, v in needs.items() if v}


def check_feasible(
    request: ResourceRequest,
    nodes: Iterable[Mapping[str, float]],
    *,
    default_cpus: float = 1.0,
    action: str | None = None,
) -> None:
    """Raise InfeasibleResourcesError when no node's *total* resources can hold the request.

    :param nodes: each alive node's total resources (``CPU``, ``GPU``, ``memory``, custom...).
    :param default_cpus: the CPUs Ray reserves when ``num_cpus`` is not given (1 for tasks and
        Jobs API entrypoints, 0 for a running actor... pass what the driver uses).
    """
    needs = _needs(request, default_cpus)
    totals = [dict(node) for node in nodes]
    if not totals or any(all(node.get(k, 0.0) >= v for k, v in needs.items()) for node in totals):
        return
    best = {k: max(node.get(k, 0.0) for node in totals) for k in needs}
    missing = ", ".join(f"{k}={v:g} (largest node has {best[k]:g})" for k, v in needs.items() if best[k] < v)
    what = f"action {action!r}" if action else "the job"
    raise InfeasibleResourcesError(
        f"{what} asks for {missing}: no node of the cluster can ever satisfy it, so it would "
        "pend forever. Lower the request or add a node that has these resources.",
        needs=needs,
    )
