"""What runs inside the pipeline actor: the actions in order, reporting to the pipeline service.

Reports go through a :class:`BufferedReporter`: a background thread delivers them in order and
keeps retrying while the service is unreachable, so an outage of the service slows nothing and
fails nothing; the run's reports arrive, in order, once it answers again. Ray is not imported here.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from raydrive.core.action import run_action
from raydrive.core.errors import (
    ActionImportError,
    ExecutionError,
    ServiceError,
    ServiceUnavailableError,
    ValidationError,
)
from raydrive.core.pipeline import ActionProgress, ActionStatus, RunStatus, utcnow

__all__ = ["BufferedReporter", "PipelineSpec", "ServiceSink", "run_pipeline", "unique_names"]

_log = logging.getLogger("raydrive.pipeline")
_STOP = object()
_NOTHING = object()


@dataclass
class PipelineSpec:
    """Everything the actor needs to run (or resume) one run."""

    run_id: str
    service_url: str
    entrypoints: list[str]
    names: list[str]
    params: dict[str, Any]
    start_index: int = 0
    env: dict[str, str] = field(default_factory=dict)
    progress_interval: float = 0.25
    token: str | None = None

    def __repr__(self) -> str:  # the token and env may hold secrets
        return f"PipelineSpec(run_id={self.run_id!r}, names={self.names!r}, start={self.start_index})"


class BufferedReporter:
    """Delivers service calls in order from one thread, retrying until delivered or closed.

    ``send(method, **kwargs)`` never blocks on the network. Consecutive log entries are batched
    into one request. A 4xx answer (for example a report on a run already cancelled) is dropped:
    retrying cannot change it.
    """

    def __init__(
        self, client: Any, run_id: str, *, retry_interval: float = 0.2, max_retry_interval: float = 2.0
    ) -> None:
        self._client = client
        self._run_id = run_id
        self._queue: queue.Queue[Any] = queue.Queue()
        self._retry = retry_interval
        self._max_retry = max_retry_interval
        self._closing = threading.Event()
        self.delivered = 0
        self.dropped = 0
        self._thread = threading.Thread(target=self._loop, name="raydrive-reporter", daemon=True)
        self._thread.start()

    def send(self, method: str, **kwargs: Any) -> None:
        self._queue.put((method, kwargs))

    def log(self, message: str, level: str, action_name: str | None) -> None:
        self.send("append_logs", entries=[{"message": message, "level": level, "action_name": action_name}])

    def _loop(self) -> None:
        held: Any = _NOTHING
        while True:
            item = self._queue.get() if held is _NOTHING else held
            held = _NOTHING
            if item is _STOP:
                return
            method, kwargs = item
            if method == "append_logs":
                # Batch the log entries already waiting: one request instead of hundreds.
                entries = list(kwargs["entries"])
                while len(entries) < 500:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is _STOP or nxt[0] != "append_logs":
                        held = nxt
                        break
                    entries.extend(nxt[1]["entries"])
                kwargs = {"entries": entries}
            self._deliver(method, kwargs)

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

    _closing_deadline = float("inf")

    def close(self, timeout: float = 300.0) -> None:
        """Deliver what is queued (waiting up to ``timeout`` for the service), then stop."""
        self._closing_deadline = time.monotonic() + timeout
        self._closing.set()
        self._queue.put(_STOP)
        self._thread.join(timeout + 5)


class ServiceSink:
    """An action's logger output, as progress reports and log entries of its run (throttled)."""

    def __init__(
        self,
        reporter: BufferedReporter,
        entry: ActionProgress,
        interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._reporter = reporter
        self.entry = entry
        self._interval = interval
        self._clock = clock
        self._last = float("-inf")
        self._pending = False

    def report(self, *, force: bool = False) -> None:
        now = self._clock()
        if not force and now - self._last < self._interval:
            self._pending = True  # sent with the next report that is due
            return
        self._last, self._pending = now, False
        self._reporter.send("report_progress", action_progress=self.entry.model_dump(mode="json"))

    def flush(self) -> None:
        if self._pending:
            self.report(force=True)

    def log(self, level: str, message: str) -> None:
        self._reporter.log(message, level, self.entry.name)

    def progress(self, current: float, total: float, step: str | None) -> None:
        fraction = 0.0 if not total else max(0.0, min(1.0, current / total))
        self.entry.progress = fraction
        self.entry.progress_step = step
        self.report(force=fraction >= 1.0)

    def metrics(self, values: Mapping[str, Any], step: str | int | None) -> None:
        self.entry.metrics.update(dict(values))
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


def run_pipeline(spec: PipelineSpec, client: Any) -> dict[str, Any]:
    """Run ``spec``'s actions from ``start_index``, reporting everything to the service.

    Returns ``{"status": ..., "result": ..., "error": ...}``; never raises for an action's
    failure (that is reported as the run's ``failed`` status).
    """
    reporter = BufferedReporter(client, spec.run_id)
    params = dict(spec.params)
    now = utcnow().isoformat()
    for name in spec.names[: spec.start_index]:
        skipped = ActionProgress(
            name=name,
            status=ActionStatus.SKIPPED,
            progress=1.0,
            message="restored from checkpoint",
            completed_at=now,
        )
        reporter.send("report_progress", action_progress=skipped.model_dump(mode="json"))
    outcome: dict[str, Any] = {"status": RunStatus.COMPLETED.value, "result": None, "error": None}
    try:
        for index in range(spec.start_index, len(spec.entrypoints)):
            name = spec.names[index]
            entry = ActionProgress(name=name, status=ActionStatus.RUNNING, started_at=utcnow())
            reporter.send(
                "report_progress",
                status=RunStatus.RUNNING.value,
                current_action=name,
                current_action_index=index,
                action_progress=entry.model_dump(mode="json"),
            )
            sink = ServiceSink(reporter, entry, spec.progress_interval)
            try:
                result = run_action(
                    spec.entrypoints[index], params, job_id=spec.run_id, env=spec.env, sink=sink
                )
            except (ValidationError, ActionImportError, ExecutionError) as exc:
                sink.flush()
                error = str(exc)
                entry.status, entry.error, entry.completed_at = ActionStatus.FAILED, error, utcnow()
                reporter.send("report_progress", action_progress=entry.model_dump(mode="json"))
                reporter.send("update_run", status=RunStatus.FAILED.value, error=error)
                outcome = {"status": RunStatus.FAILED.value, "result": None, "error": error}
                return outcome
            sink.flush()
            if isinstance(result, Mapping):
                params.update(result)
            # The checkpoint is queued before the "completed" report, and delivery keeps order.
            reporter.send(
                "create_checkpoint",
                action_name=name,
                action_index=index,
                status=ActionStatus.COMPLETED.value,
                params_snapshot=params,
                result=result,
            )
            entry.status, entry.progress, entry.completed_at = ActionStatus.COMPLETED, 1.0, utcnow()
            reporter.send("report_progress", action_progress=entry.model_dump(mode="json"))
            outcome["result"] = result
        reporter.send("update_run", status=RunStatus.COMPLETED.value, result=outcome["result"])
        return outcome
    finally:
        reporter.close()
