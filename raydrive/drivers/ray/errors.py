"""The one boundary where Ray's exceptions become raydrive's (see :mod:`raydrive.core.errors`).

Every Ray driver turns what Ray raises into the project's errors here, so callers never catch a
``ray.exceptions`` type. One table, :data:`RAY_ERROR_TABLE`, says what each Ray exception becomes;
the first row whose classes the exception is an instance of wins (this block is that table,
rendered; a test keeps the two equal)::

    RayTaskError                             -> its cause when a RaydriveError (ValidationError,
                                                ExecutionError...); a Ray cause by its own row; else
                                                ExecutionError (remote type, message, traceback)
    RayActorError / ActorDiedError / ActorUnavailableError /
    WorkerCrashedError / OutOfMemoryError / NodeDiedError /
    LocalRayletDiedError                     -> ActorDiedError
    GetTimeoutError                          -> ExecutionTimeoutError
    TaskCancelledError                       -> ExecutionError (error_type='TaskCancelledError')
    RuntimeEnvSetupError                     -> ExecutionError (error_type='RuntimeEnvSetupError')
    TaskUnschedulableError / ActorUnschedulableError
                                             -> InfeasibleResourcesError
    PendingCallsLimitExceeded                -> SubmissionError
    ObjectLostError                          -> ExecutionError (the result was lost)
    AuthenticationError                      -> ClusterUnreachableError (the connection was refused)
    RayError                                 -> ExecutionError (Ray's type and message)

Outside Ray's classes: a ``ConnectionError`` (Ray client, HTTP) becomes a
``ClusterUnreachableError`` naming the address when one is given; anything else, raydrive's own
errors included, is returned as it is.

Use :func:`ray_errors` around calls into Ray, or :func:`to_raydrive_error` where the exception is
already in hand (e.g. inside a registry actor). The original exception is kept as ``__cause__``;
a raydrive error raised inside a worker comes back as itself, not wrapped.

The function never imports Ray: when Ray is not loaded, an exception cannot be one of Ray's, so
the Jobs API driver (which talks HTTP) can use it for its connection errors too.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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
from raydrive.core.retry import WORKER_DEATH_ERROR_TYPES

__all__ = ["RAY_ERROR_TABLE", "RayErrorRow", "is_actor_death", "ray_errors", "to_raydrive_error"]


@dataclass(frozen=True)
class _Context:
    where: str  # "action 'x' (job 'j')", for messages
    action: str | None
    job_id: str | None
    address: str | None


@dataclass(frozen=True)
class RayErrorRow:
    """One row of :data:`RAY_ERROR_TABLE`: Ray's classes, what they become, and the factory."""

    ray: tuple[str, ...]  # class names in ray.exceptions; a name this Ray lacks is skipped
    becomes: str  # for the docs
    factory: Callable[[BaseException, Any, _Context], BaseException]


# Ray's classes that mean "the process running the work is gone".
_DEATH = WORKER_DEATH_ERROR_TYPES


def _ray_exceptions() -> Any | None:
    return sys.modules.get("ray.exceptions")


def _is(exc: BaseException, module: Any, *names: str) -> bool:
    types = tuple(t for t in (getattr(module, n, None) for n in names) if isinstance(t, type))
    return bool(types) and isinstance(exc, types)


def _task_error(exc: BaseException, rex: Any, ctx: _Context) -> BaseException:
    cause = getattr(exc, "cause", None)
    if isinstance(cause, RaydriveError):
        # Raised by raydrive inside the worker (ValidationError, ExecutionError...): as itself.
        return cause
    if cause is not None and _is(cause, rex, "RayError") and cause is not exc:
        return _map_ray(cause, rex, ctx)
    kind = type(cause).__name__ if cause is not None else "RayTaskError"
    message = str(cause) if cause is not None else str(exc)
    return ExecutionError(
        f"{ctx.where} failed: {kind}: {message}",
        error_type=kind,
        error_message=message,
        remote_traceback=getattr(exc, "traceback_str", None) or str(exc),
        job_id=ctx.job_id,
    )


def _died(exc: BaseException, rex: Any, ctx: _Context) -> BaseException:
    init_failed = bool(getattr(exc, "actor_init_failed", False))
    reason = "out of memory" if _is(exc, rex, "OutOfMemoryError") else "killed or crashed"
    detail = str(exc).strip()
    return ActorDiedError(
        f"the worker process running {ctx.where} died ({reason}"
        f"{', while starting' if init_failed else ''}); nothing was returned. "
        f"Ray said: {detail}",
        error_type=type(exc).__name__,
        error_message=detail,
        job_id=ctx.job_id,
    )


def _timeout(exc: BaseException, rex: Any, ctx: _Context) -> BaseException:
    return ExecutionTimeoutError(f"timed out waiting for {ctx.where}: {exc}", job_id=ctx.job_id)


def _cancelled(exc: BaseException, rex: Any, ctx: _Context) -> BaseException:
    return ExecutionError(
        f"{ctx.where} was cancelled",
        error_type="TaskCancelledError",
        error_message=str(exc),
        job_id=ctx.job_id,
    )


def _runtime_env(exc: BaseException, rex: Any, ctx: _Context) -> BaseException:
    from raydrive.drivers.ray.setup_log import setup_log_tail

    # Ray's message is the agent's traceback; what the setup was doing (pip's command line and
    # output) is in its setup log, whose last lines are added here when they can be read.
    if "within the timeout of" in str(exc):
        what = "was not set up within its setup timeout (setup_timeout_s)"
    else:
        what = "could not be set up (packages, working dir)"
    tail = setup_log_tail()
    return ExecutionError(
        f"the runtime environment for {ctx.where} {what}; the action did not run. Ray said: {exc}"
        + (f"\n{tail}" if tail else ""),
        error_type="RuntimeEnvSetupError",
        error_message=str(exc),
        job_id=ctx.job_id,
    )


def _unschedulable(exc: BaseException, rex: Any, ctx: _Context) -> BaseException:
    return InfeasibleResourcesError(f"{ctx.where} cannot be scheduled: {exc}", job_id=ctx.job_id)


def _too_many_calls(exc: BaseException, rex: Any, ctx: _Context) -> BaseException:
    return SubmissionError(f"too many calls pending for {ctx.where}: {exc}", job_id=ctx.job_id)


def _execution_error(message: str, exc: BaseException, ctx: _Context) -> ExecutionError:
    return ExecutionError(message, error_type=type(exc).__name__, error_message=str(exc), job_id=ctx.job_id)


def _lost(exc: BaseException, rex: Any, ctx: _Context) -> BaseException:
    return _execution_error(f"the result of {ctx.where} was lost ({type(exc).__name__}): {exc}", exc, ctx)


def _refused(exc: BaseException, rex: Any, ctx: _Context) -> BaseException:
    return ClusterUnreachableError(
        f"the Ray cluster at {ctx.address or 'the given address'!r} refused the connection: {exc}",
        address=ctx.address,
    )


def _other(exc: BaseException, rex: Any, ctx: _Context) -> BaseException:
    return _execution_error(f"{ctx.where} failed in Ray: {type(exc).__name__}: {exc}", exc, ctx)


#: What each Ray exception becomes, first match (``isinstance``) in this order. The last row,
#: ``RayError``, catches every Ray exception the rows above it do not name.
RAY_ERROR_TABLE: tuple[RayErrorRow, ...] = (
    RayErrorRow(
        ("RayTaskError",),
        "its cause when a RaydriveError (ValidationError, ExecutionError...); a Ray cause by its "
        "own row; else ExecutionError (remote type, message, traceback)",
        _task_error,
    ),
    RayErrorRow(_DEATH, "ActorDiedError", _died),
    RayErrorRow(("GetTimeoutError",), "ExecutionTimeoutError", _timeout),
    RayErrorRow(("TaskCancelledError",), "ExecutionError (error_type='TaskCancelledError')", _cancelled),
    RayErrorRow(
        ("RuntimeEnvSetupError",), "ExecutionError (error_type='RuntimeEnvSetupError')", _runtime_env
    ),
    RayErrorRow(
        ("TaskUnschedulableError", "ActorUnschedulableError"), "InfeasibleResourcesError", _unschedulable
    ),
    RayErrorRow(("PendingCallsLimitExceeded",), "SubmissionError", _too_many_calls),
    RayErrorRow(("ObjectLostError",), "ExecutionError (the result was lost)", _lost),
    RayErrorRow(("AuthenticationError",), "ClusterUnreachableError (the connection was refused)", _refused),
    RayErrorRow(("RayError",), "ExecutionError (Ray's type and message)", _other),
)


def _table_doc(names_width: int = 40, width: int = 104) -> str:
    """:data:`RAY_ERROR_TABLE` as the text block of the module docstring (a test compares them)."""
    lines: list[str] = []
    for row in RAY_ERROR_TABLE:
        left = _wrap(row.ray, " / ", names_width + 20)
        right = _wrap(tuple(row.becomes.split(" ")), " ", width - names_width - 3)
        if len(left[-1]) > names_width:
            left.append("")
        lines.extend(left[:-1])
        lines.append(f"{left[-1]:<{names_width}} -> {right[0]}")
        lines.extend(f"{'':<{names_width}}    {more}" for more in right[1:])
    return "\n".join(line.rstrip() for line in lines)


def _wrap(words: tuple[str, ...], sep: str, width: int) -> list[str]:
    lines = [words[0]]
    for word in words[1:]:
        if len(lines[-1]) + len(sep) + len(word) > width:
            lines[-1] += sep.rstrip()
            lines.append(word)
        else:
            lines[-1] += sep + word
    return lines


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
        return _map_ray(exc, rex, _Context(_where(action, job_id), action, job_id, address))
    if isinstance(exc, RaydriveError | KeyboardInterrupt | SystemExit):
        return exc
    if isinstance(exc, ConnectionError) and address:
        return ClusterUnreachableError(
            f"lost or could not open the connection to the Ray cluster at {address!r}: {exc}",
            address=address,
        )
    return exc


def _map_ray(exc: BaseException, rex: Any, ctx: _Context) -> BaseException:
    for row in RAY_ERROR_TABLE:
        if _is(exc, rex, *row.ray):
            return row.factory(exc, rex, ctx)
    return _other(exc, rex, ctx)  # only if this Ray has no RayError, the last row


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
