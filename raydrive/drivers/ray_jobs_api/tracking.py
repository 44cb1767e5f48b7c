"""What ``ray-jobs-api`` does with a submitted job: status, result, attempts, stop, delete, logs.

Every call that looks at a job resolves its chain of attempts (:mod:`.attempts`) and advances it:
when the current attempt ended in a way the job's retry policy retries, the next attempt is
submitted there and then. :class:`JobTracker` is the executor's collaborator for all of it
(:class:`~raydrive.drivers.ray_jobs_api.executor.RayJobsApiExecutor` submits, the tracker follows);
it gets the dashboard client and the lifecycle callbacks it needs from the executor at construction.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from raydrive.core.errors import ExecutionError, ExecutionTimeoutError, RaydriveError
from raydrive.core.retry import Attempt
from raydrive.drivers.ray_jobs_api import attempts as chains
from raydrive.drivers.ray_jobs_api.cleanup import delete_outcome
from raydrive.drivers.ray_jobs_api.dashboard import AsyncDashboard, Dashboard, JobInfo
from raydrive.drivers.ray_jobs_api.follow import DRIVER_LOG, follow, iterate_in_thread, poll_delay
from raydrive.drivers.ray_jobs_api.outcome import read_outcome
from raydrive.drivers.ray_jobs_api.wire import Outcome

if TYPE_CHECKING:
    from ray.job_submission import JobStatus

    from raydrive.drivers.ray_jobs_api.options import JobsApiOptions

__all__ = ["JobTracker"]

_PIN_EVERY_S = 60.0  # a pin lasts Ray's temporary-reference time (10 min by default)
_PEEK_S = 10.0  # a wait this young also looks for the outcome at each poll (see _settled)
_PEEK_WAIT_S = 1.0  # a look slower than this ends the looking (the verdict reads the file later)
_ENDING_S = 1.0  # how long to poll fast once the outcome is there (the process is exiting)
_ENDING_POLL_S = 0.02


@dataclass(frozen=True)
class _State:
    """A job as the cluster has it: its chain of attempts, and whether it has ended for good."""

    chain: chains.Chain
    final: bool
    status: str
    verdict: chains.Verdict | None = None


class JobTracker:
    """Status, results, attempts, stop, delete and logs of ``ray-jobs-api`` jobs.

    :param name: the driver's name (in the jobs' metadata and the attempt records).
    :param options: the executor's options.
    :param dashboard: the executor's dashboard client (made on first use, so asked each time).
    :param emit_finished: reports a job's ``job_finished`` event (once per job).
    :param untrack: forgets a deleted job in the executor's lifecycle.
    :param cleanup_env: the runtime env of :meth:`delete`'s clean-up job.
    """

    def __init__(
        self,
        name: str,
        options: JobsApiOptions,
        dashboard: Callable[[], Dashboard],
        *,
        emit_finished: Callable[..., Any],
        untrack: Callable[[str], None],
        cleanup_env: Callable[[], dict[str, Any]],
    ) -> None:
        self.name = name
        self.options = options
        self._dashboard = dashboard
        self._emit_finished = emit_finished
        self._untrack_job = untrack
        self._cleanup_env = cleanup_env
        self._pinned: dict[str, float] = {}  # job id -> when its packages were last pinned

    def _run(self, coro: Any) -> Any:
        return self._dashboard().run(coro)

    # --- resolving a job ----------------------------------------------------------------------
    async def _resolve(
        self,
        job_id: str,
        api: AsyncDashboard | None = None,
        chain: chains.Chain | None = None,
        peeked: tuple[str, Outcome] | None = None,
    ) -> _State:
        """The job now, after starting its next attempt if the current one ended retryably.
        ``chain``: the job's chain as just read, instead of reading it again; ``peeked``: an
        attempt's submission id and the outcome already read for it.

        :raises JobNotFoundError: no job with this id.
        """
        api = api or self._dashboard().api
        chain = chain or await chains.load_chain(api, job_id)
        while True:
            step = chain.current
            if chain.stopped:
                state = _State(chain, True, "STOPPED")
                break
            if not step.info.terminal:
                await self._keep(api, chain)
                return _State(chain, False, step.info.status)
            known = peeked[1] if peeked is not None and peeked[0] == step.submission_id else None
            verdict = await chains.verdict(api, chain, self.name, known)
            if verdict.retry:
                await chains.next_attempt(api, chain)
                continue
            state = _State(chain, True, step.info.status, verdict)
            break
        self._observe(job_id, state)
        return state

    async def _keep(self, api: AsyncDashboard, chain: chains.Chain) -> None:
        """While an attempt runs and retries are left, keep its packages pinned (rate-limited)."""
        if chain.current.number > chain.policy.retries:
            return
        now = time.monotonic()
        if now - self._pinned.get(chain.job_id, float("-inf")) < _PIN_EVERY_S:
            return
        self._pinned[chain.job_id] = now
        # A pin is a convenience for a later retry; the job itself is not affected.
        with contextlib.suppress(RaydriveError):
            await chains.keep_packages(api, chain.current.info.runtime_env)

    def _observe(self, job_id: str, state: _State) -> None:
        """Report ``job_finished`` once, the first time this executor sees its job ended for good
        (a retry is the same job: one event, naming the attempt that ended it)."""
        if not state.final:
            return
        self._pinned.pop(job_id, None)
        error = None
        if state.status != "SUCCEEDED":
            found = state.verdict.error if state.verdict is not None else None
            error = getattr(found, "message", None) or (str(found) if found else state.status)
        self._emit_finished(job_id, state.status, error, attempt=state.chain.current.number)

    def _raise_or_result(self, job_id: str, state: _State) -> Any:
        if state.chain.stopped or state.verdict is None:
            raise ExecutionError(
                f"job {job_id!r} was stopped before it finished", error_type="STOPPED", job_id=job_id
            )
        if state.verdict.error is not None:
            raise state.verdict.error
        assert state.verdict.outcome is not None
        return state.verdict.outcome.result

    async def _settled(self, job_id: str, timeout: float | None, cap: float) -> _State:
        """Wait until the job has ended for good (every retry done), polling its current attempt.

        For the first ``_PEEK_S`` seconds of the wait each poll of a running attempt also looks
        for its outcome file (:meth:`_poll_and_peek`). The entry writes it just before its process
        exits, and Ray marks the job ended only once its supervisor has noticed the exit (it
        checks every 100 ms). Once the outcome is there the end is near: the status is polled
        every ``_ENDING_POLL_S`` for at most ``_ENDING_S`` (a process may linger: threads,
        ``atexit``), and the verdict uses the outcome read. The result still waits for Ray's
        end, so that :meth:`get_status` agrees with it.
        """
        api = self._dashboard().api
        start = time.monotonic()
        ended: chains.Chain | None = None
        peeked: tuple[str, Outcome] | None = None
        peeking = True
        while True:
            state = await self._resolve(job_id, api, ended, peeked)
            if state.final:
                return state
            submission_id = state.chain.current.submission_id
            info: JobInfo | None = state.chain.current.info
            seen: float | None = None  # when this attempt's outcome was read
            while info is not None and not info.terminal:
                now = time.monotonic()
                ending = seen is not None and now - seen < _ENDING_S
                delay = _ENDING_POLL_S if ending else poll_delay(now - start, cap)
                if timeout is not None:
                    left = start + timeout - now
                    if left <= 0:
                        raise ExecutionTimeoutError(
                            f"job {job_id!r} did not finish within {timeout:g} s (it is {info.status})",
                            job_id=job_id,
                        )
                    delay = min(delay, left)
                await asyncio.sleep(delay)
                running = info.status == "RUNNING" and info.driver_node_id
                if peeking and seen is None and running and time.monotonic() - start < _PEEK_S:
                    info, outcome, peeking = await self._poll_and_peek(api, submission_id, info)
                    if outcome is not None:
                        peeked, seen = (submission_id, outcome), time.monotonic()
                else:
                    info = await api.job(submission_id)
                await self._keep(api, state.chain)
            chain = state.chain
            # The last attempt ended: nothing can follow it (no retry, no stop marker), so the
            # chain just read is the job's; one request fewer between its end and its result.
            last = chain.current.number >= chain.policy.max_attempts and not chain.stopped
            ended = None
            if info is not None and info.terminal and last:
                ended = chains.Chain(
                    chain.job_id, [*chain.steps[:-1], replace(chain.current, info=info)], chain.policy
                )

    @staticmethod
    async def _poll_and_peek(
        api: AsyncDashboard, submission_id: str, info: JobInfo
    ) -> tuple[JobInfo | None, Outcome | None, bool]:
        """The attempt's status now and, read beside it, its outcome if it wrote one yet; the last
        item is False when the look failed or took over ``_PEEK_WAIT_S`` (the log API goes through
        the agent of the busy node), and the wait then polls the status alone.
        """
        look = asyncio.ensure_future(read_outcome(api, submission_id, info))
        try:
            now = await api.job(submission_id)
        except BaseException:
            look.cancel()
            raise
        try:
            return now, await asyncio.wait_for(look, _PEEK_WAIT_S), True
        except Exception:  # only a shortcut failed: the verdict reads the file itself
            return now, None, False

    # --- what the executor's public API does (documented there) ---------------------------------
    def get_status(self, job_id: str) -> JobStatus:
        """See :meth:`~raydrive.drivers.ray_jobs_api.executor.RayJobsApiExecutor.get_status`."""
        from ray.job_submission import JobStatus

        return JobStatus(self._run(self._resolve(job_id)).status)

    def get_attempts(self, job_id: str) -> list[Attempt]:
        """See :meth:`~raydrive.drivers.ray_jobs_api.executor.RayJobsApiExecutor.get_attempts`."""

        async def records() -> list[Attempt]:
            api = self._dashboard().api
            state = await self._resolve(job_id, api)
            return await chains.attempt_records(api, state.chain, self.name)

        return self._run(records())

    def wait(self, job_id: str, timeout_seconds: float = 300, poll_interval: float = 1.0) -> str:
        """See :meth:`~raydrive.drivers.ray_jobs_api.executor.RayJobsApiExecutor.wait`."""
        state = self._run(self._settled(job_id, timeout_seconds, poll_interval))
        if state.status != "SUCCEEDED":
            self._raise_or_result(job_id, state)
        return state.status

    def get_result(self, job_id: str, timeout: float | None = None) -> Any:
        """See :meth:`~raydrive.drivers.ray_jobs_api.executor.RayJobsApiExecutor.get_result`."""
        state = self._run(self._settled(job_id, timeout, self.options.poll_interval))
        return self._raise_or_result(job_id, state)

    def cancel(self, job_id: str) -> bool:
        """See :meth:`~raydrive.drivers.ray_jobs_api.executor.RayJobsApiExecutor.cancel`."""
        from raydrive.core.errors import JobNotFoundError

        try:
            return self.stop(job_id)
        except JobNotFoundError:
            return False

    def stop(self, job_id: str) -> bool:
        """See :meth:`~raydrive.drivers.ray_jobs_api.executor.RayJobsApiExecutor.stop`."""
        return self._run(chains.stop_chain(self._dashboard().api, job_id, self.name))

    def delete(self, job_id: str) -> bool:
        """See :meth:`~raydrive.drivers.ray_jobs_api.executor.RayJobsApiExecutor.delete`."""
        api = self._dashboard().api
        state = self._run(self._resolve(job_id, api))
        if not state.final:
            raise RaydriveError(
                f"job {job_id!r} is {state.status}: only an ended job can be deleted; stop it first "
                f"(executor.stop({job_id!r})) and delete it once its status is STOPPED",
                job_id=job_id,
                status=state.status,
            )
        deleted = False
        for step in reversed(state.chain.steps):  # the first attempt last: it names the job
            if step.info.driver_node_id:
                delete_outcome(
                    self._dashboard(),
                    step.submission_id,
                    step.info.driver_node_id,
                    python_executable=self.options.python_executable,
                    env=self._cleanup_env(),
                    driver=self.name,
                )
            deleted = bool(self._run(api.job_action("DELETE", step.submission_id, "", "deleted")))
        self._untrack_job(job_id)
        return deleted

    # --- logs ---------------------------------------------------------------------------------
    def get_logs(self, job_id: str) -> str:
        """See :meth:`~raydrive.drivers.ray_jobs_api.executor.RayJobsApiExecutor.get_logs`."""

        async def logs() -> str:
            api = self._dashboard().api
            chain = (await self._resolve(job_id, api)).chain
            if len(chain.attempts) == 1:
                return await self._step_logs(api, chain.current)
            parts = []
            for step in chain.attempts:
                text = await self._step_logs(api, step)
                if step.number > 1:
                    parts.append(chains.attempt_header(step, chain))
                parts.append(text if not text or text.endswith("\n") else text + "\n")
            return "".join(parts)

        return self._run(logs())

    @staticmethod
    async def _step_logs(api: AsyncDashboard, step: chains.Step) -> str:
        info = step.info
        logs = ""
        if info.driver_node_id:
            logs = await api.job_logs(step.submission_id)
        else:
            # Not started (or never will): what Ray wrote on the head node, as stream_logs shows.
            head = await api.head_node()
            if head:
                data = await api.read_file(head, DRIVER_LOG.format(submission_id=step.submission_id))
                logs = (data or b"").decode("utf-8", errors="replace")
        if not logs and info.terminal and info.status != "SUCCEEDED":
            logs = info.message or ""
        return logs

    def stream_logs(self, job_id: str, *, timeout: float = 3600.0) -> Iterator[str]:
        """See :meth:`~raydrive.drivers.ray_jobs_api.executor.RayJobsApiExecutor.stream_logs`."""
        return iterate_in_thread(lambda: self._follow(job_id, timeout))

    async def stream_logs_async(self, job_id: str, *, timeout: float = 3600.0) -> AsyncIterator[str]:
        """See :meth:`~raydrive.drivers.ray_jobs_api.executor.RayJobsApiExecutor.stream_logs_async`."""
        async for line in self._follow(job_id, timeout):
            yield line

    async def _follow(self, job_id: str, timeout: float) -> AsyncIterator[str]:
        # This event loop's own connections (the sync client's belong to its private loop).
        api = AsyncDashboard(self.options, self._dashboard().shared, stream=True)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout

        async def step_info(submission_id: str) -> JobInfo:
            info = await api.job(submission_id)
            if info is None:
                from raydrive.core.errors import JobNotFoundError

                raise JobNotFoundError(f"no job {submission_id!r} on the cluster", job_id=job_id)
            return info

        try:
            chain = (await self._resolve(job_id, api)).chain
            number = 1
            while True:
                step = chain.attempts[number - 1]
                if number > 1:
                    yield chains.attempt_header(step, chain)
                left = deadline - loop.time()
                interval = self.options.log_poll_interval
                lines = follow(api, step.submission_id, step_info, timeout=left, interval=interval)
                async for line in lines:
                    yield line
                if loop.time() >= deadline:
                    return
                chain = (await self._resolve(job_id, api)).chain  # starts the next attempt if due
                if len(chain.attempts) <= number:
                    return
                number += 1
        finally:
            await api.aclose()
