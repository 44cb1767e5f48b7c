"""ray-job's job queue, held by the job registry on the cluster: named queues with a limit each.

A job submitted with ``max_concurrent`` waits in its queue (``queue`` option, default
``"default"``) until fewer than ``max_concurrent`` of that queue's jobs hold a slot, then starts:
higher ``priority`` first, then in submission order. The registry owns the queues, so every
process submitting to the same queue shares one limit; the limit is the one the latest
submission to that queue named.

A queued job is a record and a heap entry, nothing else: no Ray task, actor or coroutine exists
for it until it leaves the queue, so 10,000 queued jobs cost the cluster nothing but the
registry's memory (a few hundred bytes each beyond their params), and pushing or popping one
is O(log n). A job cancelled while queued is marked and skipped when it reaches the top (lazy
deletion), so cancelling is O(1) too.
"""

from __future__ import annotations

import heapq
import itertools
from typing import Any

__all__ = ["JobQueue", "JobQueues"]


class JobQueue:
    """One named queue: its limit, the jobs holding a slot, the jobs waiting (a heap)."""

    __slots__ = ("_heap", "limit", "name", "running", "waiting")

    def __init__(self, name: str, limit: int) -> None:
        self.name = name
        self.limit = limit
        self.running = 0  # jobs holding a slot (running, or waiting out a retry's backoff)
        self.waiting = 0  # jobs in the heap that may still start (cancelled ones excluded)
        self._heap: list[tuple[int, int, Any]] = []

    def push(self, job: Any, priority: int, seq: int) -> None:
        # (-priority, seq): higher priority first, then FIFO; seq is unique, so the job itself is
        # never compared.
        heapq.heappush(self._heap, (-priority, seq, job))
        self.waiting += 1

    def withdraw(self) -> None:
        """A waiting job was cancelled: it no longer counts (its entry is skipped when popped)."""
        self.waiting -= 1

    def startable(self) -> list[Any]:
        """Take the jobs that may start now (one slot each, already counted as running)."""
        ready = []
        while self.running < self.limit and self._heap:
            job = heapq.heappop(self._heap)[2]
            if not job.queued:  # cancelled while it waited
                continue
            job.queued = False
            self.waiting -= 1
            self.running += 1
            ready.append(job)
        if not self._heap:
            self.waiting = 0
        return ready

    def release(self) -> None:
        """A job that held a slot ended."""
        self.running -= 1

    def info(self) -> dict[str, int]:
        return {"limit": self.limit, "running": self.running, "queued": self.waiting}


class JobQueues:
    """The registry's queues by name, made on first use."""

    def __init__(self) -> None:
        self._queues: dict[str, JobQueue] = {}
        self._seq = itertools.count()

    def enqueue(self, job: Any, name: str, limit: int, priority: int) -> JobQueue:
        """Put ``job`` in queue ``name`` and set that queue's limit to ``limit``."""
        queue = self._queues.get(name)
        if queue is None:
            queue = self._queues[name] = JobQueue(name, limit)
        queue.limit = limit
        job.queued = True
        queue.push(job, priority, next(self._seq))
        return queue

    def occupy(self, name: str, limit: int) -> JobQueue:
        """Queue ``name`` with one more slot held (a restored job that was running or waiting out
        a retry's backoff when the registry died); its limit set to ``limit``."""
        queue = self._queues.get(name)
        if queue is None:
            queue = self._queues[name] = JobQueue(name, limit)
        queue.limit = limit
        queue.running += 1
        return queue

    def all(self) -> list[JobQueue]:
        """Every queue."""
        return list(self._queues.values())

    def info(self) -> dict[str, dict[str, int]]:
        """Each queue's limit and how many of its jobs hold a slot or wait (monitoring, tests)."""
        return {name: queue.info() for name, queue in self._queues.items()}
