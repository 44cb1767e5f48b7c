"""What runs inside the pipeline actor: the actions in order, reporting to the pipeline service.

Reports go through a :class:`~.reporter.BufferedReporter` (in order, from one thread,
retried while the service is away). Everything a report carries is a JSON snapshot taken when it
is queued (:func:`snapshot`), with secrets masked (:class:`SecretMasker`); the actor keeps the real
params in memory for the next action. A :class:`CancelWatcher` polls the run's status and stops
the running action when the run is cancelled through the service, or when the action passes its
deadline (the action's ``timeout_s``, or the run's).

An exception an action raises is retried in place per the action's
:class:`~raydrive.core.retry.RetryPolicy` (``spec.retry``), with its backoff, before the run
fails; the retries are logged to the run and shown in the action's ``message``. Ray is not
imported here.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from pydantic import BaseModel

from raydrive.core.action import resolve_action, run_action
from raydrive.core.errors import ActionImportError, ExecutionError, ValidationError
from raydrive.core.pipeline import ActionProgress, ActionStatus, RunStatus, utcnow
from raydrive.core.retry import DEADLINE_EXCEEDED, Attempt, RetryPolicy, deadline_error
from raydrive.core.status import JobState
from raydrive.drivers.ray_pipeline.cancel import CancelWatcher, DeadlineExceeded, RunCancelled
from raydrive.drivers.ray_pipeline.payload import SecretMasker, secret_fields, snapshot
from raydrive.drivers.ray_pipeline.reporter import BufferedReporter
from raydrive.drivers.ray_pipeline.wire import PipelineSpec

__all__ = [
    "BufferedReporter",
    "PipelineSpec",
    "ServiceSink",
    "run_pipeline",
    "unique_names",
]

_log = logging.getLogger("raydrive.pipeline")


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


class _Failed(Exception):
    """The run fails with ``error`` (already masked)."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


class _Run:
    """One attempt at a run: the actions from ``spec.start_index``, their retries and deadlines."""

    def __init__(self, spec: PipelineSpec, client: Any, watcher: CancelWatcher | None, attempt: int) -> None:
        self.spec, self.client, self.watcher, self.attempt = spec, client, watcher, attempt
        self.reporter = BufferedReporter(client, spec.run_id)
        self.masker = SecretMasker(secret_fields(_action_models(spec.entrypoints)))
        self.params = dict(spec.params)
        self.masker.learn(self.params)
        self.deadline: float | None = None  # time.monotonic() of the run's deadline
        if spec.timeout_s is not None:
            elapsed = time.time() - spec.started_at if spec.started_at is not None else 0.0
            self.deadline = time.monotonic() + spec.timeout_s - max(0.0, elapsed)

    def _at(self, values: list[Any], index: int) -> Any:
        return values[index] if index < len(values) else None

    def run_deadline_error(self) -> str:
        error = deadline_error(self.spec.run_id, self.spec.timeout_s or 0.0)
        return f"{DEADLINE_EXCEEDED}: the run {str(error).removeprefix('job ')}"

    def call(self, index: int, sink: ServiceSink) -> Any:
        """Run action ``index`` once, under its deadline and the run's.

        :raises ExecutionTimeoutError: the action passed its own ``timeout_s``.
        :raises _Failed: the run passed its deadline.
        """
        spec, name = self.spec, self.spec.names[index]
        timeout = self._at(spec.action_timeouts, index)
        own = time.monotonic() + timeout if timeout else None
        deadline = min((d for d in (own, self.deadline) if d is not None), default=None)
        run_first = deadline is not None and deadline == self.deadline and (own is None or own >= deadline)
        error = self.run_deadline_error() if run_first else None
        if error is None and timeout:
            error = f"{DEADLINE_EXCEEDED}: {deadline_error(spec.run_id, timeout, action=name)}"

        def report_expired() -> None:  # the action is stuck and the process is about to exit
            with contextlib.suppress(Exception):
                self.client.update_run(spec.run_id, status=RunStatus.FAILED.value, error=error)

        watch = self.watcher.action(deadline, report_expired) if self.watcher is not None else _no_watch()
        try:
            with watch:
                return run_action(
                    spec.entrypoints[index], self.params, job_id=spec.run_id, env=spec.env, sink=sink
                )
        except DeadlineExceeded:
            if run_first:
                raise _Failed(str(error)) from None
            raise deadline_error(spec.run_id, float(timeout), action=name) from None

    def with_retries(self, index: int, entry: ActionProgress, sink: ServiceSink) -> Any:
        """Run action ``index`` until it succeeds or its retry policy gives up (:class:`_Failed`)."""
        policy = RetryPolicy.from_wire(self._at(self.spec.retry, index))
        name, number = self.spec.names[index], 1
        while True:
            try:
                return self.call(index, sink)
            except (ValidationError, ActionImportError, ExecutionError) as exc:
                error = self.masker.text(str(exc)) or type(exc).__name__
                if getattr(exc, "reason", None) == DEADLINE_EXCEEDED:
                    error = f"{DEADLINE_EXCEEDED}: {error}"
                if not policy.should_retry(exc, number):
                    raise _Failed(error) from None
                delay = policy.backoff.delay(number)
                number += 1
                sink.log(
                    "warning",
                    f"action {name!r} failed ({error}); attempt {number} of {policy.max_attempts} "
                    f"in {delay:.2f} s",
                )
                entry.progress, entry.message = 0.0, f"attempt {number} of {policy.max_attempts}"
                sink.report(force=True)
                self.wait(delay)

    def wait(self, seconds: float) -> None:
        """Sleep between two attempts; a cancel or the run's deadline ends the wait."""
        if self.deadline is not None and time.monotonic() + seconds >= self.deadline:
            seconds = max(0.0, self.deadline - time.monotonic())
        if self.watcher is not None and self.watcher.cancelled.wait(seconds):
            raise RunCancelled
        if self.watcher is None:
            time.sleep(seconds)
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise _Failed(self.run_deadline_error())

    def action(self, index: int) -> tuple[Any, Any]:
        """Run action ``index`` and checkpoint it; returns its result and what was reported of it."""
        spec, reporter, masker = self.spec, self.reporter, self.masker
        name = spec.names[index]
        entry = ActionProgress(name=name, status=ActionStatus.RUNNING, started_at=utcnow())
        reporter.send(
            "report_progress",
            status=RunStatus.RUNNING.value,
            current_action=name,
            current_action_index=index,
            action_progress=entry.model_dump(mode="json"),
        )
        if index == spec.start_index:
            # Once per attempt: the run shows running (and this attempt) before the first action
            # can take the process down; briefly bounded, so an absent service delays little.
            reporter.flush(5.0)
        sink = ServiceSink(reporter, entry, spec.progress_interval, masker=masker)
        try:
            try:
                result = self.with_retries(index, entry, sink)
                masker.learn(result)
                reported = masker.data(snapshot(result, f"the result of action {name!r}"))
                if isinstance(result, Mapping):
                    self.params.update(result)
                # Taken now: the reporter may deliver it after the next action changed params.
                params_snapshot = masker.data(snapshot(self.params, f"the params after action {name!r}"))
            except ExecutionError as exc:  # a result that is not JSON data
                raise _Failed(masker.text(str(exc)) or type(exc).__name__) from None
        except (_Failed, RunCancelled) as exc:
            sink.flush()
            error = exc.error if isinstance(exc, _Failed) else "cancelled"
            entry.status, entry.error, entry.completed_at = ActionStatus.FAILED, error, utcnow()
            reporter.send("report_progress", action_progress=sink.dump())
            raise
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
        entry.message = None
        reporter.send("report_progress", action_progress=sink.dump())
        # A restarted actor continues after the latest checkpoint the service holds: wait for
        # this one, so that a restart never runs a completed action again (at-least-once only
        # if the service stays away longer than checkpoint_wait_s).
        more = index + 1 < len(spec.entrypoints)
        if spec.max_restarts and more and not reporter.flush(spec.checkpoint_wait_s):
            _log.warning("run %s: the checkpoint of %r is not stored yet; going on", spec.run_id, name)
        return result, reported

    def run(self) -> dict[str, Any]:
        spec, reporter = self.spec, self.reporter
        if self.attempt == 1:  # a restart finds them reported by the first attempt
            now = utcnow().isoformat()
            for name in spec.names[: spec.start_index]:
                skipped = ActionProgress(
                    name=name, status=ActionStatus.SKIPPED, progress=1.0, message="restored from checkpoint",
                    completed_at=now,
                )  # fmt: skip
                reporter.send("report_progress", action_progress=skipped.model_dump(mode="json"))
        started = Attempt(number=self.attempt, state=JobState.RUNNING.value, started_at=time.time())
        reporter.send("report_progress", attempt=started.model_dump(mode="json"))
        outcome: dict[str, Any] = {"status": RunStatus.COMPLETED.value, "result": None, "error": None}
        final = None
        if self.watcher is not None:
            self.watcher.start()
        try:
            for index in range(spec.start_index, len(spec.entrypoints)):
                if self.watcher is not None and self.watcher.cancelled.is_set():
                    raise RunCancelled
                if self.deadline is not None and time.monotonic() >= self.deadline:
                    raise _Failed(self.run_deadline_error())
                outcome["result"], final = self.action(index)
            reporter.send("update_run", status=RunStatus.COMPLETED.value, result=final)
            return outcome
        except _Failed as exc:
            reporter.send("update_run", status=RunStatus.FAILED.value, error=exc.error)
            return {"status": RunStatus.FAILED.value, "result": None, "error": exc.error}
        except RunCancelled:
            # The service has the run cancelled already (it refuses later changes).
            return {"status": RunStatus.CANCELLED.value, "result": None, "error": "cancelled"}
        except DeadlineExceeded:  # raised just after an action ended: the run's deadline passed
            error = self.run_deadline_error()
            reporter.send("update_run", status=RunStatus.FAILED.value, error=error)
            return {"status": RunStatus.FAILED.value, "result": None, "error": error}
        finally:
            if self.watcher is not None:
                self.watcher.stop()
            reporter.close()


def run_pipeline(
    spec: PipelineSpec, client: Any, *, watcher: CancelWatcher | None = None, attempt: int = 1
) -> dict[str, Any]:
    """Run ``spec``'s actions from ``start_index``, reporting everything to the service.

    Returns ``{"status": ..., "result": ..., "error": ...}`` (the result with its secrets, as the
    actor has it); never raises for an action's failure (that is reported as the run's
    ``failed`` status). With a ``watcher``, a cancel asked through the service stops the running
    action and ends the run ``cancelled``; deadlines need one (made here when none is given).
    ``attempt`` is the pipeline actor's attempt (2 after one restart), reported to the service.
    """
    if watcher is None and (spec.timeout_s is not None or any(spec.action_timeouts)):
        watcher = CancelWatcher(
            client, spec.run_id, interval=spec.cancel_poll_interval, grace=spec.interrupt_grace
        )
    return _Run(spec, client, watcher, attempt).run()


@contextmanager
def _no_watch() -> Iterator[None]:
    yield
