"""What the service stores is masked first: every free-text field and every JSON document of a
request goes through the one redaction rule (:mod:`raydrive.core.redaction`) before a store sees
it, so the database, the API, the stream, the page and the logs never hold a secret value.

The rule decides what is a secret (a URL password, a ``Bearer`` credential, a value under a secret
name, ...); this module only decides *which fields* it is applied to: all of them that hold text
or documents. Ids the service made itself are not text a client chose and are left alone. The
masking is deterministic, so an action name masked when its pipeline was stored matches the same
name masked in a later progress report, checkpoint or log filter.
"""

from __future__ import annotations

from typing import Any

from raydrive.core.pipeline import ActionProgress
from raydrive.core.redaction import redact, redact_text
from raydrive.service.models import (
    CheckpointCreate,
    LogEntryCreate,
    PipelineCreate,
    ProgressReport,
    RunCreate,
    RunUpdate,
)

__all__ = [
    "mask_checkpoint",
    "mask_logs",
    "mask_pipeline",
    "mask_report",
    "mask_run_create",
    "mask_text",
    "mask_update",
]


def mask_text(value: str | None) -> str | None:
    """``value`` with secrets masked (None and "" as they are)."""
    return redact_text(value) if value else value


def _masked(model: Any, texts: tuple[str, ...], documents: tuple[str, ...] = ()) -> Any:
    changes: dict[str, Any] = {}
    for name in texts:
        value = getattr(model, name)
        if value:
            masked = redact_text(value)
            if masked != value:
                changes[name] = masked
    for name in documents:
        if name in model.model_fields_set or getattr(model, name):
            changes[name] = redact(getattr(model, name))
    return model.model_copy(update=changes) if changes else model


def mask_pipeline(body: PipelineCreate) -> PipelineCreate:
    """The pipeline with its name, description and each action's name and entrypoint masked."""
    actions = [_masked(action, ("name", "entrypoint")) for action in body.actions]
    masked: PipelineCreate = _masked(body, ("name", "description"))
    if any(new is not old for new, old in zip(actions, body.actions, strict=True)):
        masked = masked.model_copy(update={"actions": actions})
    return masked


def mask_run_create(body: RunCreate) -> RunCreate:
    """The new run with its params and ``work_dir`` masked."""
    return _masked(body, ("work_dir", "resumed_from"), ("params",))


def _mask_action(entry: ActionProgress) -> ActionProgress:
    return _masked(entry, ("name", "progress_step", "message", "error"), ("metrics",))


def mask_report(body: ProgressReport) -> ProgressReport:
    """The progress report with its current action, error, action entry and attempt masked."""
    masked: ProgressReport = _masked(body, ("current_action", "error"))
    changes: dict[str, Any] = {}
    if body.action_progress is not None:
        changes["action_progress"] = _mask_action(body.action_progress)
    if body.attempt is not None:
        changes["attempt"] = _masked(body.attempt, ("error", "error_type", "submission_id"))
    return masked.model_copy(update=changes) if changes else masked


def mask_update(body: RunUpdate) -> RunUpdate:
    """The PATCH with its result and error masked (fields left out stay left out)."""
    return _masked(body, ("error",), ("result",) if "result" in body.model_fields_set else ())


def mask_checkpoint(body: CheckpointCreate) -> CheckpointCreate:
    """The checkpoint with its action name, artifacts path, params and result masked."""
    return _masked(body, ("action_name", "artifacts_path"), ("params_snapshot", "result"))


def mask_logs(entries: list[LogEntryCreate]) -> list[LogEntryCreate]:
    """The log entries with each message and action name masked."""
    return [_masked(entry, ("message", "action_name")) for entry in entries]
