"""``ray-actor`` and ``ray-task`` (entry points ``raydrive.drivers.ray_actor:RayActorExecutor``,
``raydrive.drivers.ray_actor:RayTaskExecutor``): actions on a persistent Ray actor.

- :mod:`.executor`: :class:`RayActorExecutor` and :class:`RayTaskExecutor`.

What runs on the cluster is the shared layer's action actor (:mod:`raydrive.drivers.ray.worker`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from raydrive.core.lazy import lazy_exports

if TYPE_CHECKING:
    from raydrive.drivers.ray_actor.executor import RayActorExecutor, RayTaskExecutor

__all__ = ["RayActorExecutor", "RayTaskExecutor"]

# Imported on first use: the driver's cluster-side modules import this package and must not pay
# for the executor's imports (tests/test_cold_imports.py).
__getattr__ = lazy_exports(__name__, dict.fromkeys(__all__, ".executor"))
