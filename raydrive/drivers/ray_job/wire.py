"""What crosses between ray-job's submitter, its job registry and the job's worker, packed here only.

============================  =================================================  ==================
message                       carries                                            packed as
============================  =================================================  ==================
:class:`JobSpec`              a job for the cluster's job registry               dict
:class:`PooledJob`            ``mode='task'``: one pooled task                   bytes (or a list)
:class:`~raydrive.drivers.ray.wire.ActionCall`  ``mode='actor'``: the fresh actor's one call  bytes
============================  =================================================  ==================

Packing of values and results is the shared layer's (:mod:`raydrive.drivers.ray.wire`). Kept
light (no Ray or pydantic import): the registry and the pooled task import it on the cluster.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from raydrive.drivers.ray.wire import ActionCall, pack_values, unpack_values

__all__ = ["REGISTRY_NAME", "REGISTRY_PROTOCOL", "JobSpec", "PooledJob"]

# 2: typed JobSpec; 3: queue, priority, retries, deadline, attempts; 4: packed results;
# 5: outcome(gather=...); 6: ActionCall without notify (the job actor always reports RUNNING);
# 7: records journaled in the GCS KV, the registry restarted by Ray (faults, issue 26);
# 8: outcome(expect=...) arrivals (issue 25's small-batch fast path) on top of 7's journal
REGISTRY_PROTOCOL = 8
REGISTRY_NAME = f"raydrive-job-registry-v{REGISTRY_PROTOCOL}"
"""Name of ray-job's detached job registry; versioned, so an old registry never serves a newer client."""


@dataclass(frozen=True, slots=True)
class PooledJob:
    """One ray-job job run as a pooled Ray task: the call plus what the pooled process lacks.

    ``env`` (variables and secrets) is set for the job only; ``code_paths`` are the submitter's
    script dir and cwd, as Ray gives a driver's own workers.
    """

    target: Any
    params: Any = field(repr=False)
    job_id: str
    env: Mapping[str, str] = field(repr=False)
    code_paths: Sequence[str] = ()

    def pack(self) -> bytes | list[Any]:
        return pack_values(self.target, self.params, self.job_id, dict(self.env), list(self.code_paths))

    @classmethod
    def unpack(cls, data: bytes | Sequence[Any]) -> PooledJob:
        target, params, job_id, env, code_paths = unpack_values(data)
        return cls(target, params, job_id, env, code_paths)


@dataclass(frozen=True, slots=True)
class JobSpec:
    """A ray-job job as its submitter sends it to the cluster's job registry.

    ``ray_options`` are the task's or actor's Ray options (resources, runtime env); ``launch`` a
    key naming ``mode`` and ``ray_options`` (the same for the same ones), for the registry's cache
    of Ray launchers; ``ttl`` how long the outcome is kept after the job ends.

    ``retry``: the job's :class:`~raydrive.core.retry.RetryPolicy` (``to_wire()``; None: never
    retried); ``timeout_s``: the deadline of each attempt, counted from its launch; ``queue`` and
    ``max_concurrent``: the registry's queue the job waits in and that queue's limit (None: the
    job is not queued); ``priority``: its place in the queue (higher first, then FIFO).
    """

    mode: str
    action: str
    target: Any
    params: Any = field(repr=False)
    env: Mapping[str, str] = field(repr=False)
    code_paths: Sequence[str]
    ray_options: Mapping[str, Any]
    launch: str
    ttl: float = 3600.0
    retry: Mapping[str, Any] | None = None
    timeout_s: float | None = None
    queue: str = "default"
    max_concurrent: int | None = None
    priority: int = 0

    def pack(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in _JOB_SPEC_FIELDS}

    @classmethod
    def unpack(cls, data: Mapping[str, Any]) -> JobSpec:
        """:raises TypeError: not a spec of this protocol (a field missing or unknown)."""
        return cls(**data)

    def pooled(self, job_id: str) -> PooledJob:
        return PooledJob(self.target, self.params, job_id, self.env, self.code_paths)

    def call(self, job_id: str) -> ActionCall:
        return ActionCall(self.target, self.params, job_id)


_JOB_SPEC_FIELDS = tuple(f.name for f in dataclasses.fields(JobSpec))
