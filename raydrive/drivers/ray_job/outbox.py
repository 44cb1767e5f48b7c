"""ray-job's outbox: submissions with generated ids, sent to the job registry in batches.

One responsibility, apart from the executor: batching, the helper thread that sends and
acknowledges, and the drain at exit. It reaches the registry only through the two functions it
is given (``send`` a batch, ``receive`` its answer).
"""

from __future__ import annotations

import atexit
import copy
import logging
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from raydrive.core.errors import DuplicateJobError, SubmissionError

__all__ = ["Outbox"]

_OUTBOX_IDLE_S = 30.0  # an executor's submission thread ends after this long without work


class Outbox:
    """Submissions with generated ids, sent to the registry in batches.

    One message carries every job queued while the previous one was on its way, so a burst of
    submissions costs a few registry calls, not one each (the registry is a single actor, the
    bottleneck of a burst). A job that finds nothing on its way is sent at once, from the
    submitter's thread (the call does not wait for the registry), so the cluster starts on a
    burst while the rest of it is being submitted; a helper thread collects the answers and sends
    what queued meanwhile. A job is settled (its batch acknowledged, a refusal raised) before this
    executor looks it up, and everything queued is sent before the executor closes or the
    interpreter exits, so a job submitted just before exit is not lost.
    """

    def __init__(
        self,
        send: Callable[[list[tuple[str, dict[str, Any]]]], Any],
        receive: Callable[[Any], list[str]],
    ) -> None:
        """:param send: starts the registry call for a batch of ``(job id, packed spec)`` (it does
            not wait) and returns what ``receive`` waits on.
        :param receive: waits for a batch's answer: the ids the registry refused as taken.
        """
        # Strong references (to the executor, through bound methods): `RayJobExecutor(...).submit(...)`
        # must send its job even though nothing else keeps the executor (the thread keeps this
        # object while it works).
        self._send = send
        self._receive = receive
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._queued: list[tuple[str, dict[str, Any]]] = []
        self._batch_sent = threading.Event()  # the event of the batch being filled
        self._in_flight: _Batch | None = None  # sent, its answer not yet read (one at a time)
        self._unacked: dict[str, threading.Event] = {}
        self._failed: dict[str, BaseException] = {}
        self._thread: threading.Thread | None = None

    def put(self, job_id: str, spec: dict[str, Any]) -> None:
        with self._lock:
            self._queued.append((job_id, spec))
            self._unacked[job_id] = self._batch_sent
            if self._thread is None:  # first: whatever happens next, the thread answers the batch
                self._thread = threading.Thread(target=self._run, name="raydrive-job-outbox", daemon=True)
                self._thread.start()
                _OUTBOXES.add(self)
                _register_atexit()
            interrupt = self._dispatch() if self._in_flight is None else None
        self._wake.set()
        if interrupt is not None:
            raise interrupt

    def settle(self, job_id: str) -> None:
        """Wait until ``job_id``'s batch reached the registry; raise if it was refused."""
        sent = self._unacked.get(job_id)
        if sent is not None:
            self._wake.set()
            sent.wait()
        error = self._failed.pop(job_id, None) if self._failed else None
        if error is not None:
            raise copy.copy(error)

    def on_its_way(self, job_id: str) -> bool:
        """Whether ``job_id``'s batch was sent and its answer is not read yet (nor known to have
        failed): a read of the job may then go out beside it instead of after it (see
        :meth:`JobRegistry.outcome`'s ``expect``)."""
        with self._lock:
            batch = self._in_flight
            return (
                batch is not None
                and self._unacked.get(job_id) is batch.sent
                and not isinstance(batch.answer, BaseException)
            )

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until everything queued was sent and acknowledged; False on timeout."""
        with self._lock:
            pending = set(self._unacked.values())
        self._wake.set()
        return all(event.wait(timeout) for event in pending)

    def _dispatch(self) -> BaseException | None:
        """Under the lock: the queued jobs become the batch on its way (the call only starts here).

        Never raises: a failure to send is the batch's answer, said at each job's lookup. An
        interrupt (Ctrl-C while the batch was serialized) is returned for the submitter's thread
        to raise; its jobs fail as not sent, since they may or may not have reached the registry.
        """
        batch, sent = self._queued, self._batch_sent
        self._queued, self._batch_sent = [], threading.Event()
        answer: Any = None
        interrupt: BaseException | None = None
        try:
            answer = self._send(batch)
        except Exception as exc:
            answer = exc
        except BaseException as exc:
            interrupt = exc
            answer = SubmissionError(
                f"the submission of {len(batch)} job(s) was interrupted ({type(exc).__name__}): "
                "they may or may not have reached the cluster's job registry"
            )
        self._in_flight = _Batch(batch, sent, answer)
        return interrupt

    def _run(self) -> None:
        while True:
            woke = self._wake.wait(_OUTBOX_IDLE_S)
            self._wake.clear()
            with self._lock:
                if not woke and not self._queued and self._in_flight is None:
                    self._thread = None  # idle: the thread goes, put() starts another
                    return
            while True:
                with self._lock:
                    if self._in_flight is None:
                        if not self._queued:
                            break
                        self._dispatch()
                    batch = self._in_flight
                assert batch is not None
                self._acknowledge(batch)
                with self._lock:
                    self._in_flight = None
                    for job_id, _ in batch.jobs:
                        self._unacked.pop(job_id, None)
                batch.sent.set()

    def _acknowledge(self, batch: _Batch) -> None:
        try:
            if isinstance(batch.answer, BaseException):
                raise batch.answer
            refused = self._receive(batch.answer)
        except BaseException as exc:  # the whole batch failed (registry gone...): said at lookup
            _log.warning("could not submit %d job(s) to the job registry: %s", len(batch.jobs), exc)
            for job_id, _ in batch.jobs:
                self._failed[job_id] = exc
            return
        for job_id in refused:  # generated ids are unique: only a broken registry gets here
            self._failed[job_id] = DuplicateJobError(f"job id {job_id!r} is already in use", job_id=job_id)


@dataclass(frozen=True)
class _Batch:
    """A batch on its way: its jobs, the event its jobs' lookups wait for, the call's answer
    (an ObjectRef, or the error that kept it from being sent)."""

    jobs: list[tuple[str, dict[str, Any]]]
    sent: threading.Event
    answer: Any


_log = logging.getLogger("raydrive.ray")
_OUTBOXES: weakref.WeakSet[Outbox] = weakref.WeakSet()


_atexit_registered = False


def _register_atexit() -> None:
    # On first use, after Ray registered its own handler at import: atexit runs the last
    # registered first, so queued jobs are sent while the connection is still up.
    global _atexit_registered
    if not _atexit_registered:
        _atexit_registered = True
        atexit.register(_drain_outboxes)


def _drain_outboxes() -> None:
    for outbox in list(_OUTBOXES):
        outbox.drain(timeout=30)
