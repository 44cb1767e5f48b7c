"""The one boundary where Ray's exceptions become raydrive's (see :mod:`raydrive.core.errors`).

Every Ray driver turns what Ray raises into the project's errors here, so callers never catch a
``ray.exceptions`` type::

    RayTaskError(cause=RaydriveError)          -> the cause itself (ValidationError, ExecutionError...)
    RayTaskError(cause=anything else)          -> ExecutionError (remote type, message, traceback)
    RayActorError / ActorDiedError / ActorUnavailableError / WorkerCrashedError /
    OutOfMemoryError / NodeDiedError / LocalRayletDiedError   -> ActorDiedError
    GetTimeoutError                            -> ExecutionTimeoutError
    TaskCancelledError                         -> ExecutionError (error_type='TaskCancelledError')
    RuntimeEnvSetupError                       -> ExecutionError (error_type='RuntimeEnvSetupError')
    ObjectLostError family                     -> ExecutionError (the result was lost)
    TaskUnschedulableError / ActorUnschedulableError  -> InfeasibleResourcesError
    PendingCallsLimitExceeded                  -> SubmissionError
    ConnectionError (Ray client, HTTP)         -> ClusterUnreachableError (naming the address)
    any other RayError                         -> ExecutionError

Use :func:`ray_errors` around calls into Ray, or :func:`to_raydrive_error` where the exception is
already in hand (e.g. inside a registry actor). The original exception is kept as ``__cause__``;
a raydrive error raised inside a worker comes back as itself, not wrapped.

The function never imports Ray: when Ray is not loaded, an exception cannot be one of Ray's, so
the Jobs API driver (which talks HTTP) can use it for its connection errors too.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from raydrive.core.errors import (
    ActorDiedError,
    ClusterUnreachableError,
    ExecutionError,
    ExecutionTimeoutError,
    InfeasibleResourcesError,
    RaydriveError,
    SubmissionError,
)

__all__ = ["is_actor_death", "ray_errors", "to_raydrive_error"]

# Ray's classes that mean "the process running the work is gone".
_DEATH = (
    "RayActorError",
    "ActorDiedError",
    "ActorUnavailableError",
    "WorkerCrashedError",
    "OutOfMemoryError",
    "NodeDiedError",
    "LocalRayletDiedError",
)


def _ray_exceptions() -> Any | None:
    return sys.modules.get("ray.exceptions")


def _is(exc: BaseException, module: Any, *names: str) -> bool:
    types = tuple(t for t in (getattr(module, n, None) for n in names) if isinstance(t, type))
    return bool(types) and isinstance(exc, types)


def is_actor_death(exc: BaseException) -> bool:
    """Whether ``exc`` (a Ray exception or its mapping) says the worker process died."""
    if isinstance(exc, ActorDiedError):
        return True
    rex = _ray_exceptions()
    return rex is not None and _is(exc, rex, *_DEATH)


def _where(action: str | None, job_id: str | None) -> str:
    what = f"action {action!r}" if action else "the action"
    return f"{what} (job {job_id!r})" if job_id else what


def to_raydrive_error(
    exc: BaseException,
    *,
    action: str | None = None,
    job_id: str | None = None,
    address: str | None = None,
) -> BaseException:
    """Return the raydrive error for ``exc``; ``exc`` itself when it already is one or is not Ray's.

    :param action: the action's name, for the message.
    :param job_id: the job id, set on the error and named in the message.
    :param address: the cluster address, named when the cluster could not be reached.
    """
    rex = _ray_exceptions()
    # Before the RaydriveError check: Ray raises a worker's ExecutionError as a class that is
    # both RayTaskError and ExecutionError; the caller gets the original, not the hybrid.
    if rex is not None and isinstance(exc, getattr(rex, "RayError", ())):
        return _map_ray(exc, rex, _where(action, job_id), action=action, job_id=job_id, address=address)
    if isinstance(exc, RaydriveError | KeyboardInterrupt | SystemExit):
        return exc
    if isinstance(exc, ConnectionError) and address:
        return ClusterUnreachableError(
            f"lost or could not open the connection to the Ray cluster at {address!r}: {exc}",
            address=address,
        )
    return exc


def _map_ray(
    exc: BaseException, rex: Any, where: str, *, action: str | None, job_id: str | None, address: str | None
) -> BaseException:
    if _is(exc, rex, "RayTaskError"):
        cause = getattr(exc, "cause", None)
        if isinstance(cause, RaydriveError):
            # Raised by raydrive inside the worker (ValidationError, ExecutionError...): as itself.
            return cause
        if cause is not None and _is(cause, rex, "RayError") and cause is not exc:
            return _map_ray(cause, rex, where, action=action, job_id=job_id, address=address)
        kind = type(cause).__name__ if cause is not None else "RayTaskError"
        message = str(cause) if cause is not None else str(exc)
        return ExecutionError(
            f"{where} failed: {kind}: {message}",
            error_type=kind,
            error_message=message,
            remote_traceback=getattr(exc, "traceback_str", None) or str(exc),
            job_id=job_id,
        )
    if _is(exc, rex, *_DEATH):
        init_failed = bool(getattr(exc, "actor_init_failed", False))
        reason = "out of memory" if _is(exc, rex, "OutOfMemoryError") else "killed or crashed"
        detail = str(exc).strip()
        return ActorDiedError(
            f"the worker process running {where} died ({reason}"
            f"{', while starting' if init_failed else ''}); nothing was returned. "
            f"Ray said: {detail}",
            error_type=type(exc).__name__,
            error_message=detail,
            job_id=job_id,
        )
    if _is(exc, rex, "GetTimeoutError"):
        return ExecutionTimeoutError(f"timed out waiting for {where}: {exc}", job_id=job_id)
    if _is(exc, rex, "TaskCancelledError"):
        return ExecutionError(
            f"{where} was cancelled",
            error_type="TaskCancelledError",
            error_message=str(exc),
            job_id=job_id,
        )
    if _is(exc, rex, "RuntimeEnvSetupError"):
        return ExecutionError(
            f"the runtime environment for {where} could not be set up (packages, working dir); "
            f"the action did not run. Ray said: {exc}",
            error_type="RuntimeEnvSetupError",
            error_message=str(exc),
            job_id=job_id,
        )
    if _is(exc, rex, "TaskUnschedulableError", "ActorUnschedulableError"):
        return InfeasibleResourcesError(f"{where} cannot be scheduled: {exc}", job_id=job_id)
    if _is(exc, rex, "PendingCallsLimitExceeded"):
        return SubmissionError(f"too many calls pending for {where}: {exc}", job_id=job_id)
    if _is(exc, rex, "ObjectLostError"):
        return ExecutionError(
            f"the result of {where} was lost ({type(exc).__name__}): {exc}",
            error_type=type(exc).__name__,
            error_message=str(exc),
            job_id=job_id,
        )
    if _is(exc, rex, "AuthenticationError"):
        return ClusterUnreachableError(
            f"the Ray cluster at {address or 'the given address'!r} refused the connection: {exc}",
            address=address,
        )
    return ExecutionError(
        f"{where} failed in Ray: {type(exc).__name__}: {exc}",
        error_type=type(exc).__name__,
        error_message=str(exc),
        job_id=job_id,
    )


@contextmanager
def ray_errors(
    *, action: str | None = None, job_id: str | None = None, address: str | None = None
) -> Iterator[None]:
    """Run the body, raising raydrive's error for any Ray exception (``raise ... from exc``)."""
    try:
        yield
    except Exception as exc:
        mapped = to_raydrive_error(exc, action=action, job_id=job_id, address=address)
        if mapped is exc:
            raise
        raise mapped from exc
