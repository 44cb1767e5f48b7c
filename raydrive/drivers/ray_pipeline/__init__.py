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

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from raydrive.drivers.ray_pipeline.executor import PipelineOptions, RayPipelineExecutor

__all__ = ["PipelineOptions", "RayPipelineExecutor"]


def __getattr__(name: str) -> Any:
    # Imported on first use (PEP 562): the driver's cluster-side modules import this package and
    # must not pay for the executor's imports (see tests/test_cold_imports.py).
    if name in __all__:
        from raydrive.drivers.ray_pipeline import executor

        return getattr(executor, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
