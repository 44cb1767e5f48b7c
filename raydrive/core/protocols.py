"""Executor protocols: what callers may rely on, whichever driver they hold.

Check with ``isinstance(executor, AsyncExecutor)``; drivers need not inherit from these.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "AsyncExecutor",
    "Executor",
    "LogStreamingExecutor",
    "PipelineExecutor",
    "RetryingExecutor",
    "SyncExecutor",
]


@runtime_checkable
class Executor(Protocol):
    """Every executor: ``close()`` and use as a context manager."""

    def close(self) -> None: ...

    def __enter__(self) -> Any: ...

    def __exit__(self, *exc_info: object) -> None: ...


@runtime_checkable
class SyncExecutor(Executor, Protocol):
    """Runs an action and returns its result."""

    def execute(self, action_cls: Any, params: dict[str, Any], **kwargs: Any) -> Any:
        """Run ``action_cls`` (a BaseAction subclass or ``module.Class``) with ``params``.

        :raises ValidationError: params fail the action's params model.
        :raises ExecutionError: the action raised (remote type, message and traceback kept).
        """
        ...


@runtime_checkable
class AsyncExecutor(Executor, Protocol):
    """Submits jobs and tracks them by id."""

    def submit(self, action_cls: Any, params: dict[str, Any], *, job_id: str | None = None) -> str:
        """Submit without waiting; return the job id."""
        ...

    def get_status(self, job_id: str) -> Any:
        """The job's status (``PENDING``, ``RUNNING``, ``SUCCEEDED``, ``FAILED``...)."""
        ...

    def wait(self, job_id: str, timeout_seconds: float = 300) -> Any:
        """Block until the job ends; return ``'SUCCEEDED'`` or raise ExecutionError."""
        ...

    def get_result(self, job_id: str, timeout: float | None = None) -> Any:
        """Block until the job ends and return its result, or raise ExecutionError."""
        ...

    def cancel(self, job_id: str) -> bool:
        """Stop the job if it has not ended; False when it had already ended or is unknown.

        The same meaning on every asynchronous driver (``ray-jobs-api``'s ``stop`` is the guide's
        alias of it)."""
        ...


@runtime_checkable
class LogStreamingExecutor(AsyncExecutor, Protocol):
    """An asynchronous executor whose jobs' logs can be read and followed."""

    def get_logs(self, job_id: str) -> str: ...

    def stream_logs(self, job_id: str, *, timeout: float = 3600.0) -> Iterator[str]: ...

    def stream_logs_async(self, job_id: str) -> AsyncIterator[str]: ...


@runtime_checkable
class PipelineExecutor(Executor, Protocol):
    """Runs several actions in a row with checkpoints, progress and resume."""

    def submit(
        self,
        pipeline: Any,
        params: dict[str, Any],
        *,
        name: str | None = None,
        resume_from: str | None = None,
    ) -> str: ...

    def get_progress(self, run_id: str) -> Any: ...

    def stream_progress(self, run_id: str, timeout: float = 3600.0) -> Iterator[Any]: ...

    def cancel(self, run_id: str) -> bool:
        """Stop the run; True when this call stopped it, False when it had ended already or is unknown."""
        ...


@runtime_checkable
class RetryingExecutor(Protocol):
    """An executor that retries failed attempts under the same job id (``retries`` option)."""

    def get_attempts(self, job_id: str) -> list[Any]:
        """The job's attempts so far, oldest first (:class:`raydrive.core.retry.Attempt`), each
        with its state and error; one attempt for a job that was never retried.

        :raises JobNotFoundError: no job with this id.
        """
        ...
