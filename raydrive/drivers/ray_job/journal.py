"""ray-job's registry journal: what the job registry accepted, kept in the GCS so it outlives it.

The registry (:mod:`.registry`) holds its jobs in memory; every change that matters after a
death (a job accepted, an attempt launched, a retry's backoff begun, a job finished or deleted)
is also appended here as an event. The events live where Ray keeps its own cluster state, the
GCS's internal key-value store, which outlives any worker process (and, with GCS fault tolerance,
a head restart). A restarted registry replays them (:meth:`JobJournal.load`) and so knows every
job it had accepted.

Writes are grouped, as PostgreSQL groups commits: the events recorded while a write is on its way
go out together as one KV entry (a *segment*), so a burst of 200 submissions or completions costs
a few KV writes, not 200. ``commit()`` waits until what was recorded before it is written: the
registry answers a submission only then (an accepted job is durable), and launches an attempt
only once its launch is written (a restarted registry knows what ran). A finish is written within
:data:`FLUSH_S` without holding anyone up; a registry that dies in that window comes back with the
job as running when it died.

Segments are ``g<generation>/<sequence>`` keys in the KV namespace :data:`KV_NAMESPACE`. When
there are :data:`COMPACT_AFTER` of them, and at least four times as many as the last rewrite
wrote (and at each load), the live records are written afresh as a new generation and the old
one deleted by prefix (a checkpoint, as a write-ahead log is truncated after one): the journal
stays within a few times the size of the live records, and a rewrite's cost is spread over the
writes since the last one.

The KV calls block, so they run on one writer thread, in order; the event loop never waits on
the GCS.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from raydrive.drivers.ray.compat import kv_del, kv_get, kv_list, kv_put
from raydrive.drivers.ray_job.wire import REGISTRY_PROTOCOL

__all__ = ["COMPACT_AFTER", "FLUSH_S", "KV_NAMESPACE", "JobJournal"]

log = logging.getLogger(__name__)

KV_NAMESPACE = f"raydrive-job-registry-v{REGISTRY_PROTOCOL}"
"""The GCS internal-KV namespace of the journal (one per registry protocol)."""

FLUSH_S = 0.05
"""The longest a recorded event waits before it is written when no one commits."""

COMPACT_AFTER = 512
"""Segments written before the live records are rewritten as a new generation."""

CHUNK = 500
"""Events per segment when the live records are rewritten."""

RETRY_S = 1.0
"""Pause before writing again after the GCS refused a write."""

_POINTER = b"pointer"

Event = tuple[Any, ...]


def _dumps(value: Any) -> bytes:
    import ray.cloudpickle

    return bytes(ray.cloudpickle.dumps(value))


def _loads(data: bytes) -> Any:
    import ray.cloudpickle

    return ray.cloudpickle.loads(data)


class JobJournal:
    """The registry's append-only log of events in the GCS internal KV (create it on the loop).

    ``snapshot``: returns the events that rebuild the registry's live records as they are now
    (the registry's :class:`~.registry.JobRegistry` state); used to compact.
    """

    def __init__(self, snapshot: Callable[[], list[Event]]) -> None:
        self._snapshot = snapshot
        self._pending: list[Event] = []
        self._recorded = 0  # events recorded so far (an event's mark: the count after it)
        self._written = 0  # of which written to the GCS
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []  # (mark, future) of commits
        self._flusher: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="raydrive-journal")
        self._generation = 0
        self._seq = 0
        self._base = 0  # segments the last rewrite wrote: compaction waits for 4x as many

    # --- reading back ---------------------------------------------------------------------------
    def load(self) -> list[Event]:
        """Every event of the current generation, oldest first (blocking; call once, at start).

        A segment that cannot be read is skipped with a warning: a registry that could not start
        because of one bad entry would lose every other job.
        """
        raw = kv_get(_POINTER, KV_NAMESPACE)
        self._generation = int(raw) if raw else 0
        prefix = f"g{self._generation}/".encode()
        events: list[Event] = []
        keys = sorted(kv_list(prefix, KV_NAMESPACE))
        for key in keys:
            data = kv_get(key, KV_NAMESPACE)
            if data is None:
                continue
            try:
                events.extend(_loads(data))
            except Exception as exc:  # any damage: skip this segment, keep the rest
                log.warning("raydrive job journal: segment %r unreadable (%s); skipped", key, exc)
        self._seq = len(keys)
        return events

    def rewrite(self, events: list[Event]) -> None:
        """Replace the journal with ``events`` (blocking): a new generation, the old ones deleted."""
        self._write_generation(events)

    # --- writing --------------------------------------------------------------------------------
    def record(self, event: Event) -> int:
        """Append ``event``; it is written within :data:`FLUSH_S` (or with a commit). Returns its
        mark, for :meth:`commit`."""
        self._pending.append(event)
        self._recorded += 1
        if self._flusher is None and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(FLUSH_S, self._start)
        return self._recorded

    async def commit(self, mark: int | None = None) -> None:
        """Wait until the event of ``mark`` (None: every event recorded so far) and those before
        it are written; at once when they are. Later events do not hold it up.

        :raises Exception: the GCS refused the write (the events stay queued and are tried again).
        """
        target = self._recorded if mark is None else mark
        if self._written >= target:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((target, future))
        self._start()
        await future

    def _start(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending or self._waiters:
                events = self._pending
                self._pending = []
                try:
                    if self._seq >= max(COMPACT_AFTER, 4 * self._base):
                        # The snapshot holds every change so far, the pending ones included.
                        snapshot = self._snapshot()
                        await loop.run_in_executor(self._writer, self._write_generation, snapshot)
                    elif events:
                        await loop.run_in_executor(self._writer, self._append, events)
                except Exception as exc:  # the GCS refused: said to the committers waiting on them
                    self._pending[:0] = events
                    self._settle(self._written + len(events), exc)
                    log.warning("raydrive job journal: write failed (%s); trying again", exc)
                    await asyncio.sleep(RETRY_S)
                    continue
                self._written += len(events)
                self._settle(self._written, None)
        finally:
            self._flusher = None

    def _settle(self, upto: int, error: BaseException | None) -> None:
        """Answer the commits waiting for marks up to ``upto``."""
        waiting = []
        for mark, future in self._waiters:
            if mark > upto:
                waiting.append((mark, future))
            elif not future.done():
                if error is None:
                    future.set_result(None)
                else:
                    future.set_exception(error)
        self._waiters = waiting

    def _append(self, events: list[Event]) -> None:
        key = f"g{self._generation}/{self._seq:010d}".encode()
        kv_put(key, _dumps(events), KV_NAMESPACE)
        self._seq += 1

    def _write_generation(self, events: list[Event]) -> None:
        # New generation first, then the pointer, then the old one goes: a death at any step
        # leaves one complete generation under the pointer.
        new = self._generation + 1
        seq = 0
        for start in range(0, len(events), CHUNK):
            kv_put(f"g{new}/{seq:010d}".encode(), _dumps(events[start : start + CHUNK]), KV_NAMESPACE)
            seq += 1
        kv_put(_POINTER, str(new).encode(), KV_NAMESPACE)
        self._generation, self._seq, self._base = new, seq, seq
        stale = set()
        for key in kv_list(b"g", KV_NAMESPACE):
            with contextlib.suppress(ValueError):
                stale.add(int(key[1:].split(b"/", 1)[0]))
        for generation in stale - {new}:
            kv_del(f"g{generation}/".encode(), KV_NAMESPACE, by_prefix=True)
