"""What runs inside the Ray cluster for each ray-job job: the pooled task and the fresh actor per job.

Plain classes and functions; the registry turns them into Ray tasks and actors on first use
(:func:`remote_job_task`, :func:`remote_job_actor`), so importing this module imports no Ray.
What they receive is packed by :mod:`raydrive.drivers.ray_job.wire` (a
:class:`~raydrive.drivers.ray_job.wire.PooledJob` for :func:`run_job`) and
:mod:`raydrive.drivers.ray.wire` (an :class:`~raydrive.drivers.ray.wire.ActionCall` for
:class:`JobActor`).

Secrets are put in ``os.environ`` only for the duration of the job in a pooled task, whose
process serves other jobs (:func:`scoped_environ`); for the life of the process in an actor of
its own.

Either tells the registry when its job has run a while, so that it shows RUNNING
(:class:`RunningReporter`).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from raydrive.core.action import run_action
from raydrive.drivers.ray.wire import NAMESPACE, ActionCall, pack_result
from raydrive.drivers.ray.worker import ActionActor, ray_remote, resolve_cached
from raydrive.drivers.ray_job.wire import REGISTRY_NAME, PooledJob

__all__ = [
    "REPORT_RUNNING_AFTER_S",
    "JobActor",
    "RunningReporter",
    "remote_job_actor",
    "remote_job_task",
    "run_job",
    "scoped_environ",
    "scoped_sys_path",
]


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


class RunningReporter:
    """Tells the registry that this process's current job is running, from a helper thread.

    One per worker process. A job that ends within :data:`REPORT_RUNNING_AFTER_S` sends nothing,
    so a batch of trivial jobs pays no extra message per job; a longer one shows RUNNING.
    """

    def __init__(self) -> None:
        self._current: tuple[str] | None = None
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._registry: Any = None

    @contextlib.contextmanager
    def running(self, job_id: str) -> Iterator[None]:
        """Report ``job_id`` RUNNING if the body lasts over :data:`REPORT_RUNNING_AFTER_S`."""
        token = (job_id,)  # identity marks this run, even when a job id comes again
        self._current = token
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="raydrive-running", daemon=True)
            self._thread.start()
        self._wake.set()
        try:
            yield
        finally:
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


_reporter = RunningReporter()


class JobActor(ActionActor):
    """The action actor as ray-job's fresh actor per job (its own class name in Ray's state API),
    which reports its job RUNNING to the registry."""

    def run(self, packed: bytes | list[Any]) -> bytes | list[Any]:
        """Run the job's one packed :class:`~raydrive.drivers.ray.wire.ActionCall`."""
        call = ActionCall.unpack(packed)
        with _reporter.running(call.job_id):
            return self.perform(call)


def run_job(packed: bytes | list[Any]) -> bytes | list[Any]:
    """The pooled Ray task of ray-job: run one action with its environment, then restore the process.

    The result is packed (:func:`~raydrive.drivers.ray.wire.unpack_result` reads it)."""
    job = PooledJob.unpack(packed)
    with _reporter.running(job.job_id), scoped_environ(job.env), scoped_sys_path(job.code_paths):
        return pack_result(run_action(resolve_cached(job.target), job.params, job_id=job.job_id, env=job.env))


# --- Ray wrappers, made on first use so that importing this module imports no Ray ----------------
def remote_job_actor() -> Any:
    """``ray.remote(JobActor)``: ray-job's fresh actor per job, never restarted."""
    return ray_remote(JobActor, max_restarts=0, max_task_retries=0)


def remote_job_task() -> Any:
    """``ray.remote(run_job)``: never retried, since an action may have side effects."""
    return ray_remote(run_job, max_retries=0, retry_exceptions=False)
