"""The writes a run's reporter makes (progress, checkpoints, logs, run updates), one way each.

Each write is masked (:mod:`raydrive.service.masking`) and bounded here, whether it arrives on
its own endpoint or as one report of a batch (``POST /api/v1/runs/{run_id}/reports``), so the
two cannot drift; the store checks the rules (:mod:`raydrive.service.rules`) inside its write
transaction, where no other change can slip in between, so they are not read here first. The methods block
(they call the store): the endpoints run them in the thread pool.

A batch is applied in order, each report as its own endpoint would apply it, in one write
transaction (the run is read and written once, and readers see all of the batch or none of it),
and answers one result per report with the status that endpoint would have answered: one
refused report (a checkpoint of a run cancelled meanwhile: 409) neither stops the others nor
fails the request, as Elasticsearch's ``_bulk`` answers per item. A batch is one change of the
run: one event of its stream, holding the state after all of it. The pipeline actor sends what
it has queued as one batch, so a run's reports cost one request and one transaction per batch
instead of one each.
"""

from __future__ import annotations

from typing import Any

from raydrive.service.guards import refusal
from raydrive.service.limits import Limits, check_log_entries
from raydrive.service.masking import mask_checkpoint, mask_logs, mask_report, mask_update
from raydrive.service.models import (
    Checkpoint,
    CheckpointCreate,
    LogEntry,
    LogsAppend,
    ProgressReport,
    Report,
    ReportBatchAck,
    ReportResult,
    Run,
    RunUpdate,
)
from raydrive.service.store import PipelineStore

__all__ = ["RunReports"]


class RunReports:
    """The report writes of a service process, on ``store``, within ``limits``."""

    def __init__(self, store: PipelineStore, limits: Limits) -> None:
        self.store = store
        self.limits = limits

    def progress(self, run_id: str, body: ProgressReport) -> Run:
        """Apply a progress report; ``action_progress`` replaces the entry with the same name."""
        return self.store.report_progress(run_id, self._prepared("progress", body))

    def checkpoint(self, run_id: str, body: CheckpointCreate) -> Checkpoint:
        """Store a checkpoint (409 for a finished run), its params and result redacted."""
        return self.store.create_checkpoint(run_id, self._prepared("checkpoint", body))

    def logs(self, run_id: str, body: LogsAppend) -> list[LogEntry]:
        """Store log entries (409 for a finished run; 422 over ``max_log_entries``), redacted."""
        return self.store.append_logs(run_id, self._prepared("logs", body))

    def update(self, run_id: str, body: RunUpdate) -> Run:
        """Change the run's status, result or error (409 for any change of a finished run)."""
        return self.store.update_run(run_id, self._prepared("update", body))

    def batch(self, run_id: str, items: list[Report | Exception]) -> ReportBatchAck:
        """Apply the reports in order, in one transaction; one result each (404 for the whole
        batch when the run is unknown). An item that is an exception (a report refused when
        it was parsed) is answered as that error, in its place."""
        refused: dict[int, Exception] = {}
        writes: list[tuple[str, Any]] = []
        for index, report in enumerate(items):
            if isinstance(report, Exception):
                refused[index] = report
                continue
            kind = report.kind
            try:
                writes.append((kind, self._prepared(kind, getattr(report, kind))))
            except Exception as exc:  # refused before the store (the log batch limit)
                if refusal(exc) is None:
                    raise  # not the client's: nothing was written, the request answers 500
                refused[index] = exc
        outcomes = iter(self.store.apply_reports(run_id, writes))
        results = []
        for index in range(len(items)):
            error = refused.get(index) or next(outcomes)
            answer = refusal(error) if error is not None else (200, {"detail": None})
            if answer is None:  # the store returns only the client's errors
                raise error  # type: ignore[misc]
            results.append(ReportResult(status=answer[0], detail=answer[1]["detail"]))
        return ReportBatchAck(results=results)

    def _prepared(self, kind: str, body: Any) -> Any:
        # What each endpoint does before its store call (the store checks the rules).
        if kind == "progress":
            return mask_report(body)
        if kind == "update":
            return mask_update(body)
        if kind == "checkpoint":
            return mask_checkpoint(body)
        check_log_entries(len(body.entries), self.limits)
        return mask_logs(body.entries)
