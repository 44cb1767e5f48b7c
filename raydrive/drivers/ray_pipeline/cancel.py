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

Deadlines use the same machinery: :meth:`CancelWatcher.action` takes the monotonic time the
action must be done by (its own ``timeout_s`` or the run's deadline, whichever comes first); when
it passes, :class:`DeadlineExceeded` is raised in the action's thread, and an action that does not
stop within ``grace`` s gets ``on_expired`` (the runner reports the run failed) then ``on_stuck``.
The watcher's thread enforces it, on the cluster: the submitter may be long gone.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from raydrive.core.errors import ServiceError
from raydrive.core.interrupt import raise_in_thread
from raydrive.core.pipeline import RunStatus

__all__ = ["CancelWatcher", "DeadlineExceeded", "RunCancelled"]

_log = logging.getLogger("raydrive.pipeline")


class RunCancelled(BaseException):
    """Raised in the action's thread when its run was cancelled (a ``BaseException``, so an
    action's ``except Exception`` does not swallow it)."""


class DeadlineExceeded(BaseException):
    """Raised in the action's thread when its deadline passed (a ``BaseException``, as
    :class:`RunCancelled`)."""


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
        self._deadline: float | None = None  # time.monotonic() the watched action must end by
        self._on_expired: Callable[[], None] | None = None
        self.expired = threading.Event()

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
    def action(
        self, deadline: float | None = None, on_expired: Callable[[], None] | None = None
    ) -> Iterator[None]:
        """Mark the calling thread as running an action (the one to interrupt) for the block.

        :param deadline: the ``time.monotonic()`` by which the block must end, else
            :class:`DeadlineExceeded` is raised in it (once :meth:`start` ran).
        :param on_expired: called when the interrupted action has not stopped within ``grace``
            s of its deadline, before ``on_stuck``.
        """
        with self._lock:
            if self.cancelled.is_set():
                raise RunCancelled
            if deadline is not None and time.monotonic() >= deadline:
                raise DeadlineExceeded
            self._target = threading.get_ident()
            self._deadline, self._on_expired = deadline, on_expired
            self.expired.clear()
            self._idle.clear()
        try:
            yield
        finally:
            with self._lock:
                self._target = None
                self._deadline = self._on_expired = None
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
        next_poll = time.monotonic() + self._interval
        while True:
            deadline = self._deadline
            wait = next_poll - time.monotonic()
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
            if self._stopped.wait(max(0.0, wait)):
                return
            now = time.monotonic()
            deadline = self._deadline
            if deadline is not None and now >= deadline and not self.expired.is_set():
                self._expire()
            if now >= next_poll:
                next_poll = now + self._interval
                if self._poll():
                    self._cancel()
                    return

    def _interrupt(self, error: type[BaseException], only_if: float | None = None) -> bool:
        """Raise ``error`` in the watched thread; True when it was running an action (and, with
        ``only_if``, still the action whose deadline that is)."""
        with self._lock:
            target = self._target
            if target is None or (only_if is not None and self._deadline != only_if):
                return False
            return raise_in_thread(target, error)

    def _expire(self) -> None:
        deadline, on_expired = self._deadline, self._on_expired
        self.expired.set()
        _log.warning("run %s: the action passed its deadline: stopping it", self._run_id)
        if not self._interrupt(DeadlineExceeded, only_if=deadline) or self._idle.wait(self._grace):
            return
        _log.error(
            "the action of run %s did not stop within %.1f s of its deadline", self._run_id, self._grace
        )
        if on_expired is not None:
            on_expired()
        if self._on_stuck is not None:
            self._on_stuck()

    def _cancel(self) -> None:
        _log.warning("run %s was cancelled: stopping its action", self._run_id)
        with self._lock:
            self.cancelled.set()
        if not self._interrupt(RunCancelled) or self._idle.wait(self._grace):
            return
        _log.error("the action of run %s did not stop within %.1f s of the cancel", self._run_id, self._grace)
        if self._on_stuck is not None:
            self._on_stuck()
