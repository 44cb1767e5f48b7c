"""Cancel from anywhere: the pipeline actor watches its run's status on the service.

A cancel is asked for through the service (``POST /api/v1/runs/{id}/cancel``: the web page, the
CLI, :meth:`RayPipelineExecutor.cancel`), which marks the run cancelled at once. The actor's
:class:`CancelWatcher` polls the run's status (every ``interval`` s, 0.5 by default) and, when
it sees the cancel, raises :class:`RunCancelled` in the thread running the action
(``PyThreadState_SetAsyncExc``). That stops pure-Python code at its next bytecode, even a tight
loop that never reports. Code blocked in C (a long ``time.sleep``, a socket read, a GPU kernel)
only sees it when the call returns, so when the action has not stopped after ``grace`` s the
watcher calls ``on_stuck`` (in the actor: the process exits; the run is already recorded as
cancelled by the service). While the service cannot be reached the watcher sees nothing and the
action goes on; the executor's cancel then kills the actor through Ray instead.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from raydrive.core.errors import ServiceError
from raydrive.core.pipeline import RunStatus

__all__ = ["CancelWatcher", "RunCancelled"]

_log = logging.getLogger("raydrive.pipeline")


class RunCancelled(BaseException):
    """Raised in the action's thread when its run was cancelled (a ``BaseException``, so an
    action's ``except Exception`` does not swallow it)."""


def _cancel_seen(client: Any, run_id: str) -> bool:
    view = client.get_run_status(run_id)  # GET /api/v1/runs/{id}/status: {id, status, cancel_requested}
    return bool(view.cancel_requested) or view.status is RunStatus.CANCELLED


class CancelWatcher:
    """Polls the run's status; on a cancel, stops the action running in the watched thread.

    :param client: a pipeline service client (its ``get_run_status`` is polled).
    :param interval: seconds between two polls.
    :param grace: seconds the action has to stop once interrupted before ``on_stuck`` is called.
    :param on_stuck: what to do with an action that does not stop (default: log and wait).
    """

    def __init__(
        self,
        client: Any,
        run_id: str,
        *,
        interval: float = 0.5,
        grace: float = 0.75,
        on_stuck: Callable[[], None] | None = None,
    ) -> None:
        self._client = client
        self._run_id = run_id
        self._interval = interval
        self._grace = grace
        self._on_stuck = on_stuck
        self.cancelled = threading.Event()
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._target: int | None = None
        self._idle = threading.Event()
        self._idle.set()
        self._thread: threading.Thread | None = None
        self._complained = False

    def start(self) -> None:
        """Check once now (a run cancelled while pending runs nothing), then poll in a thread."""
        if self._thread is not None:
            return
        if self._poll():
            self.cancelled.set()
            return
        self._thread = threading.Thread(target=self._loop, name="raydrive-cancel-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()

    @contextmanager
    def action(self) -> Iterator[None]:
        """Mark the calling thread as running an action (the one to interrupt) for the block."""
        with self._lock:
            if self.cancelled.is_set():
                raise RunCancelled
            self._target = threading.get_ident()
            self._idle.clear()
        try:
            yield
        finally:
            with self._lock:
                self._target = None
                self._idle.set()

    def _poll(self) -> bool:
        try:
            return _cancel_seen(self._client, self._run_id)
        except ServiceError:  # unreachable or refused: try again at the next poll
            return False
        except Exception:  # never die silently: a cancel must still be seen later
            if not self._complained:  # once, not every poll
                self._complained = True
                _log.exception("checking run %s for a cancel failed", self._run_id)
            return False

    def _loop(self) -> None:
        while not self._stopped.wait(self._interval):
            if self._poll():
                self._cancel()
                return

    def _cancel(self) -> None:
        _log.warning("run %s was cancelled: stopping its action", self._run_id)
        with self._lock:
            self.cancelled.set()
            target = self._target
            if target is not None:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(target), ctypes.py_object(RunCancelled)
                )
        if target is None or self._idle.wait(self._grace):
            return
        _log.error("the action of run %s did not stop within %.1f s of the cancel", self._run_id, self._grace)
        if self._on_stuck is not None:
            self._on_stuck()
