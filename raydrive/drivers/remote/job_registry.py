"""ray-job's detached job registry: owns every job's task or actor, queues nothing, keeps outcomes.

It runs on the cluster (one per cluster, named :data:`REGISTRY_NAME` in namespace ``raydrive``),
so a job outlives the process that submitted it and any process can look it up. The code each job
runs (the pooled task, the fresh actor) is in :mod:`raydrive.drivers.remote.workers`; what it
receives is a :class:`~raydrive.drivers.wire.JobSpec`.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import time
from collections.abc import Sequence
from typing import Any

from raydrive.core.errors import DuplicateJobError, ExecutionError, RaydriveError
from raydrive.core.status import TERMINAL_STATES, JobState
from raydrive.drivers.remote.workers import (
    _kill,
    _remote,
    remote_job_actor,
    remote_job_task,
)
from raydrive.drivers.wire import REGISTRY_NAME, REGISTRY_PROTOCOL, JobSpec

__all__ = ["REGISTRY_NAME", "JobRegistry", "remote_job_registry"]

CANCEL_GRACE_S = 3.0
"""Seconds a cancelled pooled task gets to stop on KeyboardInterrupt before its process is killed."""

MAX_FINISHED_RECORDS = 100_000
"""The registry keeps at most this many finished jobs; the oldest are dropped first."""

# --- the job registry ---------------------------------------------------------------------------
# The core vocabulary, as plain strings: what travels back to the executors (msgpack, no pickle).
PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED, UNKNOWN = (s.value for s in JobState)
_TERMINAL = frozenset(s.value for s in TERMINAL_STATES)

Outcome = tuple[str, Any, BaseException | None]
"""``(state, result, error)`` of a job as the registry reports it."""


class _Job:
    __slots__ = (
        "action",
        "actor",
        "cancelled",
        "done",
        "error",
        "expires",
        "finished_at",
        "job_id",
        "ref",
        "result",
        "state",
        "submitted_at",
        "ttl",
    )

    def __init__(self, job_id: str, action: str, ttl: float) -> None:
        self.job_id = job_id
        self.action = action
        self.ttl = ttl
        self.state = PENDING
        self.result: Any = None
        self.error: BaseException | None = None
        self.ref: Any = None
        self.actor: Any = None
        self.cancelled = False
        self.done = asyncio.Event()
        self.submitted_at = time.time()
        self.finished_at: float | None = None
        self.expires = float("inf")

    def outcome(self) -> Outcome:
        return (self.state, self.result, self.error)


class JobRegistry:
    """The detached registry of ray-job: owns every job's task or actor and keeps its outcome.

    One per cluster (named :data:`REGISTRY_NAME` in namespace :data:`NAMESPACE`, lifetime
    detached), so a job survives the process that submitted it and any process can look it up,
    and a job id is refused while another job holds it, whichever process asks. Tasks and actors
    that a detached actor owns are not killed when the submitting driver exits; their results are
    kept here, since an object owned by a dead driver would be lost.

    Retention: a finished job's record (state, result or error) is kept ``ttl`` seconds after it
    finished (the executor's ``result_ttl``), however often it is read, or until ``delete``; at most
    :data:`MAX_FINISHED_RECORDS` finished records are kept, the oldest dropped first. A job id is
    reserved while its record is kept. Records live in this actor's memory: if the registry dies
    (or the cluster stops), they are lost, and jobs still running under it are stopped by Ray.
    """

    def __init__(self) -> None:
        self._jobs: dict[str, _Job] = {}
        self._expiry: list[tuple[float, str]] = []
        self._finished = 0
        self._launchers: dict[str, Any] = {}

    async def protocol(self) -> int:
        return REGISTRY_PROTOCOL

    async def submit(self, job_id: str, packed: dict[str, Any]) -> None:
        """Register and start a job; raise DuplicateJobError when the id is held.

        ``packed``: a :class:`~raydrive.drivers.wire.JobSpec`, packed.
        """
        self._sweep()
        spec = JobSpec.unpack(packed)
        if job_id in self._jobs:
            raise DuplicateJobError(
                f"job id {job_id!r} is already in use on this cluster (job registry "
                f"{REGISTRY_NAME!r}); choose another id or delete() the finished job first",
                job_id=job_id,
            )
        job = _Job(job_id, spec.action, float(spec.ttl))
        self._jobs[job_id] = job
        try:
            self._start(job, spec)
        except Exception as exc:
            self._finish(job, FAILED, error=_describe(exc, job))
            return
        asyncio.get_running_loop().create_task(self._track(job))

    async def submit_many(self, jobs: list[tuple[str, dict[str, Any]]]) -> list[str]:
        """:meth:`submit` for a batch (one message for many jobs); returns the ids refused as taken."""
        refused = []
        for job_id, spec in jobs:
            try:
                await self.submit(job_id, spec)
            except DuplicateJobError:
                refused.append(job_id)
        return refused

    def _launcher(self, spec: JobSpec) -> Any:
        # `.options()` validates and serializes the runtime env each time: once per distinct set.
        key = spec.launch or f"{spec.mode}:{json.dumps(spec.ray_options, sort_keys=True)}"
        launcher = self._launchers.get(key)
        if launcher is None:
            remote = remote_job_actor() if spec.mode == "actor" else remote_job_task()
            if len(self._launchers) > 256:
                self._launchers.clear()
            launcher = self._launchers[key] = remote.options(**spec.ray_options)
        return launcher

    def _start(self, job: _Job, spec: JobSpec) -> None:
        launcher = self._launcher(spec)
        if spec.mode == "actor":
            job.actor = launcher.remote(spec.env, spec.code_paths)
            job.ref = job.actor.run.remote(spec.call(job.job_id).pack())
        else:
            job.ref = launcher.remote(spec.pooled(job.job_id).pack())

    async def _track(self, job: _Job) -> None:
        try:
            result = await job.ref
        except Exception as exc:
            if job.cancelled:
                self._finish(
                    job,
                    STOPPED,
                    error=ExecutionError(
                        f"job {job.job_id!r} (action {job.action!r}) was cancelled",
                        error_type="TaskCancelledError",
                        error_message="cancelled",
                        job_id=job.job_id,
                    ),
                )
            else:
                self._finish(job, FAILED, error=_describe(exc, job))
        else:
            self._finish(job, SUCCEEDED, result=result)
        finally:
            actor, job.actor, job.ref = job.actor, None, None
            if actor is not None:  # the fresh actor per job goes as soon as its job is done
                _kill(actor)

    def _finish(
        self, job: _Job, state: str, *, result: Any = None, error: BaseException | None = None
    ) -> None:
        job.state, job.result, job.error = state, result, error
        job.finished_at = time.time()
        job.expires = time.monotonic() + job.ttl
        heapq.heappush(self._expiry, (job.expires, job.job_id))
        self._finished += 1
        job.done.set()

    def _sweep(self) -> None:
        now = time.monotonic()
        while self._expiry and (self._expiry[0][0] <= now or self._finished > MAX_FINISHED_RECORDS):
            expires, job_id = heapq.heappop(self._expiry)
            job = self._jobs.get(job_id)
            # `expires` tells this record from a later job that reused a deleted job's id.
            if job is not None and job.state in _TERMINAL and job.expires == expires:
                del self._jobs[job_id]
                self._finished -= 1

    async def started(self, job_id: str) -> None:
        job = self._jobs.get(job_id)
        if job is not None and job.state == PENDING:
            job.state = RUNNING

    async def status(self, job_id: str) -> str:
        self._sweep()
        job = self._jobs.get(job_id)
        return job.state if job is not None else UNKNOWN

    async def outcome(
        self, job_id: str, timeout: float | None = None, also: Sequence[str] = ()
    ) -> dict[str, Outcome]:
        """Wait up to ``timeout`` s (None: until it ends) for ``job_id``; return its outcome and
        those of the finished jobs among ``also`` (a client's other jobs, fetched in the same trip)."""
        self._sweep()
        job = self._jobs.get(job_id)
        if job is None:
            return {job_id: (UNKNOWN, None, None)}
        if not job.done.is_set() and (timeout is None or timeout > 0):
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(job.done.wait(), timeout)
        found = {job_id: job.outcome()}
        for other in also:
            done = self._jobs.get(other)
            if done is not None and done.state in _TERMINAL:
                found[other] = done.outcome()
        return found

    async def cancel(self, job_id: str) -> bool:
        """Stop a job that has not finished: its task is cancelled, its actor killed."""
        import ray

        job = self._jobs.get(job_id)
        if job is None or job.state in _TERMINAL:
            return False
        job.cancelled = True
        if job.actor is not None:
            _kill(job.actor)
        elif job.ref is not None:
            try:
                ray.cancel(job.ref)  # not forced: a running action gets KeyboardInterrupt...
            except Exception:
                return False
            asyncio.get_running_loop().create_task(self._force_cancel(job))
        return True

    async def _force_cancel(self, job: _Job) -> None:
        # ...which cannot break a blocking call (sleep, I/O wait): after a grace period the
        # worker process is killed (Ray starts a fresh one for the pool).
        await asyncio.sleep(CANCEL_GRACE_S)
        if not job.done.is_set() and job.ref is not None:
            import ray

            with contextlib.suppress(Exception):
                ray.cancel(job.ref, force=True)

    async def delete(self, job_id: str) -> bool:
        """Forget a finished job (its id becomes free). Running jobs are not deleted."""
        job = self._jobs.get(job_id)
        if job is None or job.state not in _TERMINAL:
            return False
        del self._jobs[job_id]
        self._finished -= 1
        return True

    async def counts(self) -> dict[str, int]:
        """How many records the registry holds, by state (for monitoring and tests)."""
        counts: dict[str, int] = {}
        for job in self._jobs.values():
            counts[job.state] = counts.get(job.state, 0) + 1
        return counts


def _describe(exc: BaseException, job: _Job) -> BaseException:
    from raydrive.drivers.ray_common.errors import to_raydrive_error

    mapped = to_raydrive_error(exc, action=job.action, job_id=job.job_id)
    if mapped is exc and not isinstance(exc, RaydriveError):
        # Whatever it is, it must pickle back to the client as a raydrive error.
        mapped = ExecutionError.from_exception(exc, action=job.action, job_id=job.job_id)
    return mapped


def remote_job_registry() -> Any:
    """``ray.remote(JobRegistry)`` as an async actor that holds no CPU."""
    if "registry" not in _remote:
        import ray

        _remote["registry"] = ray.remote(num_cpus=0, max_restarts=0, max_concurrency=10_000)(JobRegistry)
    return _remote["registry"]
