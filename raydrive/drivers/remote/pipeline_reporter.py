"""The reporter of the pipeline actor: service calls delivered in order from one thread.

Reports go through a :class:`BufferedReporter`: a background thread delivers them in order and
keeps retrying while the service is unreachable, so an outage of the service slows nothing and
fails nothing; the run's reports arrive, in order, once it answers again. Its queue is bounded
(:attr:`BufferedReporter.max_pending`): when full, superseded progress reports are coalesced and
then the oldest log lines dropped (with a note saying how many); a checkpoint, a run update or
the outcome is never dropped. Ray is not imported here.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any

from raydrive.core.errors import ServiceError, ServiceUnavailableError

__all__ = ["BufferedReporter"]

_log = logging.getLogger("raydrive.pipeline")
_STOP = object()
_FLUSH = "flush"  # a marker in the queue: its event is set once everything before it went


# -- the reporter ---------------------------------------------------------------------------------
class BufferedReporter:
    """Delivers service calls in order from one thread, retrying until delivered or closed.

    ``send(method, **kwargs)`` never blocks on the network. Consecutive log entries are batched
    into one request. A 4xx answer (for example a report on a run already cancelled) is dropped:
    retrying cannot change it. An unexpected error delivering one report is logged and that
    report dropped; the thread goes on with the next (it never dies silently).

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
        with self._cond:
            while not self._items:
                self._cond.wait()
            item = self._items.popleft()
            if item is _STOP or item[0] != "append_logs":
                return item
            # Batch the log entries already waiting: one request instead of hundreds.
            entries = list(item[1]["entries"])
            while self._items and len(entries) < 500:
                nxt = self._items[0]
                if nxt is _STOP or nxt[0] != "append_logs":
                    break
                entries.extend(self._items.popleft()[1]["entries"])
            return ("append_logs", {"entries": entries})

    def _loop(self) -> None:
        while True:
            item = self._next()
            if item is _STOP:
                return
            method, kwargs = item
            if method == _FLUSH:
                kwargs["event"].set()
                continue
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

    def _deliver_quietly(self, method: str, kwargs: dict[str, Any]) -> None:
        try:
            self._deliver(method, kwargs)
        except Exception:
            _log.exception("could not deliver %s for run %s", method, self._run_id)

    def _deliver(self, method: str, kwargs: dict[str, Any]) -> None:
        delay = self._retry
        while True:
            try:
                getattr(self._client, method)(self._run_id, **kwargs)
                self.delivered += 1
                return
            except ServiceUnavailableError:
                pass  # the service is away: keep the report, try again
            except ServiceError as exc:
                if exc.status_code is not None and exc.status_code < 500:
                    _log.warning("service refused %s for run %s: %s", method, self._run_id, exc)
                    self.dropped += 1
                    return
            if self._closing.is_set() and self._closing_deadline < time.monotonic():
                _log.error("giving up delivering %s for run %s", method, self._run_id)
                self.dropped += 1
                return
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
