"""``ray-actor`` and ``ray-task`` (entry points ``raydrive.drivers.ray_actor:RayActorExecutor``,
``raydrive.drivers.ray_actor:RayTaskExecutor``): actions on a persistent Ray actor.

- :mod:`.executor`: :class:`RayActorExecutor` and :class:`RayTaskExecutor`.

What runs on the cluster is the shared layer's action actor (:mod:`raydrive.drivers.ray.worker`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from raydrive.drivers.ray_actor.executor import RayActorExecutor, RayTaskExecutor

__all__ = ["RayActorExecutor", "RayTaskExecutor"]


def __getattr__(name: str) -> Any:
    # Imported on first use (PEP 562): the driver's cluster-side modules import this package and
    # must not pay for the executor's imports (see tests/test_cold_imports.py).
    if name in __all__:
        from raydrive.drivers.ray_actor import executor

        return getattr(executor, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
