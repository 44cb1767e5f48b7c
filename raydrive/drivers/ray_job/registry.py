"""ray-job's detached job registry: owns every job's task or actor, its queue, retries and deadline.

It runs on the cluster (one per cluster, named :data:`REGISTRY_NAME` in namespace ``raydrive``),
so a job outlives the process that submitted it and any process can look it up. The code each job
runs (the pooled task, the fresh actor) is in :mod:`raydrive.drivers.ray_job.worker`; what it
receives is a :class:`~raydrive.drivers.ray_job.wire.JobSpec`; the queues are in :mod:`.queue`.

Retries are the registry's, not Ray's: the pooled task keeps ``max_retries=0`` and the actor
``max_restarts=0``. Ray's task retry resubmits at once, unseen by the owner, so the registry
could neither count nor record the attempts nor wait a backoff; here each attempt is a fresh
task (or actor) under the same job id, the backoff is an ``asyncio`` wait that holds no
process, and ``get_status`` follows the latest attempt (PENDING while a retry waits).

Deadlines (``timeout_s``) are timers on this actor's event loop, so they hold with the submitter
gone: at the deadline the attempt's task is force-cancelled (its process killed) or its actor
killed, and the attempt fails with :func:`~raydrive.core.retry.deadline_error`. A deadline counts
from the attempt's launch by the registry (after any wait in the queue), Ray's scheduling and
the runtime env's setup included, as Kubernetes' ``activeDeadlineSeconds`` counts from the pod's
start, image pulls included.

Durability: every job the registry accepts is journaled in the GCS (:mod:`.journal`) before
``submit`` answers, and each attempt's launch before it starts, so the registry's death loses
nothing it accepted. Ray restarts it (``max_restarts=-1``), or the next client call makes a fresh
one after a ``ray.kill``; either way the new registry replays the journal (:meth:`JobRegistry.recover`):
finished jobs keep their outcome until their TTL, queued jobs wait and run in their order, a
retry's backoff is waited out, and an attempt that was running (Ray stopped it with its owner,
the registry) ends as failed with ``OwnerDiedError``, retried where the job's retry policy allows,
as Temporal fails an activity whose worker died and retries it by its policy.
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
from raydrive.core.retry import RetryPolicy, deadline_error
from raydrive.core.status import TERMINAL_STATES, JobState
from raydrive.drivers.ray.wire import unpack_result
from raydrive.drivers.ray.worker import kill_actor, ray_remote
from raydrive.drivers.ray_job.completions import Completions
from raydrive.drivers.ray_job.journal import Event, JobJournal
from raydrive.drivers.ray_job.queue import JobQueue, JobQueues
from raydrive.drivers.ray_job.wire import REGISTRY_NAME, REGISTRY_PROTOCOL, JobSpec
from raydrive.drivers.ray_job.worker import remote_job_actor, remote_job_task

__all__ = ["REGISTRY_NAME", "JobRegistry", "remote_job_registry"]

CANCEL_GRACE_S = 3.0
"""Seconds a cancelled pooled task gets to stop on KeyboardInterrupt before its process is killed."""

MAX_GATHER_S = 1.0
"""The longest an outcome call waits for other jobs after its own ended (its ``gather``)."""

EXPECT_S = 2.0
"""The longest an outcome call waits for a job its caller sent just before, in a batch that has not
reached the registry yet (see :meth:`JobRegistry.outcome`'s ``expect``)."""

MAX_FINISHED_RECORDS = 100_000
"""The registry keeps at most this many finished jobs; the oldest are dropped first."""

# --- the job registry ---------------------------------------------------------------------------
# The core vocabulary, as plain strings: what travels back to the executors (msgpack, no pickle).
PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED, UNKNOWN = (s.value for s in JobState)
_TERMINAL = frozenset(s.value for s in TERMINAL_STATES)

Outcome = tuple[str, Any, BaseException | None, int]
"""``(state, result, error, attempt)`` of a job as the registry reports it (``attempt``: the
number of the attempt that ended it, 0 for a job that never started)."""


class _Job:
    __slots__ = (
        "action",
        "actor",
        "attempt",
        "attempts",
        "cancelled",
        "done",
        "due",
        "error",
        "expires",
        "finished_at",
        "job_id",
        "journaled",
        "mark",
        "queue",
        "queued",
        "ref",
        "result",
        "spec",
        "state",
        "submitted_at",
        "task",
        "timed_out",
        "ttl",
        "wake",
    )

    def __init__(self, job_id: str, spec: JobSpec) -> None:
        self.job_id = job_id
        self.action = spec.action
        self.ttl = float(spec.ttl)
        self.spec: JobSpec | None = spec  # dropped when the job ends (params and env go with it)
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
        self.attempt = 0
        self.attempts: list[list[Any]] = []  # [number, state, started_at, ended_at, error_type, error]
        self.queue: JobQueue | None = None
        self.queued = False
        self.task: asyncio.Task[None] | None = None  # kept: the loop holds tasks only weakly
        self.timed_out = False
        self.wake: asyncio.Event | None = None  # set while a retry waits out its backoff
        self.due = 0.0  # when the retry waiting out its backoff is made (time.time())
        self.journaled = False  # the journal holds this job's next launch already (its accept)
        self.mark = 0  # the journal mark of its latest accept or launch (see JobJournal.commit)

    def outcome(self) -> Outcome:
        return (self.state, self.result, self.error, self.attempt)


class _Gathering:
    """An outcome call waiting for ``need`` more of the jobs ``pending`` to end (see ``gather``)."""

    __slots__ = ("future", "moved", "need", "pending")

    def __init__(self, pending: set[str], need: int, future: asyncio.Future[None]) -> None:
        self.pending, self.need, self.future = pending, need, future
        self.moved = False  # one of them ended since the gather last looked


class JobRegistry:
    """The detached registry of ray-job: owns every job's task or actor and keeps its outcome.

    One per cluster (named :data:`REGISTRY_NAME` in namespace :data:`NAMESPACE`, lifetime
    detached), so a job survives the process that submitted it and any process can look it up,
    and a job id is refused while another job holds it, whichever process asks. Tasks and actors
    that a detached actor owns are not killed when the submitting driver exits; their results are
    kept here, since an object owned by a dead driver would be lost.

    Retention: a finished job's record (state, result or error, attempts) is kept ``ttl`` seconds
    after it finished (the executor's ``result_ttl``), however often it is read, or until
    ``delete``; at most :data:`MAX_FINISHED_RECORDS` finished records are kept, the oldest dropped
    first. A job id is reserved while its record is kept. Records live in this actor's memory and
    in its journal in the GCS (see the module doc): they outlive the registry, not the cluster
    (unless the GCS is fault tolerant, backed by Redis).
    """

    def __init__(self) -> None:
        self._jobs: dict[str, _Job] = {}
        self._expiry: list[tuple[float, str]] = []
        self._finished = 0
        self._launchers: dict[str, Any] = {}
        self._queues = JobQueues()
        self._completions = Completions()
        self._gathering: set[_Gathering] = set()  # outcome calls waiting for a batch to end
        self._arrivals = asyncio.Event()  # set (then replaced) whenever jobs are registered
        self._journal = JobJournal(self.snapshot)
        self.recover()

    async def protocol(self) -> int:
        return REGISTRY_PROTOCOL

    async def submit(self, job_id: str, packed: dict[str, Any]) -> None:
        """Register a job and start it, or queue it when its queue is full; raise
        DuplicateJobError when the id is held. Answers once the job is journaled.

        ``packed``: a :class:`~raydrive.drivers.ray_job.wire.JobSpec`, packed.
        """
        await self._journal.commit(self._accept(job_id, packed))

    def _accept(self, job_id: str, packed: dict[str, Any]) -> int:
        """Register and start (or queue) the job; returns its accept's journal mark."""
        self._sweep()
        spec = JobSpec.unpack(packed)
        if job_id in self._jobs:
            raise DuplicateJobError(
                f"job id {job_id!r} is already in use on this cluster (job registry "
                f"{REGISTRY_NAME!r}); choose another id or delete() the finished job first",
                job_id=job_id,
            )
        job = self._jobs[job_id] = _Job(job_id, spec)
        queued = bool(spec.max_concurrent)
        job.journaled = not queued
        job.mark = self._journal.record(("accept", job_id, packed, job.submitted_at, queued))
        if queued:
            job.queue = self._queues.enqueue(job, spec.queue, int(spec.max_concurrent), int(spec.priority))
            self._pump(job.queue)
        else:
            self._launch(job)
        return job.mark

    async def submit_many(self, jobs: list[tuple[str, dict[str, Any]]]) -> list[str]:
        """:meth:`submit` for a batch (one message and one journal write for many jobs); returns
        the ids refused as taken, once the batch is journaled."""
        refused, mark = [], 0
        try:
            for job_id, spec in jobs:
                try:
                    mark = self._accept(job_id, spec)
                except DuplicateJobError:
                    refused.append(job_id)
        finally:
            # Wake the reads sent beside this batch (``expect``) as soon as its jobs are
            # registered, not after the journal write: a job's launch, hence its outcome, waits
            # for that write anyway (see _journal_launch), and a read that came after the batch
            # sees the registered jobs at once too.
            self._arrived()
        await self._journal.commit(mark)
        return refused

    def _arrived(self) -> None:
        """Wake the outcome calls waiting for jobs to be registered (``expect``)."""
        arrivals, self._arrivals = self._arrivals, asyncio.Event()
        arrivals.set()

    def _pump(self, queue: JobQueue) -> None:
        for job in queue.startable():
            self._launch(job)

    def _launch(self, job: _Job, delay: float | None = None) -> None:
        job.task = asyncio.get_running_loop().create_task(self._run(job, delay))

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

    # --- one job, from its launch to its end: attempts, backoff, deadline ----------------------
    async def _run(self, job: _Job, delay: float | None = None) -> None:
        """Run the job's attempts; ``delay``: a restored job waits this backoff first."""
        try:
            if delay is not None and not await self._backoff(job, delay):
                self._finish(job, STOPPED, error=_cancelled(job))
                return
            while True:
                if not await self._journal_launch(job):
                    return
                state, result, error = await self._attempt(job)
                if state == FAILED and not job.cancelled and self._retried(job, error):
                    if await self._backoff(job, self._delay(job)):
                        continue
                    state, error = STOPPED, _cancelled(job)
                self._finish(job, state, result=result, error=error)
                return
        finally:
            queue = job.queue
            if queue is not None:  # it held a slot: the next job of its queue starts
                job.queue = None
                queue.release()
                self._pump(queue)

    async def _journal_launch(self, job: _Job) -> bool:
        """Journal the next attempt's launch and wait until it is written (so that a restarted
        registry knows it ran); False when the journal cannot be written (the job then failed)."""
        if job.journaled:
            job.journaled = False  # its accept said it launches
        else:
            attempts = [list(a) for a in job.attempts]
            job.mark = self._journal.record(("launch", job.job_id, job.attempt + 1, attempts, time.time()))
        try:
            await self._journal.commit(job.mark)  # at once if written; later events do not hold it up
        except Exception as exc:  # the GCS refused: the job cannot be run safely
            self._finish(
                job,
                FAILED,
                error=ExecutionError(
                    f"job {job.job_id!r} was not started: the job registry could not journal its "
                    f"launch in the GCS ({type(exc).__name__})",
                    error_type="JournalWriteError",
                    job_id=job.job_id,
                ),
            )
            return False
        return True

    async def _attempt(self, job: _Job) -> tuple[str, Any, BaseException | None]:
        spec = job.spec
        assert spec is not None
        job.attempt += 1
        record: list[Any] = [job.attempt, RUNNING, time.time(), None, None, None]
        job.attempts.append(record)
        job.state = PENDING  # RUNNING once the worker says so (see worker.RunningReporter)
        state, result, error = STOPPED, None, None
        timer = None
        try:
            if job.cancelled:
                error = _cancelled(job)
                return state, result, error
            try:
                self._start(job, spec)
            except Exception as exc:
                state, error = FAILED, _describe(exc, job)
                return state, result, error
            if spec.timeout_s:
                timer = asyncio.get_running_loop().call_later(
                    float(spec.timeout_s), self._expire, job, job.attempt
                )
            try:
                result = unpack_result(await self._completions.wait(job.ref))
            except Exception as exc:
                if job.timed_out:
                    state, error = FAILED, deadline_error(job.job_id, float(spec.timeout_s or 0), job.action)
                elif job.cancelled:
                    state, error = STOPPED, _cancelled(job)
                else:
                    state, error = FAILED, _describe(exc, job)
            else:
                state = SUCCEEDED
            return state, result, error
        finally:
            if timer is not None:
                timer.cancel()
            actor, job.actor, job.ref, job.timed_out = job.actor, None, None, False
            if actor is not None:  # the fresh actor per attempt goes as soon as it is done
                kill_actor(actor)
            record[1], record[3] = state, time.time()
            if error is not None:
                record[4] = getattr(error, "error_type", None) or type(error).__name__
                record[5] = getattr(error, "message", None) or str(error)  # raydrive errors: redacted

    def _retried(self, job: _Job, error: BaseException | None) -> bool:
        # The policy is parsed only when an attempt failed: jobs that succeed pay nothing for it.
        retry = job.spec.retry if job.spec is not None else None
        if not retry or error is None:
            return False
        return RetryPolicy.from_wire(retry).should_retry(error, job.attempt)

    def _delay(self, job: _Job) -> float:
        assert job.spec is not None
        return RetryPolicy.from_wire(job.spec.retry).backoff.delay(job.attempt)

    async def _backoff(self, job: _Job, delay: float) -> bool:
        """Wait out the delay before the next attempt (PENDING meanwhile); False if cancelled."""
        job.state = PENDING
        job.due = time.time() + delay
        self._journal.record(("retry", job.job_id, [list(a) for a in job.attempts], job.due))
        job.wake = asyncio.Event()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(job.wake.wait(), delay)
        job.wake = None
        return not job.cancelled

    def _expire(self, job: _Job, attempt: int) -> None:
        # The deadline of this attempt passed: stop it at once (no grace: time is up).
        if job.attempt != attempt or job.ref is None or job.state in _TERMINAL:
            return
        job.timed_out = True
        if job.actor is not None:
            kill_actor(job.actor)
        else:
            import ray

            with contextlib.suppress(Exception):
                ray.cancel(job.ref, force=True)

    def _finish(
        self, job: _Job, state: str, *, result: Any = None, error: BaseException | None = None
    ) -> None:
        job.state, job.result, job.error = state, result, error
        job.spec = None
        job.finished_at = time.time()
        self._journal.record(_finished_event(job))
        self._expire_after(job, job.ttl)

    def _expire_after(self, job: _Job, ttl: float) -> None:
        job.expires = time.monotonic() + ttl
        heapq.heappush(self._expiry, (job.expires, job.job_id))
        self._finished += 1
        job.done.set()
        for waiter in self._gathering:
            if job.job_id in waiter.pending:
                waiter.need -= 1
                waiter.moved = True
                if waiter.need <= 0 and not waiter.future.done():
                    waiter.future.set_result(None)

    def _sweep(self) -> None:
        now = time.monotonic()
        while self._expiry and (self._expiry[0][0] <= now or self._finished > MAX_FINISHED_RECORDS):
            expires, job_id = heapq.heappop(self._expiry)
            job = self._jobs.get(job_id)
            # `expires` tells this record from a later job that reused a deleted job's id.
            if job is not None and job.state in _TERMINAL and job.expires == expires:
                del self._jobs[job_id]
                self._finished -= 1

    # --- what executors ask ---------------------------------------------------------------------
    async def started(self, job_id: str) -> None:
        job = self._jobs.get(job_id)
        if job is not None and job.state == PENDING and job.ref is not None:
            job.state = RUNNING

    async def outcome(
        self,
        job_id: str,
        timeout: float | None = None,
        also: Sequence[str] = (),
        gather: tuple[int, float, float] | None = None,
        expect: bool = False,
    ) -> dict[str, Outcome]:
        """Wait up to ``timeout`` s (None: until it ends) for ``job_id``; return its outcome and
        those of the finished jobs among ``also`` (a client's other jobs, fetched in the same trip).

        ``gather``: ``(count, wait_s, quiet_s)``: once ``job_id`` has ended, wait up to ``wait_s``
        more (within ``timeout``) until ``count`` jobs of ``also`` have ended (those already
        ended included), or none of them has ended for ``quiet_s``, so that a client
        collecting a batch makes a few trips instead of one per job, as a Kafka consumer's fetch
        waits for ``fetch.min.bytes`` at most ``fetch.max.wait.ms``.

        ``expect``: the caller sent ``job_id`` in a batch just before this call and has not had
        its answer yet: the two calls are in flight together (one round trip instead of two), and
        this one may arrive first. An unknown ``job_id`` is then waited for, at most
        :data:`EXPECT_S` (within ``timeout``); still unknown, it is answered UNKNOWN and the
        caller settles its batch before asking again.
        """
        self._sweep()
        loop = asyncio.get_running_loop()
        until = None if timeout is None else loop.time() + max(float(timeout), 0.0)
        job = self._jobs.get(job_id)
        if job is None and expect:
            job = await self._expected(job_id, until)
        if job is None:
            return {job_id: (UNKNOWN, None, None, 0)}
        left = None if until is None else until - loop.time()
        if not job.done.is_set() and (left is None or left > 0):
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(job.done.wait(), left)
        if gather and also and job.done.is_set():
            await self._gather(also, gather, until)
        found = {job_id: job.outcome()}
        for other in also:
            done = self._jobs.get(other)
            if done is not None and done.state in _TERMINAL:
                found[other] = done.outcome()
        return found

    async def _expected(self, job_id: str, until: float | None) -> _Job | None:
        loop = asyncio.get_running_loop()
        end = loop.time() + EXPECT_S if until is None else min(until, loop.time() + EXPECT_S)
        while (job := self._jobs.get(job_id)) is None and (left := end - loop.time()) > 0:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._arrivals.wait(), left)
        return job

    async def _gather(
        self, also: Sequence[str], gather: tuple[int, float, float], until: float | None
    ) -> None:
        count, wait_s, quiet_s = gather
        pending = {o for o in also if (j := self._jobs.get(o)) is not None and j.state not in _TERMINAL}
        need = min(int(count), len(also)) - (len(also) - len(pending))
        loop = asyncio.get_running_loop()
        end = loop.time() + min(max(float(wait_s), 0.0), MAX_GATHER_S)
        if until is not None:
            end = min(end, until)
        if need <= 0 or end <= loop.time():
            return
        waiter = _Gathering(pending, need, loop.create_future())
        self._gathering.add(waiter)
        try:
            while not waiter.future.done() and (left := end - loop.time()) > 0:
                waiter.moved = False
                await asyncio.wait([waiter.future], timeout=min(left, float(quiet_s)))
                if not waiter.moved:  # none of them ended for a while: they are not about to
                    return
        finally:
            self._gathering.discard(waiter)

    async def attempts(self, job_id: str) -> list[list[Any]] | None:
        """The job's attempts, oldest first (``[number, state, started_at, ended_at, error_type,
        error]`` each); None when no job has this id. Empty while the job waits in its queue."""
        job = self._jobs.get(job_id)
        return None if job is None else [list(a) for a in job.attempts]

    async def cancel(self, job_id: str) -> bool:
        """Stop a job that has not finished: a queued job never starts, a retry waiting for its
        backoff is not made, a running task is cancelled, a running actor killed."""
        import ray

        job = self._jobs.get(job_id)
        if job is None or job.state in _TERMINAL:
            return False
        job.cancelled = True
        if job.queued:  # never started: it ends here, its heap entry is skipped later
            job.queued = False
            if job.queue is not None:
                job.queue.withdraw()
                job.queue = None
            self._finish(job, STOPPED, error=_cancelled(job))
        elif job.wake is not None:
            job.wake.set()
        elif job.actor is not None:
            kill_actor(job.actor)
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
        self._journal.record(("delete", job_id))
        return True

    async def counts(self) -> dict[str, int]:
        """How many records the registry holds, by state (for monitoring and tests)."""
        counts: dict[str, int] = {}
        for job in self._jobs.values():
            counts[job.state] = counts.get(job.state, 0) + 1
        return counts

    async def queues(self) -> dict[str, dict[str, int]]:
        """Each queue's limit, jobs holding a slot and jobs waiting (for monitoring and tests)."""
        return self._queues.info()

    # --- the journal: what a restarted registry reads back --------------------------------------
    def snapshot(self) -> list[Event]:
        """The journal events that rebuild every live record as it is now (queue order kept)."""
        events: list[Event] = []
        for job in self._jobs.values():
            if job.state in _TERMINAL:
                events.append(_finished_event(job))
                continue
            if job.spec is None:
                continue
            queued = job.queued
            events.append(("accept", job.job_id, job.spec.pack(), job.submitted_at, queued))
            if queued or (job.attempt == 0 and job.journaled):
                continue
            done = [list(a) for a in job.attempts]
            if job.wake is not None:
                events.append(("retry", job.job_id, done, job.due))
            else:  # an attempt launched (or about to be): its record is the running one
                events.append(("launch", job.job_id, job.attempt, done[:-1], time.time()))
        return events

    def recover(self) -> None:
        """Rebuild the records the journal holds (at start; a first registry finds none).

        Finished jobs keep their outcome until their TTL; queued jobs wait again in their order;
        a retry's backoff is waited out; an attempt that was running when the registry died (Ray
        stopped it with the registry, its owner) fails with ``OwnerDiedError``, and the job is
        retried where its policy allows, else it ends FAILED with that cause.
        """
        records = _replay(self._journal.load())
        now = time.time()
        resumed: list[tuple[_Job, float]] = []
        for job_id, rec in records.items():
            if rec["phase"] == "finished":
                left = rec["finished_at"] + rec["ttl"] - now
                if left > 0:
                    self._restore_finished(job_id, rec, left)
                continue
            try:
                spec = JobSpec.unpack(rec["packed"])
            except TypeError:
                continue  # not this protocol's spec: nothing to run it with
            job = self._jobs[job_id] = _Job(job_id, spec)
            job.submitted_at = rec["submitted_at"]
            job.attempts = [list(a) for a in rec["attempts"]]
            job.attempt = len(job.attempts)
            if rec["phase"] == "queued":
                limit = int(spec.max_concurrent or 1)
                job.queue = self._queues.enqueue(job, spec.queue, limit, int(spec.priority))
                continue
            if spec.max_concurrent:
                job.queue = self._queues.occupy(spec.queue, int(spec.max_concurrent))
            if rec["phase"] == "backoff":
                resumed.append((job, max(0.0, rec["due"] - now)))
                continue
            # Launched: its attempt was running when the registry died.
            job.attempt += 1
            error = ExecutionError(
                f"job {job_id!r} (action {job.action!r}): the raydrive job registry restarted while "
                f"attempt {job.attempt} was running; Ray stopped the attempt with it",
                error_type="OwnerDiedError",
                error_message="the job registry, the attempt's owner, died",
                job_id=job_id,
            )
            started = rec.get("started_at")
            job.attempts.append([job.attempt, FAILED, started, now, "OwnerDiedError", error.message])
            if self._retried(job, error):
                resumed.append((job, self._delay(job)))
            else:
                self._finish(job, FAILED, error=error)
                if job.queue is not None:
                    job.queue.release()
                    job.queue = None
        self._journal.rewrite(self.snapshot())  # one generation again, without what expired
        for job, delay in resumed:
            self._launch(job, delay)
        for queue in self._queues.all():
            self._pump(queue)

    def _restore_finished(self, job_id: str, rec: dict[str, Any], left: float) -> None:
        job = _Job.__new__(_Job)
        for slot in _Job.__slots__:
            setattr(job, slot, None)
        job.job_id, job.action, job.ttl = job_id, rec["action"], rec["ttl"]
        job.state, job.result, job.error = rec["state"], rec["result"], rec["error"]
        job.attempt, job.attempts = rec["attempt"], [list(a) for a in rec["attempts"]]
        job.submitted_at, job.finished_at = rec["submitted_at"], rec["finished_at"]
        job.cancelled = job.queued = job.timed_out = job.journaled = False
        job.due, job.mark = 0.0, 0
        job.done = asyncio.Event()
        job.done.set()
        self._jobs[job_id] = job
        self._finished += 1
        self._expire_after(job, left)


def _finished_event(job: _Job) -> Event:
    return (
        "finish",
        job.job_id,
        job.state,
        job.result,
        job.error,
        job.attempt,
        [list(a) for a in job.attempts],
        job.finished_at,
        job.ttl,
        job.action,
        job.submitted_at,
    )


def _replay(events: list[Event]) -> dict[str, dict[str, Any]]:
    """The journal's events folded into one record per job id, in first-accepted order."""
    records: dict[str, dict[str, Any]] = {}
    for event in events:
        kind, job_id = event[0], event[1]
        rec = records.get(job_id)
        if kind == "accept":
            _, _, packed, submitted_at, queued = event
            records.pop(job_id, None)  # a deleted id taken again: the later job
            records[job_id] = {
                "phase": "queued" if queued else "launched",
                "packed": packed,
                "submitted_at": submitted_at,
                "attempts": [],
            }
        elif kind == "launch" and rec is not None and rec["phase"] != "finished":
            _, _, _number, attempts, started_at = event
            rec.update(phase="launched", attempts=attempts, started_at=started_at)
        elif kind == "retry" and rec is not None and rec["phase"] != "finished":
            _, _, attempts, due = event
            rec.update(phase="backoff", attempts=attempts, due=due)
        elif kind == "finish":
            _, _, state, result, error, attempt, attempts, finished_at, ttl, action, submitted_at = event
            records[job_id] = {
                "phase": "finished",
                "state": state,
                "result": result,
                "error": error,
                "attempt": attempt,
                "attempts": attempts,
                "finished_at": finished_at,
                "ttl": ttl,
                "action": action,
                "submitted_at": submitted_at,
            }
        elif kind == "delete":
            records.pop(job_id, None)
    return records


def _cancelled(job: _Job) -> ExecutionError:
    return ExecutionError(
        f"job {job.job_id!r} (action {job.action!r}) was cancelled",
        error_type="TaskCancelledError",
        error_message="cancelled",
        job_id=job.job_id,
    )


def _describe(exc: BaseException, job: _Job) -> BaseException:
    from raydrive.drivers.ray.errors import to_raydrive_error

    mapped = to_raydrive_error(exc, action=job.action, job_id=job.job_id)
    if mapped is exc and not isinstance(exc, RaydriveError):
        # Whatever it is, it must pickle back to the client as a raydrive error.
        mapped = ExecutionError.from_exception(exc, action=job.action, job_id=job.job_id)
    return mapped


def remote_job_registry() -> Any:
    """``ray.remote(JobRegistry)`` as an async actor that holds no CPU, restarted when it dies."""
    return ray_remote(
        JobRegistry,
        num_cpus=0,
        # Its records are journaled: a registry that dies comes back with them (module doc).
        max_restarts=-1,
        max_task_retries=0,  # a call in flight when it died fails at once, with a clear error
        max_concurrency=10_000,
    )
