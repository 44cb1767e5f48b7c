"""What runs inside the Ray cluster for ray-actor and ray-job: the action actor and the pooled job task.

These are plain classes and functions; the drivers turn them into Ray actors and tasks on first use
(:func:`remote_action_actor`, :func:`remote_job_task`), so importing this module imports no Ray
(ray-job's registry is in :mod:`.job_registry`). Ray imports them in the workers by module path,
so the cluster needs raydrive installed (or ``include_sdk=True``).

What they receive is packed by :mod:`raydrive.drivers.wire`: an :class:`~raydrive.drivers.wire.ActionCall`
for :meth:`ActionActor.run`, a :class:`~raydrive.drivers.wire.PooledJob` for :func:`run_job`.

Secrets travel only in these arguments (never in a runtime env, which Ray's state API and
dashboard show) and are put in ``os.environ`` here: for the life of the process in an actor of
its own, and only for the duration of the job in a pooled task, whose process serves other jobs.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from raydrive.core.action import resolve_action, run_action
from raydrive.drivers.wire import NAMESPACE, REGISTRY_NAME, ActionCall, PooledJob, pack_result

__all__ = [
    "ActionActor",
    "JobActor",
    "remote_action_actor",
    "remote_job_actor",
    "remote_job_task",
    "run_job",
    "scoped_environ",
    "scoped_sys_path",
]

_classes: dict[str, type] = {}


def _resolve(target: Any) -> Any:
    # Per-process cache: a warm actor or pooled worker imports an action once.
    if isinstance(target, str):
        cls = _classes.get(target)
        if cls is None:
            cls = _classes[target] = resolve_action(target)
        return cls
    return target


@contextlib.contextmanager
def scoped_environ(env: Mapping[str, str]) -> Iterator[None]:
    """Set ``env`` in ``os.environ`` for the body, then put the whole environment back as it was.

    For pooled worker processes, which serve one job after another: neither the job's secrets nor
    anything the action itself set in ``os.environ`` may reach the next job.
    """
    # Snapshot and comparison on CPython's encoded dict (os._Environ._data, there since 3.2):
    # reading every variable through the Mapping API, dict(os.environ), costs ~50 us, the largest
    # share of a trivial pooled job. Changes go back through os.environ, which keeps putenv in step.
    encoded = getattr(os.environ, "_data", None)
    if not isinstance(encoded, dict):  # not CPython's os._Environ: the public, slower way
        encoded = None
    before = encoded.copy() if encoded is not None else dict(os.environ)
    try:
        os.environ.update(env)  # inside: a variable refused halfway must not leave the others set
        yield
    finally:
        now = encoded if encoded is not None else dict(os.environ)
        if now != before:  # copied: restoring edits os.environ, and so `encoded`
            _restore_environ(before, dict(now), encoded=encoded is not None)


def _restore_environ(before: dict[Any, Any], now: dict[Any, Any], *, encoded: bool) -> None:
    environ: Any = os.environ
    key_of = environ.decodekey if encoded else str
    value_of = environ.decodevalue if encoded else str
    for key in [k for k in now if k not in before]:
        del environ[key_of(key)]
    for key, value in before.items():
        if now.get(key) != value:
            environ[key_of(key)] = value_of(value)


@contextlib.contextmanager
def scoped_sys_path(paths: Sequence[str]) -> Iterator[None]:
    """Put ``paths`` first on ``sys.path`` for the body (the submitter's code paths), then remove them."""
    added = [p for p in paths if p and p not in sys.path]
    sys.path[:0] = added
    try:
        yield
    finally:
        for path in added:
            with contextlib.suppress(ValueError):
                sys.path.remove(path)


REPORT_RUNNING_AFTER_S = 0.05
"""A job is reported RUNNING once it has run this long: jobs shorter than that cost no message."""


class _RunningReporter:
    """Tells the registry that this process's current job is running, from a helper thread.

    One per worker process. A job that ends within :data:`REPORT_RUNNING_AFTER_S` sends nothing,
    so a batch of trivial jobs pays no extra message per job; a longer one shows RUNNING.
    """

    def __init__(self) -> None:
        self._current: tuple[str] | None = None
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._registry: Any = None

    def begin(self, job_id: str) -> tuple[str]:
        token = (job_id,)  # identity marks this run, even when a job id comes again
        self._current = token
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="raydrive-running", daemon=True)
            self._thread.start()
        self._wake.set()
        return token

    def end(self, token: tuple[str]) -> None:
        if self._current is token:
            self._current = None

    def _loop(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            token = self._current
            if token is None:
                continue
            time.sleep(REPORT_RUNNING_AFTER_S)
            if self._current is token:
                self._notify(token[0])

    def _notify(self, job_id: str) -> None:
        try:
            import ray

            if self._registry is None:
                self._registry = ray.get_actor(REGISTRY_NAME, namespace=NAMESPACE)
            self._registry.started.remote(job_id)
        except Exception:  # a status nicety, never fatal
            self._registry = None


_reporter = _RunningReporter()


class ActionActor:
    """Runs actions in a process of its own: the persistent actor of ray-actor, and the fresh actor
    per job of ray-job's actor mode. Module globals survive between calls, as users expect."""

    def __init__(self, env: Mapping[str, str], code_paths: Sequence[str] = ()) -> None:
        # The process is this actor's alone, so the environment (secrets included) is set once.
        os.environ.update(env)
        self._env = dict(env)
        sys.path[:0] = [p for p in code_paths if p and p not in sys.path]

    def run(self, packed: bytes | list[Any]) -> bytes | list[Any]:
        """Run one packed :class:`~raydrive.drivers.wire.ActionCall`; return the result packed."""
        call = ActionCall.unpack(packed)
        target, params, job_id = call.target, call.params, call.job_id
        if not (call.notify and job_id):
            return pack_result(run_action(_resolve(target), params, job_id=job_id, env=self._env))
        token = _reporter.begin(job_id)
        try:
            return pack_result(run_action(_resolve(target), params, job_id=job_id, env=self._env))
        finally:
            _reporter.end(token)

    def pid(self) -> int:
        return os.getpid()


class JobActor(ActionActor):
    """ActionActor as ray-job's fresh actor per job (its own class name in Ray's state API)."""


def run_job(packed: bytes | list[Any]) -> bytes | list[Any]:
    """The pooled Ray task of ray-job: run one action with its environment, then restore the process.

    The result is packed (``wire.unpack_result``)."""
    job = PooledJob.unpack(packed)
    token = _reporter.begin(job.job_id)
    try:
        with scoped_environ(job.env), scoped_sys_path(job.code_paths):
            return pack_result(run_action(_resolve(job.target), job.params, job_id=job.job_id, env=job.env))
    finally:
        _reporter.end(token)


def _kill(actor: Any) -> None:
    import ray

    with contextlib.suppress(Exception):
        ray.kill(actor, no_restart=True)


# --- Ray wrappers, made on first use so that importing this module imports no Ray ----------------
_remote: dict[str, Any] = {}


def remote_action_actor() -> Any:
    """``ray.remote(ActionActor)``; callers add ``.options(...)`` (resources, runtime env, name)."""
    if "actor" not in _remote:
        import ray

        _remote["actor"] = ray.remote(max_restarts=0, max_task_retries=0)(ActionActor)
    return _remote["actor"]


def remote_job_actor() -> Any:
    """``ray.remote(JobActor)``: ray-job's fresh actor per job, never restarted."""
    if "job_actor" not in _remote:
        import ray

        _remote["job_actor"] = ray.remote(max_restarts=0, max_task_retries=0)(JobActor)
    return _remote["job_actor"]


def remote_job_task() -> Any:
    """``ray.remote(run_job)``: never retried, since an action may have side effects."""
    if "task" not in _remote:
        import ray

        _remote["task"] = ray.remote(max_retries=0, retry_exceptions=False)(run_job)
    return _remote["task"]
