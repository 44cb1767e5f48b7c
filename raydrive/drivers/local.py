"""``local``: runs actions in this process, with the same validation, context and errors as Ray.

For development, for tests, and as the example a third-party driver author copies: options as a
pydantic model, ``execute`` for synchronous use, ``submit / get_status / wait / get_result`` for
asynchronous use on a thread pool.
"""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
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
        self._jobs: dict[str, tuple[str, Future[Any]]] = {}
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
        with self._lock:
            if job_id in self._jobs:
                raise DuplicateJobError(f"job id {job_id!r} is already in use", job_id=job_id)
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.options.max_workers, "raydrive-local")
            future = self._pool.submit(run_action, cls, params, job_id=job_id, env=env)
            self._jobs[job_id] = (action_name(cls), future)
        self._emit_submitted(job_id, action_name(cls))
        return job_id

    def _job(self, job_id: str) -> tuple[str, Future[Any]]:
        try:
            return self._jobs[job_id]
        except KeyError:
            raise JobNotFoundError(f"no job {job_id!r} on this local executor", job_id=job_id) from None

    def get_status(self, job_id: str) -> JobState:
        _, future = self._job(job_id)
        if not future.done():
            return JobState.RUNNING if future.running() else JobState.PENDING
        if future.cancelled():
            return JobState.STOPPED
        return JobState.FAILED if future.exception() else JobState.SUCCEEDED

    def get_result(self, job_id: str, timeout: float | None = None) -> Any:
        _, future = self._job(job_id)
        try:
            result = future.result(timeout=timeout)
        except FutureTimeout:
            raise ExecutionTimeoutError(
                f"job {job_id!r} did not finish within {timeout} s", job_id=job_id
            ) from None
        except ExecutionError as exc:
            self._emit_finished(job_id, JobState.FAILED, exc.message)
            raise
        self._emit_finished(job_id, JobState.SUCCEEDED)
        return result

    def wait(self, job_id: str, timeout_seconds: float = 300) -> str:
        self.get_result(job_id, timeout=timeout_seconds)
        return JobState.SUCCEEDED.value

    def cancel(self, job_id: str) -> bool:
        """Cancel a job that has not started yet (a running thread cannot be stopped)."""
        return self._job(job_id)[1].cancel()

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
