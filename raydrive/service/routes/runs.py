"""Runs: their creation, reads, updates, cancel, progress reports and the report batch."""

from __future__ import annotations

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool as in_thread

from raydrive.core.pipeline import PipelineProgress, RunStatus
from raydrive.service.bodies import decode, decode_batch
from raydrive.service.guards import status_of
from raydrive.service.masking import mask_run_create
from raydrive.service.models import (
    MAX_INT,
    ProgressAck,
    ProgressReport,
    Report,
    ReportBatchAck,
    Run,
    RunCreate,
    RunStatusView,
    RunUpdate,
)
from raydrive.service.routes.common import (
    ServiceContext,
    SlashRoutes,
    json_list,
    json_response,
    wants_minimal,
)
from raydrive.service.rules import cancel_update
from raydrive.service.store import progress_view

__all__ = ["router"]

# The answer depends on Prefer, so a cache must key on it (RFC 7240 section 2).
_VARY = {"Vary": "Prefer"}
_MINIMAL_APPLIED = {"Preference-Applied": "return=minimal", "Vary": "Prefer"}


def router(service: ServiceContext) -> APIRouter:
    """The run routes of one app."""
    routes = APIRouter()
    route = SlashRoutes(routes)
    store, broker, reports = service.store, service.broker, service.reports

    @route("POST", "/api/v1/pipelines/{pipeline_id}/runs/", response_model=Run)
    async def create_run(pipeline_id: str, request: Request) -> Response:
        """Start a ``pending`` run of the pipeline (body: :class:`RunCreate`, may be empty)."""
        raw = await request.body()

        def create() -> Response:
            # Parsing, masking and serializing a 15 MiB body take a CPU for a while: not on the loop.
            body = decode(raw, RunCreate, service.limits, optional=True) or RunCreate()
            return json_response(store.create_run(pipeline_id, mask_run_create(body)))

        return await in_thread(create)

    @route("GET", "/api/v1/runs/", response_model=list[Run])
    async def list_runs(
        status_filter: RunStatus | None = None,
        skip: int = Query(0, ge=0, le=MAX_INT),
        limit: int = Query(100, ge=1, le=1000),
    ) -> Response:
        """Runs, newest first."""
        return await in_thread(lambda: json_list(Run, store.list_runs(status_filter, skip, limit)))

    @route("GET", "/api/v1/runs/{run_id}", response_model=Run)
    async def get_run(run_id: str) -> Response:
        """One run."""
        return await in_thread(lambda: json_response(store.get_run(run_id)))

    @route("PATCH", "/api/v1/runs/{run_id}", response_model=Run)
    async def update_run(run_id: str, request: Request) -> Response:
        """Change a run's status, result or error (409 for any change of a finished run)."""
        raw = await request.body()

        def update() -> Response:  # parse, apply and answer in one trip to the thread pool
            return json_response(reports.update(run_id, decode(raw, RunUpdate, service.limits)))

        answer = await in_thread(update)
        broker.notify(run_id)
        return answer

    @route("DELETE", "/api/v1/runs/{run_id}", status_code=204)
    async def delete_run(run_id: str) -> Response:
        """Delete a run with its checkpoints and logs."""
        await in_thread(store.delete_run, run_id)
        broker.notify(run_id)
        return Response(status_code=204)

    @route("POST", "/api/v1/runs/{run_id}/cancel", response_model=RunStatusView)
    async def cancel_run(run_id: str) -> Response:
        """Mark the run cancelled (its actor notices and stops); repeating it changes nothing;
        409 for a completed or failed run."""
        update = cancel_update(await in_thread(store.get_run, run_id))
        if update is not None:
            # A run that finished since the read: the store refuses with 409 (RunConflictError).
            await in_thread(store.update_run, run_id, update)
            broker.notify(run_id)
        return json_response(RunStatusView(id=run_id, status=RunStatus.CANCELLED, cancel_requested=True))

    @route("GET", "/api/v1/runs/{run_id}/status", response_model=RunStatusView)
    async def run_status(run_id: str) -> Response:
        """The run's status and whether a cancel was asked for (polled by the pipeline actor)."""
        status = status_of(await in_thread(store.latest_event, run_id))
        return json_response(
            RunStatusView(id=run_id, status=status, cancel_requested=status is RunStatus.CANCELLED)
        )

    @route("POST", "/api/v1/runs/{run_id}/progress", response_model=Run)
    async def report_progress(
        run_id: str, request: Request, prefer: str | None = Header(default=None)
    ) -> Response:
        """Report progress; ``action_progress`` replaces the entry with the same name. Answers
        the run, as the contract says; with ``Prefer: return=minimal`` (RFC 7240) a small
        :class:`ProgressAck` and ``Preference-Applied: return=minimal``."""
        raw = await request.body()
        minimal = wants_minimal(prefer)

        def report() -> Response:
            # Parse, apply and answer in one trip to the thread pool (the hot path of a run).
            run = reports.progress(run_id, decode(raw, ProgressReport, service.limits))
            if not minimal:
                return json_response(run, headers=_VARY)
            ack = ProgressAck(
                id=run.id,
                status=run.status,
                current_action=run.current_action,
                current_action_index=run.current_action_index,
                started_at=run.started_at,
                completed_at=run.completed_at,
            )
            return json_response(ack, headers=_MINIMAL_APPLIED)

        answer = await in_thread(report)
        broker.notify(run_id)
        return answer

    @route("POST", "/api/v1/runs/{run_id}/reports", response_model=ReportBatchAck)
    async def report_batch(run_id: str, request: Request) -> Response:
        """Beyond the contract: progress reports, checkpoints, logs and run updates, applied in
        order as their own endpoints would; one result per report, a bad report refused alone
        (:mod:`raydrive.service.reports`, :func:`raydrive.service.bodies.decode_batch`)."""
        raw = await request.body()
        items: list[Report | Exception] = []

        def apply() -> ReportBatchAck:
            items.extend(decode_batch(raw, service.limits))
            return reports.batch(run_id, items)

        try:
            ack = await in_thread(apply)
        finally:
            broker.notify(run_id)  # what was applied before an error is seen too
        accepted = zip(items, ack.results, strict=True)
        service.metrics.count_reports(
            [item.kind for item, result in accepted if isinstance(item, Report) and result.status < 400]
        )
        return json_response(ack)

    @route("GET", "/api/v1/runs/{run_id}/progress", response_model=PipelineProgress)
    async def get_progress(run_id: str) -> Response:
        """The run's progress view."""
        return json_response(progress_view(await in_thread(store.get_run, run_id)))

    return routes
