"""What may change a run: pure checks every store and the HTTP layer share.

Temporal's rule is followed: the history of a finished run is immutable. Each check takes the run
as it is now and the change asked for, and raises when the change is refused; none does I/O, so
a store calls them on the run it loaded inside its write transaction (which makes the check and
the write atomic), and the HTTP layer calls them on the run it read (which answers the common
case before any write).

- a finished run (completed, failed, cancelled) takes no new status, result, error, checkpoint
  or log (:class:`RunConflictError`, answered 409). Repeating exactly what it holds is not a
  change, so a retried final PATCH still succeeds;
- a run never goes back to ``pending`` once it ran (409);
- a progress report for an action the run does not have is refused (:class:`UnknownActionError`,
  answered 422);
- a cancel of a cancelled run changes nothing; of a completed or failed one, 409.
"""

from __future__ import annotations

from collections.abc import Collection

from raydrive.core.pipeline import RunStatus
from raydrive.service.models import ProgressReport, Run, RunUpdate

__all__ = [
    "CANCEL_ERROR",
    "RunConflictError",
    "UnknownActionError",
    "cancel_update",
    "check_open",
    "check_progress",
    "check_update",
]

#: The error a run cancelled through the service carries.
CANCEL_ERROR = "cancelled by the user"


class RunConflictError(Exception):
    """The change contradicts the run's state (answered 409); nothing was changed."""

    def __init__(self, run_id: str, message: str) -> None:
        super().__init__(f"run {run_id!r} {message}")
        self.run_id = run_id


class UnknownActionError(ValueError):
    """A progress report names an action the run does not have (answered 422)."""

    def __init__(self, run_id: str, name: str, known: Collection[str]) -> None:
        super().__init__(
            f"run {run_id!r} has no action {name!r}; its actions are {', '.join(sorted(known)) or 'none'}"
        )
        self.run_id = run_id
        self.name = name


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


def _back_to_pending(run: Run, status: RunStatus | None) -> bool:
    return status is RunStatus.PENDING and run.status is not RunStatus.PENDING


def check_update(run: Run, body: RunUpdate) -> None:
    """Refuse a PATCH that would change a finished run or send a started run back to pending."""
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
        return
    if "status" in fields and _back_to_pending(run, body.status):
        raise RunConflictError(run.id, f"is {run.status.value} and cannot go back to pending")


def check_progress(run_id: str, status: RunStatus, actions: Collection[str], body: ProgressReport) -> None:
    """Refuse a progress report for an unknown action, or one sending a started run back to
    pending. ``status`` and ``actions`` are the run's status and action names; a finished run's
    reports are the store's business (they change nothing, or raise for a new status)."""
    if body.action_progress is not None and body.action_progress.name not in actions:
        raise UnknownActionError(run_id, body.action_progress.name, actions)
    if (
        "status" in body.model_fields_set
        and body.status is RunStatus.PENDING
        and status is not RunStatus.PENDING
        and not status.is_terminal()
    ):
        raise RunConflictError(run_id, f"is {status.value} and cannot go back to pending")


def cancel_update(run: Run) -> RunUpdate | None:
    """The PATCH that cancels ``run``; None when it is cancelled already; 409 when it ended."""
    if run.status is RunStatus.CANCELLED:
        return None
    if run.status.is_terminal():
        raise RunConflictError(run.id, f"is {run.status.value} and can no longer be cancelled")
    return RunUpdate(status=RunStatus.CANCELLED, error=CANCEL_ERROR)
