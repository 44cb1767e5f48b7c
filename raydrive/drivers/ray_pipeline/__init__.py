"""``ray-pipeline`` (entry point ``raydrive.drivers.ray_pipeline:RayPipelineExecutor``): a sequence of
actions run by one detached actor, checkpointed and reported to the pipeline service.

Submitter side:

- :mod:`.executor`: :class:`RayPipelineExecutor` and its options;
- :mod:`.resume`: where a resumed run starts; :mod:`.payload`: secret params kept off the service.

Cluster side (importing these imports no Ray and not the executor):

- :mod:`.actor`: the detached pipeline actor; :mod:`.runner`: what it runs;
- :mod:`.reporter`: progress to the service; :mod:`.cancel`: how a run stops on a cancel;
- :mod:`.watcher`: the cluster's run watcher, which marks a run whose actor died failed.

Both: :mod:`.wire`, the run's spec.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from raydrive.core.lazy import lazy_exports

if TYPE_CHECKING:
    from raydrive.drivers.ray_pipeline.executor import PipelineOptions, RayPipelineExecutor

__all__ = ["PipelineOptions", "RayPipelineExecutor"]

# Imported on first use: the driver's cluster-side modules import this package and must not pay
# for the executor's imports (tests/test_cold_imports.py).
__getattr__ = lazy_exports(__name__, dict.fromkeys(__all__, ".executor"))
