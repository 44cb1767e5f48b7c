"""The reporter of the pipeline actor: service calls delivered in order from one thread.

Reports go through a :class:`BufferedReporter`: a background thread delivers them in order and
keeps retrying while the service is unreachable, so an outage of the service slows nothing and
fails nothing; the run's reports arrive, in order, once it answers again. What is queued when the
thread sends goes as one batch (``POST /api/v1/runs/{run_id}/reports``, at most
:data:`MAX_BATCH` reports), so a fast pipeline costs one request per batch, not three per
action. Its queue is bounded (:attr:`BufferedReporter.max_pending`): when full, superseded
progress reports are coalesced and then the oldest log lines dropped (with a note saying how
many); a checkpoint, a run update or the outcome is never dropped. Ray is not imported here.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from raydrive.core.errors import ServiceError, ServiceUnavailableError

__all__ = ["MAX_BATCH", "BufferedReporter"]

#: The most reports one batch request carries (the service takes up to 1,000).
MAX_BATCH = 200
_MAX_LOG_ENTRIES = 500  # log lines merged into one report
#: The reports a batch can carry, by the field of the batch endpoint that takes each.
_BATCH_FIELDS = {
    "report_progress": "progress",
    "create_checkpoint": "checkpoint",
    "append_logs": "logs",
    "update_run": "update",
}
_KEYED = frozenset({"create_checkpoint", "append_logs"})  # creates: a retry must not repeat them

_log = logging.getLogger("raydrive.pipeline")
_STOP = object()
_FLUSH = "flush"  # a marker in the queue: its event is set once everything before it went


# -- the reporter ---------------------------------------------------------------------------------
class BufferedReporter:
    """Delivers service calls in order from one thread, retrying until delivered or closed.

    ``send(method, **kwargs)`` never blocks on the network. The reports waiting when the thread
    sends go as one batch (consecutive log entries as one report); a service without the batch
    endpoint gets them one request each, as does a batch it refuses or that cannot be encoded
    (so that only the bad report is lost). A 4xx answer (for example a report on a run already
    cancelled) is dropped: retrying cannot change it. An unexpected error delivering one report
    is logged and that report dropped; the thread goes on with the next (it never dies silently).

    :param max_pending: the most reports held; beyond it progress reports are coalesced and the
        oldest log lines dropped. Checkpoints and run updates are always kept.
    """

    def __init__(
        self,
        client: Any,
        run_id: str,
        *,
        retry_interval: float = 0.2,
        max_retry_interval: float = 2.0,
        max_pending: int = 10_000,
    ) -> None:
        self._client = client
        self._run_id = run_id
        self._items: collections.deque[Any] = collections.deque()
        self._cond = threading.Condition()
        self._retry = retry_interval
        self._max_retry = max_retry_interval
        self.max_pending = max_pending
        self._closing = threading.Event()
        self._closing_deadline = float("inf")
        self.delivered = 0
        self.dropped = 0
        self.coalesced = 0
        self.errors: list[str] = []
        self.batches = 0  # batch requests answered
        self._batched = True  # until the service turns out to predate the batch endpoint
        self._thread = threading.Thread(target=self._loop, name="raydrive-reporter", daemon=True)
        self._thread.start()

    def send(self, method: str, **kwargs: Any) -> None:
        with self._cond:
            self._items.append((method, kwargs))
            if len(self._items) > self.max_pending:
                self._shrink()
            self._cond.notify()

    def log(self, message: str, level: str, action_name: str | None) -> None:
        self.send("append_logs", entries=[{"message": message, "level": level, "action_name": action_name}])

    @property
    def pending(self) -> int:
        """How many reports wait for delivery."""
        return len(self._items)

    def pending_methods(self) -> list[str]:
        """The methods of the waiting reports, in order (for tests and diagnostics)."""
        with self._cond:
            return [item[0] for item in self._items if item is not _STOP and item[0] != _FLUSH]

    def flush(self, timeout: float) -> bool:
        """Wait until every report queued so far is delivered (or dropped); False on timeout."""
        done = threading.Event()
        self.send(_FLUSH, event=done)
        return done.wait(timeout)

    def _shrink(self) -> None:
        # First: a progress report that only replaces an action's entry is superseded by a later
        # one for the same action (the service replaces the entry by name), so keep the last.
        seen: set[str] = set()
        kept: collections.deque[Any] = collections.deque()
        for item in reversed(self._items):
            if item is not _STOP and item[0] == "report_progress" and set(item[1]) == {"action_progress"}:
                name = item[1]["action_progress"].get("name")
                if name in seen:
                    self.coalesced += 1
                    continue
                seen.add(name)
            kept.appendleft(item)
        self._items = kept
        if len(self._items) <= self.max_pending:
            return
        # Then the oldest log lines, down to half the bound (so this is not done on every send).
        excess = len(self._items) - self.max_pending // 2
        dropped, rest = 0, collections.deque()
        for item in self._items:
            if dropped < excess and item is not _STOP and item[0] == "append_logs":
                dropped += len(item[1]["entries"])
                excess -= 1
                continue
            rest.append(item)
        if dropped:
            note = {"message": f"{dropped} log lines dropped: the service was away and the buffer full",
                    "level": "warning", "action_name": None}  # fmt: skip
            rest.appendleft(("append_logs", {"entries": [note]}))
            self.dropped += dropped
        self._items = rest

    def _next(self) -> Any:
        """The marker at the head of the queue, or the reports to send now (a list)."""
        with self._cond:
            while not self._items:
                self._cond.wait()
            first = self._items.popleft()
            if first is _STOP or first[0] not in _BATCH_FIELDS:
                return first
            taken = [first]
            while self._items and len(taken) < MAX_BATCH:
                nxt = self._items[0]
                if nxt is _STOP or nxt[0] not in _BATCH_FIELDS:
                    break
                if not self._batched and not (first[0] == nxt[0] == "append_logs"):
                    break
                taken.append(self._items.popleft())
        return _merge_logs(taken)

    def _loop(self) -> None:
        while True:
            item = self._next()
            if item is _STOP:
                return
            if isinstance(item, list):
                if len(item) > 1 and self._batched:
                    self._deliver_batch(item)
                else:
                    for method, kwargs in item:
                        self._deliver_one(method, kwargs)
                continue
            method, kwargs = item
            if method == _FLUSH:
                kwargs["event"].set()
                continue
            self._deliver_one(method, kwargs)

    def _deliver_one(self, method: str, kwargs: dict[str, Any]) -> None:
        try:
            self._deliver(method, kwargs)
        except Exception as exc:  # never let the thread die: later reports must still go
            _log.exception("could not deliver %s for run %s", method, self._run_id)
            error = f"{method}: {type(exc).__name__}: {exc}"
            self.errors.append(error)
            self.dropped += 1
            if method in ("update_run", "create_checkpoint"):
                # Losing one of these would leave the run "running" with no cause: say it.
                self._deliver_quietly(
                    "update_run",
                    {"status": "failed", "error": f"the pipeline actor could not report {error}"},
                )

    def _deliver_batch(self, items: list[tuple[str, dict[str, Any]]]) -> None:
        reports = [{_BATCH_FIELDS[method]: kwargs} for method, kwargs in items]
        key = uuid.uuid4().hex  # one per batch: a retry after a lost answer is applied once

        def call() -> Any:
            return self._client.send_reports(self._run_id, reports, idempotency_key=key)

        try:
            sent, ack = self._until_answered("reports", call)
        except Exception as exc:  # refused as a whole (4xx), or a report that is not JSON
            _log.debug(
                "batch of %d reports for run %s not taken (%s): one by one", len(items), self._run_id, exc
            )
            for method, kwargs in items:
                self._deliver_one(method, kwargs)
            return
        if not sent:
            self.dropped += len(items)
            return
        if ack is None:  # the service predates the batch endpoint
            self._batched = False
            for method, kwargs in items:
                self._deliver_one(method, kwargs)
            return
        self.batches += 1
        if len(ack.results) != len(items):  # a service that is not raydrive's: it took the batch
            _log.warning("run %s: %d results for %d reports", self._run_id, len(ack.results), len(items))
            self.delivered += len(items)
            return
        for (method, _), result in zip(items, ack.results, strict=True):
            if result.status < 400:
                self.delivered += 1
            else:
                _log.warning("service refused %s for run %s: %s", method, self._run_id, result.detail)
                self.dropped += 1

    def _deliver_quietly(self, method: str, kwargs: dict[str, Any]) -> None:
        try:
            self._deliver(method, kwargs)
        except Exception:
            _log.exception("could not deliver %s for run %s", method, self._run_id)

    def _deliver(self, method: str, kwargs: dict[str, Any]) -> None:
        if method in _KEYED:
            kwargs = {**kwargs, "idempotency_key": uuid.uuid4().hex}  # the same for each retry
        try:
            sent, _ = self._until_answered(
                method, lambda: getattr(self._client, method)(self._run_id, **kwargs)
            )
        except ServiceError as exc:  # 4xx: retrying cannot change it
            _log.warning("service refused %s for run %s: %s", method, self._run_id, exc)
            self.dropped += 1
            return
        if sent:
            self.delivered += 1
        else:
            self.dropped += 1

    def _until_answered(self, label: str, call: Callable[[], Any]) -> tuple[bool, Any]:
        """``(True, answer)`` once ``call`` is answered, retrying while the service is away or
        answers 5xx; ``(False, None)`` when closing gave up waiting. A 4xx is raised."""
        delay = self._retry
        while True:
            try:
                return True, call()
            except ServiceUnavailableError:
                pass  # the service is away: keep the report, try again
            except ServiceError as exc:
                if exc.status_code is not None and exc.status_code < 500:
                    raise
            if self._closing.is_set() and self._closing_deadline < time.monotonic():
                _log.error("giving up delivering %s for run %s", label, self._run_id)
                return False, None
            time.sleep(delay)
            delay = min(delay * 2, self._max_retry)

    def close(self, timeout: float = 300.0) -> None:
        """Deliver what is queued (waiting up to ``timeout`` for the service), then stop."""
        self._closing_deadline = time.monotonic() + timeout
        self._closing.set()
        with self._cond:
            self._items.append(_STOP)
            self._cond.notify()
        self._thread.join(timeout + 5)


def _merge_logs(items: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """``items`` with consecutive log reports merged (up to 500 lines each): one report, not hundreds."""
    merged: list[tuple[str, dict[str, Any]]] = []
    for method, kwargs in items:
        if method == "append_logs" and merged and merged[-1][0] == "append_logs":
            entries = merged[-1][1]["entries"]
            if len(entries) + len(kwargs["entries"]) <= _MAX_LOG_ENTRIES:
                entries.extend(kwargs["entries"])
                continue
        if method == "append_logs":
            kwargs = {"entries": list(kwargs["entries"])}  # a copy: merging must not change a queued one
        merged.append((method, kwargs))
    return merged
