"""The attempts of a run's retried actions, for the page's timeline.

The store keeps one progress entry per action (its first start, its end, its last error) and the
run's actor attempts (``Run.attempts``), but not each attempt of an action its retry policy ran
again. The pipeline runner says each retry in one warning log line of the action,
``action 'train' failed (<error>); attempt 2 of 3 in 0.50 s`` (see
``raydrive.drivers.ray_pipeline.runner``); this module reads those lines back into attempts
with a start, an end, a state and an error. A browser test runs a real retried action through the
runner, so a change of that line's wording fails it rather than silently losing the attempts.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from raydrive.core.pipeline import ActionStatus
from raydrive.service.models import LogEntry, Run

__all__ = ["RETRY_LINE", "action_attempts"]

#: The runner's retry line (error may span lines; the greedy group ends at the last ``); attempt``).
RETRY_LINE = re.compile(
    r"^action (?:'[^\n]*'|\"[^\n]*\") failed \((?P<error>.*)\); "
    r"attempt (?P<next>\d+) of (?P<max>\d+) in (?P<delay>\d+(?:\.\d+)?) s$",
    re.DOTALL,
)


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def action_attempts(run: Run, warnings: list[LogEntry]) -> dict[str, list[dict[str, Any]]]:
    """``{action: [attempt, ...]}`` for every action of ``run`` that was retried.

    ``warnings`` are the run's warning log entries, oldest first. Attempt ``n`` ended when the
    line announcing attempt ``n + 1`` was logged, and attempt ``n + 1`` began after that line's
    back-off delay; the last attempt ends as the action did (its status, end and error).
    """
    retries: dict[str, list[tuple[LogEntry, re.Match[str]]]] = {}
    for entry in warnings:
        if entry.action_name is None:
            continue
        found = RETRY_LINE.match(entry.message)
        if found is not None:
            retries.setdefault(entry.action_name, []).append((entry, found))
    out: dict[str, list[dict[str, Any]]] = {}
    for action in run.progress:
        lines = retries.get(action.name)
        if not lines:
            continue
        attempts: list[dict[str, Any]] = []
        start = _iso(action.started_at)
        for number, (entry, found) in enumerate(lines, start=1):
            attempts.append(
                {
                    "number": number,
                    "state": ActionStatus.FAILED.value,
                    "started_at": start,
                    "ended_at": entry.timestamp.isoformat(),
                    "error": found["error"],
                }
            )
            start = (entry.timestamp + timedelta(seconds=float(found["delay"]))).isoformat()
        done = action.status.is_done()
        attempts.append(
            {
                "number": len(lines) + 1,
                "state": action.status.value,
                "started_at": start,
                "ended_at": _iso(action.completed_at) if done else None,
                "error": action.error,
            }
        )
        out[action.name] = attempts
    return out
