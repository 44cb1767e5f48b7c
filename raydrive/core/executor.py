"""What every executor shares: validated options, ``close()`` / ``with``, and lifecycle events.

The protocols (:mod:`raydrive.core.protocols`) say what an executor can do; this base class is
the convenient way to write one, and the way the built-in drivers are written.
"""

from __future__ import annotations

import itertools
import logging
import threading
from typing import Any, ClassVar

from raydrive.core.errors import InvalidOptionsError
from raydrive.core.options import DriverOptions, validate_options
from raydrive.core.plugins import PluginManager, get_plugin_manager
from raydrive.core.policy_types import JobEvent
from raydrive.core.status import JobState, job_state

__all__ = ["MAX_TRACKED_JOBS", "BaseExecutor", "merge_env_argument"]

#: The most jobs one executor tracks as "submitted, not reported finished". Beyond it the oldest
#: is forgotten (its finished event is then not reported), so that a long-lived process that
#: submits without ever reading outcomes does not grow without bound.
MAX_TRACKED_JOBS = 100_000
_log = logging.getLogger("raydrive")


def merge_env_argument(driver: str, env: Any, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with the positional ``env`` argument of an executor folded in as ``env=``.

    :raises InvalidOptionsError: ``env`` was given both positionally and by keyword.
    """
    if env is None:
        return options
    if options.get("env") is not None:
        raise InvalidOptionsError(driver, [("env", "given both positionally and as env=")])
    return {**options, "env": env}


class BaseExecutor:
    """Base class of drivers: ``Options`` validates the constructor's keyword arguments.

    ``env`` may also be given as the first positional argument, as in the guide's constructor
    tables (``RayActorExecutor(env, ray_address=...)``): a dict, a mapping or an object with
    ``to_dict()`` / ``model_dump()`` (the reference's ``PluginEnvironment``).

    :cvar name: the driver's registered name (used in events and errors).
    :cvar Options: the pydantic model of the driver's options.
    """

    name: ClassVar[str] = ""
    Options: ClassVar[type[DriverOptions]] = DriverOptions

    def __init__(self, env: Any = None, /, *, plugins: PluginManager | None = None, **options: Any) -> None:
        options = merge_env_argument(self.name or type(self).__name__, env, options)
        self.options = validate_options(self.name or type(self).__name__, self.Options, options)
        self._plugins = plugins

    @property
    def plugins(self) -> PluginManager:
        return self._plugins or get_plugin_manager()

    def close(self) -> None:
        """Release what the executor holds. The executor may be used again afterwards."""

    def __enter__(self) -> BaseExecutor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.options!r})"

    # --- the lifecycle: one place, so every driver reports the same events the same way ---------
    # A job is "submitted" once and "finished" exactly once, with the same action name at both
    # ends, by the executor that submitted it (another process looking a job up reports nothing).
    def _lifecycle(self) -> tuple[threading.Lock, dict[str, str]]:
        state = self.__dict__.get("_lifecycle_state")
        if state is None:
            state = self.__dict__.setdefault("_lifecycle_state", (threading.Lock(), {}))
        return state

    def _track_job(self, job_id: str, action: str) -> None:
        """Record a job as this executor's before it is sent (its outcome may come back at once)."""
        lock, jobs = self._lifecycle()
        with lock:
            jobs[job_id] = action
            if len(jobs) <= MAX_TRACKED_JOBS:
                return
            oldest = next(iter(jobs))
            del jobs[oldest]
            warned = self.__dict__.setdefault("_lifecycle_warned", False)
            self.__dict__["_lifecycle_warned"] = True
        if not warned:
            _log.warning(
                "%s: more than %d jobs submitted and never read; forgetting the oldest (%s): no "
                "finished event will be reported for it or for others forgotten later",
                self.name or type(self).__name__,
                MAX_TRACKED_JOBS,
                oldest,
            )

    def _untrack_job(self, job_id: str) -> None:
        """Forget a job that was never sent (its submission failed): no event is reported."""
        lock, jobs = self._lifecycle()
        with lock:
            jobs.pop(job_id, None)

    def _unfinished_jobs(self, limit: int | None = None) -> list[str]:
        """The ids of this executor's jobs not reported finished yet, oldest first (the first
        ``limit`` of them when given)."""
        lock, jobs = self._lifecycle()
        with lock:
            return list(itertools.islice(jobs, limit))

    def _is_unfinished(self, job_id: str) -> bool:
        """True for a job this executor submitted and has not reported finished."""
        lock, jobs = self._lifecycle()
        with lock:
            return job_id in jobs

    def _emit_submitted(self, job_id: str, action: str) -> None:
        """Report a job as submitted (and track it, if :meth:`_track_job` did not already)."""
        self._track_job(job_id, action)
        if self.plugins.has_impls("raydrive_job_submitted"):
            self.plugins.job_submitted(JobEvent(driver=self.name, job_id=job_id, action=action))

    def _emit_finished(self, job_id: str, status: Any, error: str | None = None, *, attempt: int = 1) -> bool:
        """Report a job as finished, once: False (and nothing reported) when it already was, or
        when this executor did not submit it. ``status`` is any driver's status word; ``attempt``
        the attempt that ended it (retries keep the job id).

        :raises TypeError: the status is the job's action name, i.e. the call of earlier versions
            ``(job_id, action, status)``, which would otherwise report UNKNOWN."""
        lock, jobs = self._lifecycle()
        with lock:
            action = jobs.get(job_id)
            if action is not None and status == action and job_state(status) is JobState.UNKNOWN:
                # The old call shape (job_id, action, status): the status would be lost as UNKNOWN.
                raise TypeError(
                    f"{type(self).__name__}._emit_finished(job_id, status, error=None, *, attempt=1) "
                    f"got the action name {action!r} as the status (earlier raydrive versions took "
                    "(job_id, action, status, error)); pass the status word"
                )
            jobs.pop(job_id, None)
        if action is None:
            return False
        if self.plugins.has_impls("raydrive_job_finished"):
            state = job_state(status)
            self.plugins.job_finished(
                JobEvent(
                    driver=self.name,
                    job_id=job_id,
                    action=action,
                    status=state.value,
                    error=error,
                    attempt=attempt,
                )
            )
        return True
