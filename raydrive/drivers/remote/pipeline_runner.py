"""What runs inside the pipeline actor: the actions in order, reporting to the pipeline service.

Reports go through a :class:`BufferedReporter`: a background thread delivers them in order and
keeps retrying while the service is unreachable, so an outage of the service slows nothing and
fails nothing; the run's reports arrive, in order, once it answers again. Its queue is bounded
(:attr:`BufferedReporter.max_pending`): when full, superseded progress reports are coalesced and
then the oldest log lines dropped (with a note saying how many); a checkpoint, a run update or
the outcome is never dropped.

Everything a report carries is a JSON snapshot taken when it is queued (:func:`snapshot`), with
secrets masked (:class:`SecretMasker`); the actor keeps the real params in memory for the next
action. A :class:`CancelWatcher` polls the run's status and stops the running action when the
run is cancelled through the service. Ray is not imported here.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from pydantic import BaseModel

from raydrive.core.action import resolve_action, run_action
from raydrive.core.errors import (
    ActionImportError,
    ExecutionError,
    ServiceError,
    ServiceUnavailableError,
    ValidationError,
)
from raydrive.core.pipeline import ActionProgress, ActionStatus, RunStatus, utcnow
from raydrive.drivers.pipeline_payload import SecretMasker, secret_fields, snapshot
from raydrive.drivers.remote.pipeline_cancel import CancelWatcher, RunCancelled
from raydrive.drivers.wire import PipelineSpec

__all__ = [
    "BufferedReporter",
    "PipelineSpec",
    "ServiceSink",
    "run_pipeline",
    "unique_names",
]

_log = logging.getLogger("raydrive.pipeline")
_STOP = object()


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
            return [item[0] for item in self._items if item is not _STOP]

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


class ServiceSink:
    """An action's logger output, as progress reports and log entries of its run (throttled)."""

    def __init__(
        self,
        reporter: BufferedReporter,
        entry: ActionProgress,
        interval: float,
        clock: Callable[[], float] = time.monotonic,
        masker: SecretMasker | None = None,
    ) -> None:
        self._reporter = reporter
        self.entry = entry
        self._interval = interval
        self._clock = clock
        self._masker = masker or SecretMasker()
        self._last = float("-inf")
        self._pending = False

    def report(self, *, force: bool = False) -> None:
        now = self._clock()
        if not force and now - self._last < self._interval:
            self._pending = True  # sent with the next report that is due
            return
        self._last, self._pending = now, False
        self._reporter.send("report_progress", action_progress=self.dump())

    def dump(self) -> dict[str, Any]:
        """The entry as JSON, secrets masked (a snapshot: later changes do not reach it)."""
        return self._masker.data(self.entry.model_dump(mode="json"))

    def flush(self) -> None:
        if self._pending:
            self.report(force=True)

    def log(self, level: str, message: str) -> None:
        self._reporter.log(self._masker.text(str(message)) or "", level, self.entry.name)

    def progress(self, current: float, total: float, step: str | None) -> None:
        fraction = 0.0 if not total else max(0.0, min(1.0, current / total))
        self.entry.progress = fraction
        self.entry.progress_step = step
        self.report(force=fraction >= 1.0)

    def metrics(self, values: Mapping[str, Any], step: str | int | None) -> None:
        try:
            self.entry.metrics.update(snapshot(dict(values), "metrics"))
        except ExecutionError as exc:
            self.log("warning", f"metrics not reported: {exc}")
            return
        if step is not None:
            self.entry.metrics["step"] = step
        self.report()


def unique_names(names: list[str]) -> list[str]:
    """Action names made unique within a pipeline (the service requires it): ``A, A`` -> ``A, A-2``."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return out


def _action_models(entrypoints: list[Any]) -> list[type[BaseModel] | None]:
    models = []
    for target in entrypoints:
        try:
            models.append(getattr(resolve_action(target), "params_model", None))
        except ActionImportError:
            models.append(None)  # reported when the action is about to run
    return models


def run_pipeline(spec: PipelineSpec, client: Any, *, watcher: CancelWatcher | None = None) -> dict[str, Any]:
    """Run ``spec``'s actions from ``start_index``, reporting everything to the service.

    Returns ``{"status": ..., "result": ..., "error": ...}`` (the result with its secrets, as the
    actor has it); never raises for an action's failure (that is reported as the run's
    ``failed`` status). With a ``watcher``, a cancel asked through the service stops the running
    action and ends the run ``cancelled``.
    """
    reporter = BufferedReporter(client, spec.run_id)
    masker = SecretMasker(secret_fields(_action_models(spec.entrypoints)))
    params = dict(spec.params)
    masker.learn(params)
    now = utcnow().isoformat()
    for name in spec.names[: spec.start_index]:
        skipped = ActionProgress(
            name=name, status=ActionStatus.SKIPPED, progress=1.0, message="restored from checkpoint",
            completed_at=now,
        )  # fmt: skip
        reporter.send("report_progress", action_progress=skipped.model_dump(mode="json"))
    outcome: dict[str, Any] = {"status": RunStatus.COMPLETED.value, "result": None, "error": None}
    entry: ActionProgress | None = None
    if watcher is not None:
        watcher.start()
    try:
        for index in range(spec.start_index, len(spec.entrypoints)):
            if watcher is not None and watcher.cancelled.is_set():
                raise RunCancelled
            name = spec.names[index]
            entry = ActionProgress(name=name, status=ActionStatus.RUNNING, started_at=utcnow())
            reporter.send(
                "report_progress",
                status=RunStatus.RUNNING.value,
                current_action=name,
                current_action_index=index,
                action_progress=entry.model_dump(mode="json"),
            )
            sink = ServiceSink(reporter, entry, spec.progress_interval, masker=masker)
            try:
                with watcher.action() if watcher is not None else _no_watch():
                    result = run_action(
                        spec.entrypoints[index], params, job_id=spec.run_id, env=spec.env, sink=sink
                    )
                masker.learn(result)
                reported = masker.data(snapshot(result, f"the result of action {name!r}"))
                if isinstance(result, Mapping):
                    params.update(result)
                # Taken now: the reporter may deliver it after the next action changed params.
                params_snapshot = masker.data(snapshot(params, f"the params after action {name!r}"))
            except (ValidationError, ActionImportError, ExecutionError) as exc:
                sink.flush()
                error = masker.text(str(exc)) or type(exc).__name__
                entry.status, entry.error, entry.completed_at = ActionStatus.FAILED, error, utcnow()
                reporter.send("report_progress", action_progress=sink.dump())
                reporter.send("update_run", status=RunStatus.FAILED.value, error=error)
                outcome = {"status": RunStatus.FAILED.value, "result": None, "error": error}
                return outcome
            sink.flush()
            # The checkpoint is queued before the "completed" report, and delivery keeps order.
            reporter.send(
                "create_checkpoint",
                action_name=name,
                action_index=index,
                status=ActionStatus.COMPLETED.value,
                params_snapshot=params_snapshot,
                result=reported,
            )
            entry.status, entry.progress, entry.completed_at = ActionStatus.COMPLETED, 1.0, utcnow()
            reporter.send("report_progress", action_progress=sink.dump())
            outcome["result"], final = result, reported
            entry = None
        if spec.start_index >= len(spec.entrypoints):
            final = None
        reporter.send("update_run", status=RunStatus.COMPLETED.value, result=final)
        return outcome
    except RunCancelled:
        # The service has the run cancelled already (it refuses later changes); say where it stopped.
        if entry is not None:
            entry.status, entry.error, entry.completed_at = ActionStatus.FAILED, "cancelled", utcnow()
            reporter.send("report_progress", action_progress=masker.data(entry.model_dump(mode="json")))
        return {"status": RunStatus.CANCELLED.value, "result": None, "error": "cancelled"}
    finally:
        if watcher is not None:
            watcher.stop()
        reporter.close()


@contextmanager
def _no_watch() -> Iterator[None]:
    yield
