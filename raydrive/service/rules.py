"""When a run may change, and how: the one module of a run's life, shared by every store.

Temporal's rule is followed: the history of a finished run is immutable. Each function takes the
run as it is now and the change asked for; none does I/O, so a store calls them on the run it
loaded inside its write transaction (which makes the check and the write atomic).

- a finished run (completed, failed, cancelled) takes no new status, result, error, checkpoint
  or log: :class:`RunConflictError`, the one conflict error (answered 409). Repeating exactly what
  it holds is not a change, so a retried final PATCH still succeeds, and a progress report to a
  finished run that names no other status changes nothing (late or retried reports are harmless);
- a run never goes back to ``pending`` once it ran (409);
- a progress report for an action the run does not have, or with a ``current_action_index``
  outside the run's actions, is refused (:class:`InvalidReportError`, answered 422 naming the
  field);
- ``started_at`` is set when a run first becomes ``running``, ``completed_at`` when it reaches a
  terminal status; the attempt running when the run ends ends with it;
- an action's progress replaces the entry with the same name, keeping its first start;
- a cancel of a cancelled run changes nothing; of a completed or failed one, 409.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from raydrive.core.errors import RaydriveError
from raydrive.core.pipeline import ActionProgress, ActionStatus, RunStatus
from raydrive.core.retry import Attempt
from raydrive.core.status import JobState, job_state
from raydrive.service.models import ProgressReport, Run, RunUpdate

__all__ = [
    "CANCEL_ERROR",
    "InvalidReportError",
    "RunConflictError",
    "apply_progress",
    "apply_update",
    "cancel_update",
    "check_open",
]

#: The error a run cancelled through the service carries.
CANCEL_ERROR = "cancelled by the user"


class RunConflictError(RaydriveError):
    """The change contradicts the run's state (answered 409); nothing was changed."""

    def __init__(self, run_id: str, message: str) -> None:
        super().__init__(f"run {run_id!r} {message}", run_id=run_id)


class InvalidReportError(RaydriveError, ValueError):
    """A progress report names what the run does not have (answered 422). ``loc`` is where in
    the body, as a validation error names it (``["body", "action_progress", "name"]``)."""

    def __init__(self, run_id: str, loc: Sequence[str], message: str) -> None:
        super().__init__(f"run {run_id!r} {message}", run_id=run_id, loc=list(loc))


def _finished(run: Run, what: str) -> RunConflictError:
    return RunConflictError(
        run.id,
        f"is {run.status.value}: a finished run is immutable and takes no {what} (resume it as a new run)",
    )


def check_open(run_id: str, status: RunStatus, what: str) -> None:
    """Refuse adding ``what`` (``"checkpoint"``, ``"log entries"``) to a run that has finished
    (``status`` is the run's status)."""
    if status.is_terminal():
        raise RunConflictError(
            run_id, f"is {status.value}: a finished run is immutable and takes no new {what}"
        )


def _set_status(run: Run, status: RunStatus, now: datetime) -> None:
    if run.status.is_terminal() and status is not run.status:
        raise _finished(run, f"new status ({status.value})")
    if status is RunStatus.PENDING and run.status is not RunStatus.PENDING:
        raise RunConflictError(run.id, f"is {run.status.value} and cannot go back to pending")
    run.status = status
    if status is RunStatus.RUNNING and run.started_at is None:
        run.started_at = now
    if status.is_terminal() and run.completed_at is None:
        run.completed_at = now
    if status.is_terminal() and run.attempts and run.attempts[-1].state == JobState.RUNNING.value:
        # The attempt that ended the run ends with it (its actor sends no report of its own).
        last = run.attempts[-1].model_copy(
            update={"state": job_state(status.value).value, "ended_at": now.timestamp(), "error": run.error}
        )
        run.attempts = [*run.attempts[:-1], last]


def _merge_attempt(run: Run, attempt: Attempt) -> None:
    # Replaced by number, kept in order; the run's ``attempt`` is the newest one reported.
    attempts = {a.number: a for a in run.attempts}
    attempts[attempt.number] = attempt
    run.attempts = [attempts[n] for n in sorted(attempts)]
    run.attempt = max(run.attempt, attempt.number)


def apply_update(run: Run, body: RunUpdate, now: datetime) -> Run | None:
    """Return ``run`` changed by a PATCH, or None when nothing changes.

    A finished run takes no new status, result or error (:class:`RunConflictError`); repeating
    what it holds is no change. A started run never goes back to pending.
    """
    fields = body.model_fields_set
    if run.status.is_terminal():
        changed = [
            name
            for name in ("status", "result", "error")
            if name in fields
            and getattr(body, name) != getattr(run, name)
            and not (name == "status" and body.status is None)  # no status: keep it
        ]
        if changed:
            raise _finished(run, f"new {' or '.join(changed)}")
        return None
    # A shallow copy is enough: fields are only ever replaced, never changed in place.
    new = run.model_copy()
    if "result" in fields:
        new.result = body.result
    if "error" in fields:
        new.error = body.error
    if "status" in fields and body.status is not None:
        _set_status(new, body.status, now)  # after the error: the last attempt ends with it
    return None if new == run else new


def _merge_action(
    entries: list[ActionProgress], report: ActionProgress, now: datetime
) -> list[ActionProgress]:
    entry = report.model_copy()
    old = next((e for e in entries if e.name == entry.name), None)
    # The reporter may leave the times out: keep the first start, stamp the first finish.
    if entry.started_at is None and entry.status is not ActionStatus.SKIPPED:
        if old is not None and old.started_at is not None:
            entry.started_at = old.started_at
        elif entry.status is not ActionStatus.PENDING:
            entry.started_at = now
    if entry.completed_at is None and entry.status.is_done():
        entry.completed_at = old.completed_at if old and old.completed_at else now
    if old is None:
        return [*entries, entry]
    return [entry if e.name == entry.name else e for e in entries]


def _check_report(run: Run, body: ProgressReport) -> None:
    actions: Collection[str] = [entry.name for entry in run.progress]
    if body.action_progress is not None and body.action_progress.name not in actions:
        known = ", ".join(sorted(actions)) or "none"
        raise InvalidReportError(
            run.id,
            ["body", "action_progress", "name"],
            f"has no action {body.action_progress.name!r}; its actions are {known}",
        )
    index = body.current_action_index
    if "current_action_index" in body.model_fields_set and index is not None and index >= len(actions):
        last = f"0 to {len(actions) - 1}" if actions else "none (it has no actions)"
        raise InvalidReportError(
            run.id,
            ["body", "current_action_index"],
            f"has {len(actions)} actions: current_action_index must be {last}, got {index}",
        )


def apply_progress(run: Run, body: ProgressReport, now: datetime) -> Run | None:
    """Return ``run`` changed by a progress report, or None when the report changes nothing.

    A finished run is frozen: a report naming another status raises :class:`RunConflictError`,
    and any other report is ignored. A report naming an action the run does not have, or an
    index outside its actions, raises :class:`InvalidReportError`.
    """
    fields = body.model_fields_set
    if run.status.is_terminal():
        if "status" in fields and body.status is not None and body.status is not run.status:
            raise _finished(run, f"new status ({body.status.value})")
        return None
    _check_report(run, body)
    new = run.model_copy()  # fields are replaced, never changed in place (see apply_update)
    if "current_action" in fields:
        new.current_action = body.current_action
    if "current_action_index" in fields:
        new.current_action_index = body.current_action_index
    if "error" in fields:
        new.error = body.error
    if body.action_progress is not None:
        new.progress = _merge_action(new.progress, body.action_progress, now)
    if body.attempt is not None:
        _merge_attempt(new, body.attempt)
    if "status" in fields and body.status is not None:
        _set_status(new, body.status, now)
    return new


def cancel_update(run: Run) -> RunUpdate | None:
    """The PATCH that cancels ``run``; None when it is cancelled already; 409 when it ended."""
    if run.status is RunStatus.CANCELLED:
        return None
    if run.status.is_terminal():
        raise RunConflictError(run.id, f"is {run.status.value} and can no longer be cancelled")
    return RunUpdate(status=RunStatus.CANCELLED, error=CANCEL_ERROR)
