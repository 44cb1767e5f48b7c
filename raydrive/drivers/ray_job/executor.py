"""``ray-job``: submits actions as asynchronous jobs on a Ray cluster, tracked by job id.

Two modes, same API and semantics (``mode`` option):

``'task'`` (default)
    Each job is a pooled Ray task: worker processes are reused, a job costs milliseconds. The
    job's environment (secrets included) is set in ``os.environ`` for the job only and restored
    after it, since the process serves other jobs. A job that carries secrets never runs in a
    worker process that served anyone else: its runtime env names a worker pool of its own
    (``RAYDRIVE_WORKER_POOL``, a keyed digest of this executor and its secret set, which tells
    nothing about the values), so Ray starts fresh processes for it, reused only by this
    executor's jobs with the same secrets. A thread or child process left behind by an earlier
    job of another submitter therefore never sees them. Cost: one worker start for the first
    job of each secret set (see ``benchmarks/bench_ray_drivers.py --only pooled-secrets``).
``'actor'``
    Each job runs on a fresh Ray actor, killed as soon as the job ends: process isolation, at the
    price of a process start per job. The actor holds ``num_cpus`` while it runs; with
    ``num_cpus=None`` Ray's actor default applies (one CPU to be placed, none held), so many
    jobs' actors run side by side, each still a process. Give ``num_cpus=1`` for at most one
    job per CPU, or a small fraction (e.g. 0.01) to bound how many run at once per node.

Jobs are fire-and-forget. They are owned by a detached job registry actor on the cluster
(:class:`~raydrive.drivers.ray_job.registry.JobRegistry`), not by the submitting process, so
they keep running after it exits, and any process connected to the same cluster can look a job
up by id (``get_status``, ``get_result``, ``wait``, ``cancel``, ``delete``). A job id in use
anywhere on the cluster is refused with DuplicateJobError.

Retention: a finished job's status and result are kept for ``result_ttl`` seconds (default one
hour) after it finishes, however often they are read, or until ``delete(job_id)``; the id is
reserved meanwhile. The registry journals them in the GCS: they survive the registry's death
(see :mod:`~raydrive.drivers.ray_job.registry`), not a cluster restart (unless the GCS is fault
tolerant, backed by Redis).

Cost of a burst: jobs with generated ids are sent to the registry in batches by a helper thread
(whatever was submitted while the previous batch was on its way), and each executor fetches the
outcomes of its other finished jobs along with the one asked for, so submitting and collecting
200 jobs costs a few registry round trips, not 400. A job with a chosen id is registered at once,
so that a taken id is refused by ``submit`` itself. Queued submissions are sent before ``close()``
returns and at interpreter exit. The runtime env is built once per second of a burst (see
:meth:`~raydrive.drivers.ray.base.BaseRayExecutor.runtime_env`).

Queue, retries, deadline: all three are held by the registry on the cluster, so they hold for
every submitting process and with the submitter gone. ``max_concurrent`` bounds how many jobs of
the ``queue`` (a name shared cluster-wide) hold a slot at once; the others wait as PENDING,
``priority`` first, then FIFO, and no Ray task exists for them while they wait
(:mod:`~raydrive.drivers.ray_job.queue`). ``retries`` / ``retry_on`` / ``retry_backoff``
(:class:`~raydrive.core.retry.RetryPolicy`, resolved here per job) are carried out by the
registry under the same job id (:meth:`RayJobExecutor.get_attempts`); ``timeout_s`` stops an
attempt at its deadline, counted from the attempt's launch (see
:mod:`~raydrive.drivers.ray_job.registry` for both choices).
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import os
import threading
import uuid
from collections import OrderedDict
from typing import Any, Literal, NoReturn

from pydantic import Field

from raydrive.core.calls import check_call
from raydrive.core.errors import (
    ClusterUnreachableError,
    ExecutionError,
    ExecutionTimeoutError,
    JobNotFoundError,
    RaydriveError,
    SubmissionError,
)
from raydrive.core.options import RayOptions
from raydrive.core.retry import Attempt, RetryPolicy
from raydrive.core.status import TERMINAL_STATES, JobState
from raydrive.drivers.ray.base import BaseRayExecutor
from raydrive.drivers.ray.errors import is_actor_death, to_raydrive_error
from raydrive.drivers.ray.submission import Submission
from raydrive.drivers.ray.wire import NAMESPACE
from raydrive.drivers.ray_job.outbox import Outbox
from raydrive.drivers.ray_job.registry import remote_job_registry
from raydrive.drivers.ray_job.wire import REGISTRY_NAME, JobSpec

__all__ = ["RayJobExecutor", "RayJobOptions"]

_OUTCOME_CACHE = 10_000  # finished outcomes an executor keeps at hand
ENV_REUSE_S = 1.0  # a burst of submissions shares one runtime-env build (see BaseRayExecutor.runtime_env)
_PREFETCH = 1_000  # other jobs' outcomes asked for per round trip
# Once the job asked for has ended, the registry waits up to 20 ms for 64 of the others to end
# too (those already ended included): a registry call costs ~1 ms of CPU on each side, so a batch
# collected a few jobs per call spends more on calls than on its jobs. The wait ends sooner once
# none of them has ended for 5 ms; a job alone in flight waits for nothing, and a read whose wait
# brought none back makes the next read not wait (see _read).
_GATHER = (64, 0.02, 0.005)  # (count, wait_s, quiet_s) of JobRegistry.outcome
REGISTRY_ANSWER_S = 60.0  # see RayJobExecutor.answer_bound


class RayJobOptions(RayOptions):
    """Options of ``ray-job``: the Ray options plus the job mode and result retention."""

    mode: Literal["task", "actor"] = Field(
        default="task", description="'task': pooled Ray tasks; 'actor': a fresh actor per job."
    )
    result_ttl: float = Field(
        default=3600.0, gt=0, description="Seconds a finished job's status and result are kept."
    )
    max_concurrent: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        description="Jobs of `queue` holding a slot at once, cluster-wide (None: jobs are not queued).",
    )
    queue: str = Field(
        default="default",
        min_length=1,
        max_length=200,
        description="The registry's queue (a name shared by every submitter) that max_concurrent limits.",
    )


class RayJobExecutor(BaseRayExecutor):
    """Submits actions as jobs on a Ray cluster: ``submit`` / ``get_status`` / ``wait`` / ``get_result``."""

    name = "ray-job"
    Options = RayJobOptions
    options: RayJobOptions

    def __init__(self, env: Any = None, /, **options: Any) -> None:
        super().__init__(env, **options)
        self._registry: Any = None
        self._lock = threading.Lock()
        self._outcomes: OrderedDict[str, tuple[str, Any, BaseException | None, int]] = OrderedDict()
        # Jobs with generated ids go to the registry in batches, from a helper thread (see Outbox).
        self._outbox = Outbox(send=lambda batch: self._send("submit_many", batch), receive=self._receive)
        self._launch: tuple[Any, list[tuple[str, str]], str] | None = None
        self._pool_key = os.urandom(16)  # keys the worker-pool digest of secret sets (see module doc)
        self._policies: dict[Any, dict[str, Any] | None] = {}  # action class -> retry policy on the wire
        self._gather_pays = True  # see _read

    # --- the registry -------------------------------------------------------------------------
    def _registry_handle(self) -> Any:
        registry = self._registry
        if registry is not None:
            return registry
        self.connect()
        options: dict[str, Any] = {
            "name": REGISTRY_NAME,
            "namespace": NAMESPACE,
            "lifetime": "detached",
            "get_if_exists": True,  # atomic in the GCS: concurrent first users share one registry
            # The head node lives as long as the cluster; the registry holds no CPU.
            "resources": {"node:__internal_head__": 0.001},
        }
        if self.options.include_sdk:
            sdk = self.runtime_env().runtime_env.get("py_modules")
            if sdk:
                options["runtime_env"] = {"py_modules": sdk}
        with self._errors():
            launcher = remote_job_registry().options(**options)
            self._registry = self.bounded("job registry creation", launcher.remote)
        return self._registry

    def _call(self, method: str, *args: Any, job_id: str | None = None, wait: float | None = 0.0) -> Any:
        """A registry call, answered within :meth:`answer_bound` s plus ``wait`` (the registry's
        own wait in the call; None: no bound, a ``get_result`` without timeout)."""
        if job_id is not None:
            self._outbox.settle(job_id)
        return self._receive(self._send(method, *args, job_id=job_id), job_id, self._bound(wait))

    def _bound(self, wait: float | None) -> float | None:
        """How long to wait for the answer of a call in which the registry waits ``wait`` s
        (None: no bound)."""
        return None if wait is None else self.answer_bound() + max(float(wait), 0.0)

    def answer_bound(self) -> float:
        """The longest a registry call waits for its answer beyond the registry's own wait:
        ``connect_timeout``, at least 60 s (the first call may wait for the registry's start)."""
        return max(self.options.connect_timeout, REGISTRY_ANSWER_S)

    def _send(self, method: str, *args: Any, job_id: str | None = None) -> Any:
        """Start a registry call (it does not wait); :meth:`_receive` waits for its answer."""
        registry = self._registry_handle()
        try:
            return getattr(registry, method).remote(*args)
        except TypeError as exc:
            # Ray could not serialize an argument; its message quotes the argument's repr, which
            # holds the job's params and environment (secrets): never show it.
            raise SubmissionError(
                f"the job could not be sent to the cluster: {type(exc).__name__} while serializing "
                "it (params must be picklable; the message is withheld, it quotes params and secrets)",
                job_id=job_id,
            ) from None

    def _receive(self, ref: Any, job_id: str | None = None, bound: float | None = -1.0) -> Any:
        """The answer of a registry call; ``bound``: seconds to wait (-1: :meth:`answer_bound`)."""
        import ray

        if bound is not None and bound < 0:
            bound = self.answer_bound()
        try:
            return ray.get(ref, timeout=bound)
        except ray.exceptions.GetTimeoutError:
            raise ClusterUnreachableError(
                f"the raydrive job registry {REGISTRY_NAME!r} on {self.address} did not answer "
                f"within {bound:g} s (the cluster's head is overloaded or half-working)",
                job_id=job_id,
                address=self.address,
            ) from None
        except Exception as exc:
            self._raise_mapped(exc, job_id)

    def _raise_mapped(self, exc: Exception, job_id: str | None) -> NoReturn:
        error = to_raydrive_error(exc, job_id=job_id, address=self.address)
        if is_actor_death(error):
            self._registry = None
            error = ExecutionError(
                f"the raydrive job registry {REGISTRY_NAME!r} on the cluster died during this call; "
                "it comes back with its records (finished outcomes kept, queued jobs run, a job "
                "that was running ends FAILED or is retried by its policy): call again.",
                error_type=getattr(error, "error_type", None),
                error_message=str(error),
                job_id=job_id,
            )
        if error is exc:
            raise exc
        raise error from exc

    def _errors(self) -> Any:
        from raydrive.drivers.ray.errors import ray_errors

        return ray_errors(address=self.address)

    # --- the API ------------------------------------------------------------------------------
    def submit(
        self,
        action_cls: Any,
        params: dict[str, Any],
        *,
        job_id: str | None = None,
        priority: int = 0,
        timeout_s: float | None = None,
    ) -> str:
        """Submit the action as a job (non-blocking); return its id.

        :param job_id: the job's id; default the ``job_id`` option, else a new unique id.
        :param priority: the job's place in its queue (``max_concurrent``): higher first, then FIFO.
        :param timeout_s: this job's deadline (each attempt's), instead of the ``timeout_s`` option.
        :raises InvalidOptionsError: ``priority`` is not a 32-bit integer or ``timeout_s`` not a
            number of seconds > 0 (at most ten years); booleans and strings are refused
            (:mod:`raydrive.core.calls`).
        :raises ValidationError: params fail the action's params model (when importable here).
        :raises DuplicateJobError: a job with this id exists on the cluster.
        :raises InfeasibleResourcesError: no node of the cluster can hold the request.
        """
        call = check_call(self.name, priority=priority, timeout_s=timeout_s)
        priority = call.priority
        timeout_s = call.timeout_s if call.timeout_s is not None else self.options.timeout_s
        chosen = job_id or self.options.job_id
        job_id = chosen or uuid.uuid4().hex
        self._registry_handle()
        # Actor mode starts an actor per job: the package is re-checked for each burst of them.
        recheck = 0 if self.options.mode == "actor" else None
        sub = self.prepare(
            action_cls,
            params,
            job_id=job_id,
            runtime=lambda: self.runtime_env(reuse_s=ENV_REUSE_S, recheck_s=recheck),
        )
        spec = self._spec(sub, priority, timeout_s)
        self._track_job(job_id, sub.name)  # before it is sent: its outcome may come back at once
        if chosen:
            # A chosen id may be taken: registered now, refused here and now.
            try:
                self._call("submit", job_id, spec.pack())
            except BaseException:
                self._untrack_job(job_id)
                raise
        else:
            # A fresh uuid cannot be taken: queued for the next batch, settled before any lookup.
            try:
                self._outbox.put(job_id, spec.pack())
            except BaseException:  # interrupted while its batch was sent: the caller has no id
                self._untrack_job(job_id)
                raise
        with self._lock:
            self._outcomes.pop(job_id, None)
        self._emit_submitted(job_id, sub.name)
        return job_id

    def _retry_wire(self, cls: type | None) -> dict[str, Any] | None:
        # The policy depends only on the options and the action class: resolved once per class.
        try:
            return self._policies[cls]
        except KeyError:
            policy = RetryPolicy.resolve(self.options, cls)
            wired = policy.to_wire() if policy.retries else None
            if len(self._policies) < 1024:
                self._policies[cls] = wired
            return wired

    def _spec(self, sub: Submission, priority: int = 0, timeout_s: float | None = None) -> JobSpec:
        """What the registry gets for a prepared job (see :class:`~raydrive.drivers.ray_job.wire.JobSpec`)."""
        built = sub.runtime
        assert built is not None and sub.resources is not None
        ray_options = sub.resources.as_ray_options()
        runtime_env = self._isolated(built) if built.secrets and self.options.mode == "task" else None
        if runtime_env or built.runtime_env:
            ray_options["runtime_env"] = runtime_env or built.runtime_env
        return JobSpec(
            mode=self.options.mode,
            action=sub.name,
            target=sub.target,
            params=sub.params,
            env=built.env,
            code_paths=self.code_paths,
            ray_options=ray_options,
            launch=self._launch_key(built, ray_options),
            ttl=self.options.result_ttl,
            retry=self._retry_wire(sub.action.cls),
            timeout_s=timeout_s,
            queue=self.options.queue,
            max_concurrent=self.options.max_concurrent,
            priority=priority,
        )

    def _isolated(self, built: Any) -> dict[str, Any]:
        """The runtime env of a pooled job that carries secrets: a worker pool of its own.

        Ray reuses a worker process only for tasks of the same runtime env, so naming a pool per
        executor and secret set keeps other submitters' leftovers away from these secrets.
        """
        text = json.dumps(built.secrets, sort_keys=True).encode()
        digest = hmac.new(self._pool_key, text, hashlib.sha256).hexdigest()[:24]
        runtime_env = dict(built.runtime_env)
        runtime_env["env_vars"] = {**runtime_env.get("env_vars", {}), "RAYDRIVE_WORKER_POOL": digest}
        return runtime_env

    def _launch_key(self, built: Any, ray_options: dict[str, Any]) -> str:
        # Names mode + resources + runtime env for the registry's cache of Ray launchers. A burst
        # of submissions shares one build (the same object) and request: computed once for them.
        request = sorted((k, repr(v)) for k, v in ray_options.items() if k != "runtime_env")
        pool = ray_options.get("runtime_env", {}).get("env_vars", {}).get("RAYDRIVE_WORKER_POOL")
        if pool:
            request.append(("worker_pool", pool))
        cached = self._launch
        if cached is None or cached[0] is not built or cached[1] != request:
            text = json.dumps(ray_options, sort_keys=True, default=str)
            digest = hashlib.sha1(f"{self.options.mode}:{text}".encode()).hexdigest()
            self._launch = cached = (built, request, f"{self.options.mode}:{digest}")
        return cached[2]

    def get_status(self, job_id: str) -> JobState:
        """The job's state: PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED, or UNKNOWN when no job has
        this id (never submitted, deleted, or expired)."""
        cached = self._outcomes.get(job_id)
        if cached is not None:
            return JobState(cached[0])
        # One read for the state and, once the job has ended, its outcome (kept: the finished
        # event fires, later calls are local). Two reads would race the record's expiry between them.
        return JobState(self._read(job_id, 0, gather=False)[0])

    def get_result(self, job_id: str, timeout: float | None = None) -> Any:
        """Block until the job ends (at most ``timeout`` s) and return its result.

        :raises ExecutionError: the job failed (remote type and traceback kept) or was cancelled.
        :raises ExecutionTimeoutError: it did not end within ``timeout``.
        :raises JobNotFoundError: no job has this id.
        """
        state, result, error, _ = self._outcome(job_id, timeout)
        if state == JobState.SUCCEEDED:
            return result
        if error is not None:
            raise copy.copy(error)  # a fresh instance per raise: tracebacks don't pile up on the cached one
        raise ExecutionError(f"job {job_id!r} ended {state}", job_id=job_id)

    def wait(self, job_id: str, timeout_seconds: float = 300) -> str:
        """Wait for the job to end; return ``'SUCCEEDED'``.

        :raises ExecutionError: the job failed or was cancelled.
        :raises ExecutionTimeoutError: it did not end within ``timeout_seconds``.
        :raises JobNotFoundError: no job has this id.
        """
        self.get_result(job_id, timeout=timeout_seconds)
        return JobState.SUCCEEDED.value

    def get_attempts(self, job_id: str) -> list[Attempt]:
        """The job's attempts so far, oldest first, each with its state, times and error (one for
        a job that was never retried; none while it waits in its queue).

        :raises JobNotFoundError: no job has this id.
        """
        found = self._call("attempts", job_id, job_id=job_id)
        if found is None:
            raise JobNotFoundError(f"no job {job_id!r} on the cluster's job registry", job_id=job_id)
        fields = ("number", "state", "started_at", "ended_at", "error_type", "error")
        return [Attempt(**dict(zip(fields, record, strict=False))) for record in found]

    def cancel(self, job_id: str) -> bool:
        """Stop a job that has not ended: a queued job never starts, a waiting retry is not made,
        a running task is cancelled, a running actor killed. False when the job already ended or
        is unknown."""
        return bool(self._call("cancel", job_id, job_id=job_id))

    def delete(self, job_id: str) -> bool:
        """Forget a finished job now: its status and result go, its id becomes free. False for a
        job that is still running or unknown."""
        if self._is_unfinished(job_id):
            # Submitted here and never read: read it first, so that its finished event is
            # reported before its record goes. Only a job read as ended is deleted: one that
            # ended between a read and the delete would otherwise go unreported.
            try:
                self._outcome(job_id, 0)
            except ExecutionTimeoutError:
                return False  # not ended yet: nothing is deleted
            except RaydriveError:
                pass  # not on the registry (yet): its answer below says so
        with self._lock:
            self._outcomes.pop(job_id, None)
        return bool(self._call("delete", job_id, job_id=job_id))

    def close(self) -> None:
        """Forget this executor's handles once every queued submission has reached the registry.
        Submitted jobs keep running (fire-and-forget)."""
        self._outbox.drain()
        with self._lock:
            self._registry = None
            self._outcomes.clear()

    # --- outcomes -----------------------------------------------------------------------------
    def _outcome(self, job_id: str, timeout: float | None) -> tuple[str, Any, BaseException | None, int]:
        cached = self._outcomes.get(job_id)
        if cached is not None:
            return cached
        # The registry waits at most `timeout`; no client-side timeout is needed on top.
        outcome = self._read(job_id, timeout, gather=True)
        if outcome[0] == JobState.UNKNOWN:
            raise JobNotFoundError(
                f"no job {job_id!r} on the cluster's job registry (never submitted, deleted, or "
                f"kept past its result_ttl)",
                job_id=job_id,
            )
        if outcome[0] not in TERMINAL_STATES:
            raise ExecutionTimeoutError(
                f"job {job_id!r} did not finish within {timeout:g} s (state {outcome[0]})", job_id=job_id
            )
        return outcome

    def _read(
        self, job_id: str, timeout: float | None, *, gather: bool
    ) -> tuple[str, Any, BaseException | None, int]:
        """One registry read of ``job_id``'s outcome (whatever its state), bringing back the
        outcomes of this executor's other ended jobs too; every ended one is kept."""
        also = [j for j in self._unfinished_jobs(_PREFETCH + 1) if j != job_id][:_PREFETCH]
        gathering = gather and bool(also) and self._gather_pays
        args = ("outcome", job_id, timeout, also, _GATHER if gathering else None)
        found: dict[str, tuple[str, Any, BaseException | None, int]]
        if self._outbox.on_its_way(job_id):
            # Its batch is on its way: this read goes out beside it (the registry waits for the
            # job to arrive) rather than after its answer, one round trip instead of two.
            found = self._receive(self._send(*args, True, job_id=job_id), job_id, self._bound(timeout))
            if found[job_id][0] == JobState.UNKNOWN:  # the batch never arrived: say why, or ask again
                found = self._call(*args, job_id=job_id, wait=timeout)
        else:
            found = self._call(*args, job_id=job_id, wait=timeout)
        if also:
            # A wait that brought no other job back is not made again until a read brings some.
            self._gather_pays = len(found) > 1
        for other, value in found.items():
            if other != job_id or value[0] in TERMINAL_STATES:
                self._remember(other, value)
        return found[job_id]

    def _remember(self, job_id: str, outcome: tuple[str, Any, BaseException | None, int]) -> None:
        if getattr(outcome[2], "error_type", None) == "RuntimeEnvSetupError":
            self.forget_uploads()  # the package may be gone: check (and upload) again next time
        with self._lock:
            self._outcomes[job_id] = outcome
            while len(self._outcomes) > _OUTCOME_CACHE:
                self._outcomes.popitem(last=False)
        error = outcome[2]  # lifecycle: once per job, by the executor that submitted it
        message = getattr(error, "message", None) if error else None
        self._emit_finished(job_id, outcome[0], message, attempt=max(1, outcome[3]))
