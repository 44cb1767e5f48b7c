"""``ray-job`` (entry point ``raydrive.drivers.ray_job:RayJobExecutor``): each action a job owned by
a detached registry on the cluster, with queues, priorities, retries and deadlines.

Submitter side:

- :mod:`.executor`: :class:`RayJobExecutor` and its options;
- :mod:`.outbox`: the batching of submissions into registry calls.

Cluster side (importing these imports no Ray and not the executor):

- :mod:`.registry`: the detached job registry; :mod:`.queue`: its queues;
  :mod:`.completions`: its wait on many jobs' results; :mod:`.journal`: its records in the GCS;
- :mod:`.worker`: the pooled task and the fresh actor per job.

Both: :mod:`.wire`, what travels between them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from raydrive.core.lazy import lazy_exports

if TYPE_CHECKING:
    from raydrive.drivers.ray_job.executor import RayJobExecutor, RayJobOptions

__all__ = ["RayJobExecutor", "RayJobOptions"]

# Imported on first use: the driver's cluster-side modules import this package and must not pay
# for the executor's imports (tests/test_cold_imports.py).
__getattr__ = lazy_exports(__name__, dict.fromkeys(__all__, ".executor"))
