"""``local``: runs actions in this process, with the same validation, context and errors as Ray.

For development, for tests, and as the example a third-party driver author copies: options as a
pydantic model, ``execute`` for synchronous use, ``submit / get_status / wait / get_result`` for
asynchronous use on a thread pool.
"""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from pydantic import Field

from raydrive.core.action import (
    action_name,
    ensure_on_path,
    resolve_action,
    run_action,
    validate_params,
)
from raydrive.core.errors import (
    DuplicateJobError,
    ExecutionError,
    ExecutionTimeoutError,
    JobNotFoundError,
)
from raydrive.core.executor import BaseExecutor
from raydrive.core.interrupt import JobCancelled, raise_in_thread
from raydrive.core.options import DriverOptions, UserPath
from raydrive.core.runtime_env import resolve_environment
from raydrive.core.status import JobState

__all__ = ["LocalExecutor", "LocalOptions"]


class LocalOptions(DriverOptions):
    working_dir: UserPath | None = Field(default=None, description="Put first on sys.path.")
    max_workers: int = Field(default=4, ge=1, description="Threads for submitted jobs.")


class LocalExecutor(BaseExecutor):
    """Runs actions in-process: for development, tests, and as a template for new drivers."""

    name = "local"
    Options = LocalOptions
    options: LocalOptions

    def __init__(self, env: Any = None, /, **options: Any) -> None:
        super().__init__(env, **options)
        self._pool: ThreadPoolExecutor | None = None
        self._jobs: dict[str, _LocalJob] = {}
        self._lock = threading.Lock()

    def _prepare(self, action: Any, params: dict[str, Any]) -> tuple[type, dict[str, str]]:
        ensure_on_path(str(self.options.working_dir.resolve()) if self.options.working_dir else None)
        action_cls = resolve_action(action)
        validate_params(action_cls, params)
        env_vars, secrets = resolve_environment(self.plugins, self.options.env)
        return action_cls, {**env_vars, **secrets}

    def execute(self, action_cls: Any, params: dict[str, Any], **kwargs: Any) -> Any:
        """Run the action now and return its result."""
        cls, env = self._prepare(action_cls, params)
        job_id = kwargs.get("job_id") or self.options.job_id or uuid.uuid4().hex
        self._emit_submitted(job_id, action_name(cls))
        try:
            result = run_action(cls, params, job_id=job_id, env=env)
        except ExecutionError as exc:
            self._emit_finished(job_id, JobState.FAILED, exc.message)
            raise
        self._emit_finished(job_id, JobState.SUCCEEDED)
        return result

    def submit(self, action_cls: Any, params: dict[str, Any], *, job_id: str | None = None) -> str:
        """Start the action on a worker thread; return its job id."""
        cls, env = self._prepare(action_cls, params)
        job_id = job_id or uuid.uuid4().hex
        job = _LocalJob(action_name(cls))
        with self._lock:
            if job_id in self._jobs:
                raise DuplicateJobError(f"job id {job_id!r} is already in use", job_id=job_id)
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.options.max_workers, "raydrive-local")
            self._track_job(job_id, job.name)  # before it can end (or be cancelled) on another thread
            job.future = self._pool.submit(job.run, cls, params, job_id, env)
            self._jobs[job_id] = job
        self._emit_submitted(job_id, job.name)
        return job_id

    def _job(self, job_id: str) -> _LocalJob:
        try:
            return self._jobs[job_id]
        except KeyError:
            raise JobNotFoundError(f"no job {job_id!r} on this local executor", job_id=job_id) from None

    def get_status(self, job_id: str) -> JobState:
        job = self._job(job_id)
        future = job.future
        if not future.done():
            return JobState.RUNNING if future.running() else JobState.PENDING
        if future.cancelled() or (job.cancelled and _was_cancelled(future.exception())):
            return JobState.STOPPED
        return JobState.FAILED if future.exception() else JobState.SUCCEEDED

    def get_result(self, job_id: str, timeout: float | None = None) -> Any:
        job = self._job(job_id)
        try:
            result = job.future.result(timeout=timeout)
        except FutureTimeout:
            raise ExecutionTimeoutError(
                f"job {job_id!r} did not finish within {timeout} s", job_id=job_id
            ) from None
        except (CancelledError, JobCancelled):  # before it started, or as its body returned
            self._emit_finished(job_id, JobState.STOPPED, "cancelled")
            raise job.cancelled_error(job_id) from None
        except ExecutionError as exc:
            stopped = job.cancelled and _was_cancelled(exc)
            self._emit_finished(job_id, JobState.STOPPED if stopped else JobState.FAILED, exc.message)
            raise
        self._emit_finished(job_id, JobState.SUCCEEDED)
        return result

    def wait(self, job_id: str, timeout_seconds: float = 300) -> str:
        self.get_result(job_id, timeout=timeout_seconds)
        return JobState.SUCCEEDED.value

    def cancel(self, job_id: str) -> bool:
        """Stop a job: a queued one never starts; a running one gets :class:`JobCancelled` raised
        in its thread (stops pure-Python code at once, not code blocked in C). False when the job
        already ended, was cancelled already, or is unknown."""
        job = self._jobs.get(job_id)
        if job is None:
            return False
        with job.lock:
            if job.cancelled or job.future.done():
                return False
            job.cancelled = True
            if job.future.cancel():  # not started: it never will
                self._emit_finished(job_id, JobState.STOPPED, "cancelled")
                return True
            if job.thread is not None:
                raise_in_thread(job.thread, JobCancelled)
            return True  # or it is about to start, and run() sees it cancelled

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)


def _was_cancelled(error: BaseException | None) -> bool:
    return isinstance(error, JobCancelled) or getattr(error, "error_type", None) == "TaskCancelledError"


class _LocalJob:
    """One submitted job: its future, the thread running it (for cancel), whether it was cancelled."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.future: Future[Any] = Future()
        self.thread: int | None = None
        self.cancelled = False
        self.lock = threading.Lock()  # cancel() raises in the thread only while it runs the action

    def run(self, cls: type, params: dict[str, Any], job_id: str, env: dict[str, str]) -> Any:
        with self.lock:
            if self.cancelled:
                raise self.cancelled_error(job_id)
            self.thread = threading.get_ident()
        try:
            return run_action(cls, params, job_id=job_id, env=env)
        except JobCancelled:
            raise self.cancelled_error(job_id) from None
        finally:
            with self.lock:
                self.thread = None

    def cancelled_error(self, job_id: str) -> ExecutionError:
        return ExecutionError(
            f"job {job_id!r} (action {self.name!r}) was cancelled",
            error_type="TaskCancelledError",
            error_message="cancelled",
            job_id=job_id,
        )
