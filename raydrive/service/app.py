"""The pipeline service as a FastAPI application (the HTTP contract of ``PIPELINE_SERVICE_API.md``).

Endpoints are ``async`` and run the blocking store calls in the thread pool, so a write and the
wake-up of the progress streams waiting on that run happen on the event loop in order, without
polling: each change notifies an in-process per-run :class:`asyncio.Event`, and the stream then
reads the new events from the store (which numbered them in the write transaction).

Decisions the contract leaves open:

- a terminal run (completed, failed, cancelled) is immutable (:mod:`raydrive.service.rules`): a
  PATCH of its status, result or error, a new checkpoint or new logs answer **409** and change
  nothing; a progress report to it is answered 200 unchanged (409 when it names another status),
  so late or retried reports are harmless. A run never goes back to ``pending``; a progress
  report for an action the run does not have answers 422.
- a progress report answers a small :class:`~raydrive.service.models.ProgressAck`, not the run.
- bodies are bounded (:mod:`raydrive.service.limits`); numbers a database cannot hold answer 422.
- what is stored is redacted first (:mod:`raydrive.service.guards`): the service never stores or
  streams a secret value. Every error answers JSON ``{"detail": ...}``; an unexpected one a
  generic 500, logged redacted.
- a 404 body carries ``missing`` (``pipeline``, ``run`` or ``checkpoint``) besides ``detail``.
- lists of pipelines and runs are newest first; checkpoints and logs oldest first.
- deleting a pipeline deletes its runs; deleting a run deletes its checkpoints, logs and events.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, TypeVar

from fastapi import FastAPI, Header, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, TypeAdapter
from starlette.concurrency import run_in_threadpool as in_thread

from raydrive.core.pipeline import PipelineProgress, RunStatus
from raydrive.core.redaction import redact
from raydrive.service import web
from raydrive.service.auth import AuthMiddleware, HostCheckMiddleware
from raydrive.service.broker import DEFAULT_MAX_STREAMS, RETRY_AFTER_S, RunBroker
from raydrive.service.client import TOKEN_ENV
from raydrive.service.guards import (
    CatchAllMiddleware,
    install_error_handlers,
    reset_event,
    status_of,
    stream_ends,
    utc_or_422,
)
from raydrive.service.idempotency import IdempotencyKeys, IdempotencyMiddleware
from raydrive.service.limits import BodyLimitMiddleware, Limits
from raydrive.service.metrics import ServiceMetrics, TimedStore
from raydrive.service.models import MAX_INT as _MAX_INT
from raydrive.service.models import (
    Checkpoint,
    CheckpointCreate,
    LogEntry,
    LogLevel,
    LogsAppend,
    Pipeline,
    PipelineCreate,
    ProgressAck,
    ProgressReport,
    ReportBatch,
    ReportBatchAck,
    Run,
    RunCreate,
    RunStatusView,
    RunUpdate,
)
from raydrive.service.reports import RunReports
from raydrive.service.rules import (
    cancel_update,
)
from raydrive.service.store import (
    PipelineStore,
    RecordNotFoundError,
    RunEvent,
    progress_view,
)

__all__ = ["TOKEN_ENV", "RunBroker", "create_app", "resolve_token"]


def _default_store(location: str | os.PathLike[str] | None) -> PipelineStore:
    from raydrive.service.db import open_store

    return open_store(location)  # type: ignore[return-value]


_log = logging.getLogger("raydrive.service")
_Endpoint = TypeVar("_Endpoint", bound=Callable[..., Any])
_PING = b": ping\n\n"
_STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_LISTS: dict[type, TypeAdapter[Any]] = {
    model: TypeAdapter(list[model]) for model in (Pipeline, Run, Checkpoint, LogEntry)
}


def _json(value: BaseModel) -> Response:
    # Serialize with pydantic directly: the values are already validated models, so FastAPI's
    # second validation pass through the response model would only cost time on the hot path.
    return Response(value.model_dump_json(), media_type="application/json")


def _json_list(model: type[BaseModel], values: list[Any]) -> Response:
    return Response(_LISTS[model].dump_json(values), media_type="application/json")


class _Routes:
    """Registers each path both with and without its trailing slash (no redirect, body kept)."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def __call__(self, method: str, path: str, **options: Any) -> Callable[[_Endpoint], _Endpoint]:
        def register(endpoint: _Endpoint) -> _Endpoint:
            twin = path[:-1] if path.endswith("/") else f"{path}/"
            self.app.add_api_route(path, endpoint, methods=[method], **options)
            self.app.add_api_route(twin, endpoint, methods=[method], include_in_schema=False, **options)
            return endpoint

        return register


def resolve_token(token: str | None) -> str | None:
    """The token in force: ``token`` when given, else ``$RAYDRIVE_SERVICE_TOKEN``; "" means none."""
    return (token if token is not None else os.environ.get(TOKEN_ENV)) or None


def _encode(event: RunEvent) -> bytes:
    return f"id: {event.seq}\nevent: {event.event}\ndata: {event.data}\n\n".encode()


def create_app(
    store: PipelineStore | None = None,
    *,
    db_path: str | os.PathLike[str] | None = None,
    token: str | None = None,
    ping_interval: float = 15.0,
    allowed_hosts: Iterable[str] = (),
    retain_days: float | None = None,
    prune_interval: float | None = None,
    max_streams: int = DEFAULT_MAX_STREAMS,
    max_body_bytes: int | None = None,
    max_json_depth: int | None = None,
    max_log_entries: int | None = None,
) -> FastAPI:
    """Build the pipeline service application.

    :param store: the storage; by default :func:`raydrive.service.db.open_store` on ``db_path``,
        which the app closes when it shuts down (a store passed in stays the caller's to close).
    :param db_path: database of the default store: a SQLite file, ``sqlite:///path`` or
        ``postgresql://...`` (see :func:`raydrive.service.db.open_store`); defaults to
        ``$RAYDRIVE_SERVICE_DB`` or ``~/.raydrive/pipelines.db``.
    :param token: bearer token every request but ``GET /health`` must carry; defaults to
        ``$RAYDRIVE_SERVICE_TOKEN``; None or empty turns auth off.
    :param ping_interval: seconds of quiet after which a progress stream sends ``: ping``.
    :param allowed_hosts: ``Host`` names accepted besides the address a request arrived on (and
        the loopback names on loopback); ``"*"`` accepts any (see :mod:`raydrive.service.auth`).
    :param retain_days: prune runs finished more than this many days ago, in the background
        every ``prune_interval`` seconds (see :mod:`raydrive.service.retention`); None keeps all.
    :param max_streams: open progress streams this process serves; more answer 503 with
        ``Retry-After``.
    :param max_body_bytes: largest request body (413 above it); default 16 MiB or
        ``$RAYDRIVE_SERVICE_MAX_BODY_BYTES`` (see :mod:`raydrive.service.limits`).
    :param max_json_depth: deepest JSON nesting of a body (422 above it); default 64 or
        ``$RAYDRIVE_SERVICE_MAX_JSON_DEPTH``.
    :param max_log_entries: most log entries in one batch (422 above it); default 10,000 or
        ``$RAYDRIVE_SERVICE_MAX_LOG_ENTRIES``.
    :returns: the FastAPI app. ``app.state.store`` is the store, ``app.state.broker`` the
        :class:`RunBroker`, ``app.state.active_streams`` the number of open progress streams.
    """
    owns_store = store is None
    the_store: PipelineStore = store if store is not None else _default_store(db_path)
    raw_store = the_store
    broker = RunBroker(max_streams=max_streams)
    token = resolve_token(token)
    limits = Limits.from_env(
        max_body_bytes=max_body_bytes, max_json_depth=max_json_depth, max_log_entries=max_log_entries
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Changes other processes write to the same database wake this process's streams too.
        broker.start(raw_store)
        pruning = None
        if retain_days is not None:
            from raydrive.service.retention import DEFAULT_PRUNE_INTERVAL_S, prune_forever

            interval = prune_interval if prune_interval is not None else DEFAULT_PRUNE_INTERVAL_S
            pruning = asyncio.create_task(prune_forever(raw_store, retain_days, interval))
        try:
            yield
        finally:
            if pruning is not None:
                pruning.cancel()
            broker.close()
            if owns_store:
                the_store.close()

    app = FastAPI(title="raydrive pipeline service", version="1", lifespan=lifespan, redirect_slashes=False)
    app.state.store = the_store
    app.state.broker = broker
    app.state.active_streams = 0
    # The store's writes are timed for /metrics; app.state.store stays the store itself.
    metrics = ServiceMetrics(lambda: app.state.store, lambda: app.state.active_streams)
    the_store = TimedStore(the_store, metrics)  # type: ignore[assignment]
    reports = RunReports(the_store, limits)
    app.state.metrics = metrics
    app.state.limits = limits
    app.state.idempotency = IdempotencyKeys()
    app.add_middleware(IdempotencyMiddleware, keys=app.state.idempotency)
    # Innermost but for the keys: a body is only read once Host and token were accepted.
    app.add_middleware(BodyLimitMiddleware, limits=limits)
    if token:
        app.add_middleware(AuthMiddleware, token=token)
    # Added last, so it runs first: a request for another Host is refused before anything else.
    app.add_middleware(HostCheckMiddleware, allowed_hosts=allowed_hosts)
    app.add_middleware(metrics.middleware)
    app.add_middleware(CatchAllMiddleware)

    install_error_handlers(app)

    route = _Routes(app)

    @app.get("/health")
    async def health() -> dict[str, str]:
        """Liveness check; never needs a token."""
        return {"status": "ok"}

    app.add_api_route("/health/", health, methods=["GET"], include_in_schema=False)

    # -- pipelines

    @route("POST", "/api/v1/pipelines/", response_model=Pipeline)
    async def create_pipeline(body: PipelineCreate) -> Response:
        """Store a pipeline definition."""
        return _json(await in_thread(the_store.create_pipeline, body))

    @route("GET", "/api/v1/pipelines/", response_model=list[Pipeline])
    async def list_pipelines(
        skip: int = Query(0, ge=0, le=_MAX_INT), limit: int = Query(100, ge=1, le=1000)
    ) -> Response:
        """Pipelines, newest first."""
        return _json_list(Pipeline, await in_thread(the_store.list_pipelines, skip, limit))

    @route("GET", "/api/v1/pipelines/{pipeline_id}", response_model=Pipeline)
    async def get_pipeline(pipeline_id: str) -> Response:
        """One pipeline."""
        return _json(await in_thread(the_store.get_pipeline, pipeline_id))

    @route("DELETE", "/api/v1/pipelines/{pipeline_id}", status_code=204)
    async def delete_pipeline(pipeline_id: str) -> Response:
        """Delete a pipeline and its runs."""
        await in_thread(the_store.delete_pipeline, pipeline_id)
        broker.notify_all()
        return Response(status_code=204)

    @route("POST", "/api/v1/pipelines/{pipeline_id}/runs/", response_model=Run)
    async def create_run(pipeline_id: str, body: RunCreate | None = None) -> Response:
        """Start a ``pending`` run of the pipeline."""
        body = body or RunCreate()
        body = body.model_copy(update={"params": redact(body.params)})
        return _json(await in_thread(the_store.create_run, pipeline_id, body))

    # -- runs

    @route("GET", "/api/v1/runs/", response_model=list[Run])
    async def list_runs(
        status_filter: RunStatus | None = None,
        skip: int = Query(0, ge=0, le=_MAX_INT),
        limit: int = Query(100, ge=1, le=1000),
    ) -> Response:
        """Runs, newest first."""
        return _json_list(Run, await in_thread(the_store.list_runs, status_filter, skip, limit))

    @route("GET", "/api/v1/runs/{run_id}", response_model=Run)
    async def get_run(run_id: str) -> Response:
        """One run."""
        return _json(await in_thread(the_store.get_run, run_id))

    @route("PATCH", "/api/v1/runs/{run_id}", response_model=Run)
    async def update_run(run_id: str, body: RunUpdate) -> Response:
        """Change a run's status, result or error (409 for any change of a finished run)."""
        run = await in_thread(reports.update, run_id, body)
        broker.notify(run_id)
        return _json(run)

    @route("DELETE", "/api/v1/runs/{run_id}", status_code=204)
    async def delete_run(run_id: str) -> Response:
        """Delete a run with its checkpoints and logs."""
        await in_thread(the_store.delete_run, run_id)
        broker.notify(run_id)
        return Response(status_code=204)

    @route("POST", "/api/v1/runs/{run_id}/cancel", response_model=RunStatusView)
    async def cancel_run(run_id: str) -> Response:
        """Mark the run cancelled (its actor notices and stops); repeating it changes nothing;
        409 for a completed or failed run."""
        update = cancel_update(await in_thread(the_store.get_run, run_id))
        if update is not None:
            # A run that finished since the read: the store refuses with 409 (TerminalRunError).
            await in_thread(the_store.update_run, run_id, update)
            broker.notify(run_id)
        return _json(RunStatusView(id=run_id, status=RunStatus.CANCELLED, cancel_requested=True))

    @route("GET", "/api/v1/runs/{run_id}/status", response_model=RunStatusView)
    async def run_status(run_id: str) -> Response:
        """The run's status and whether a cancel was asked for (polled by the pipeline actor)."""
        status = status_of(await in_thread(the_store.latest_event, run_id))
        return _json(RunStatusView(id=run_id, status=status, cancel_requested=status is RunStatus.CANCELLED))

    @route("POST", "/api/v1/runs/{run_id}/progress", response_model=ProgressAck)
    async def report_progress(run_id: str, body: ProgressReport) -> Response:
        """Report progress; ``action_progress`` replaces the entry with the same name. Answers
        a small :class:`ProgressAck`, not the run."""
        ack = await in_thread(reports.progress, run_id, body)
        broker.notify(run_id)
        return _json(ack)

    @route("POST", "/api/v1/runs/{run_id}/reports", response_model=ReportBatchAck)
    async def report_batch(run_id: str, body: ReportBatch) -> Response:
        """Beyond the contract: progress reports, checkpoints, logs and run updates, applied in
        order as their own endpoints would; one result per report (:mod:`.reports`)."""
        try:
            ack = await in_thread(reports.batch, run_id, body)
        finally:
            broker.notify(run_id)  # what was applied before an error is seen too
        accepted = zip(body.reports, ack.results, strict=True)
        metrics.count_reports([report.kind for report, result in accepted if result.status < 400])
        return _json(ack)

    @route("GET", "/api/v1/runs/{run_id}/progress", response_model=PipelineProgress)
    async def get_progress(run_id: str) -> Response:
        """The run's progress view."""
        return _json(progress_view(await in_thread(the_store.get_run, run_id)))

    @route("GET", "/api/v1/runs/{run_id}/progress/stream", response_class=StreamingResponse)
    async def stream_progress(
        run_id: str,
        request: Request,
        last_event_id: int | None = Header(default=None, ge=0, le=_MAX_INT),
    ) -> Response:
        """Server-Sent Events: every change of the run, numbered; ends after the terminal one.

        Without ``Last-Event-ID`` the first event is the current state; with it, the events after
        that id are replayed first. When some of those were pruned already, a ``reset`` event
        with the current state comes instead of the replay (and the stream ends after it when
        the run has finished). An id at or past the end of a finished run ends the stream at once.
        """
        # Read before answering, so that an unknown run gets a 404 rather than an empty stream.
        if last_event_id is None:
            first = [await in_thread(the_store.latest_event, run_id)]
            after = 0
        else:
            first = await in_thread(the_store.events_after, run_id, last_event_id)
            after = last_event_id
            if first and first[0].seq > last_event_id + 1:
                # The events right after the client's id were pruned: the replay would skip
                # changes silently. Send the current state and say so.
                first = [reset_event(first[-1])]
            if not first:
                latest = await in_thread(the_store.latest_event, run_id)
                if latest.seq < last_event_id and not latest.terminal:
                    # An id this run never reached (another service's, or garbage): waiting
                    # for it would miss the end. Send the current state and go on from there.
                    first, after = [reset_event(latest)], latest.seq
                elif latest.terminal and latest.seq <= last_event_id:
                    # The client saw the end already: nothing more will ever come.
                    return StreamingResponse(
                        iter(()), media_type="text/event-stream", headers=_STREAM_HEADERS
                    )
        if broker.full():
            return JSONResponse(
                {"detail": f"{broker.max_streams} progress streams are open on this process; retry later"},
                status_code=503,
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        return StreamingResponse(
            _events(request, run_id, first, after), media_type="text/event-stream", headers=_STREAM_HEADERS
        )

    async def _events(
        request: Request, run_id: str, batch: list[RunEvent], last: int
    ) -> AsyncIterator[bytes]:
        app.state.active_streams += 1
        # Counted once the stream runs, so a response that never started holds no place.
        broker.opened()
        try:
            while True:
                if len(batch) > broker.backlog:
                    # Fallen behind (a slow client): send the current state, not every event.
                    batch = batch[-1:]
                for event in batch:
                    yield _encode(event)
                    last = event.seq
                    if stream_ends(event):
                        return
                # Take the waiter before reading, so a change landing in between still wakes us.
                waiter = broker.waiter(run_id)
                try:
                    batch = await in_thread(the_store.events_after, run_id, last)
                except RecordNotFoundError:
                    return  # the run was deleted
                if batch:
                    continue
                if broker.closed:
                    return
                try:
                    await asyncio.wait_for(waiter.wait(), ping_interval)
                except asyncio.TimeoutError:
                    if await request.is_disconnected():
                        return
                    yield _PING
        finally:
            # Runs on normal end, on client disconnect (the response cancels us) and on shutdown.
            app.state.active_streams -= 1
            broker.release()

    # -- checkpoints

    @route("POST", "/api/v1/runs/{run_id}/checkpoints/", response_model=Checkpoint)
    async def create_checkpoint(run_id: str, body: CheckpointCreate) -> Response:
        """Store a checkpoint of the run (409 for a finished run)."""
        return _json(await in_thread(reports.checkpoint, run_id, body))

    @route("GET", "/api/v1/runs/{run_id}/checkpoints/", response_model=list[Checkpoint])
    async def list_checkpoints(run_id: str) -> Response:
        """The run's checkpoints, oldest first."""
        return _json_list(Checkpoint, await in_thread(the_store.list_checkpoints, run_id))

    @route("GET", "/api/v1/runs/{run_id}/checkpoints/latest", response_model=Checkpoint)
    async def latest_checkpoint(run_id: str) -> Response:
        """The run's newest checkpoint; 404 when it has none."""
        return _json(await in_thread(the_store.latest_checkpoint, run_id))

    @route("GET", "/api/v1/runs/{run_id}/checkpoints/{action_name}", response_model=Checkpoint)
    async def action_checkpoint(run_id: str, action_name: str) -> Response:
        """The newest checkpoint of one action; 404 when it has none."""
        return _json(await in_thread(the_store.latest_checkpoint, run_id, action_name))

    # -- logs

    @route("POST", "/api/v1/runs/{run_id}/logs/", response_model=list[LogEntry])
    async def append_logs(run_id: str, body: LogsAppend) -> Response:
        """Store log entries; each gets an ``id`` and a ``timestamp`` (409 for a finished run)."""
        return _json_list(LogEntry, await in_thread(reports.logs, run_id, body))

    @route("GET", "/api/v1/runs/{run_id}/logs/", response_model=list[LogEntry])
    async def list_logs(
        run_id: str,
        action_name: str | None = None,
        level: LogLevel | None = None,
        since: datetime | None = None,
        limit: int = Query(1000, ge=1, le=10_000),
    ) -> Response:
        """Log entries, oldest first; ``since`` keeps those stamped after that time."""
        entries = await in_thread(
            the_store.list_logs,
            run_id,
            action_name=action_name,
            level=level.value if level else None,
            since=utc_or_422(since, "since"),
            limit=limit,
        )
        return _json_list(LogEntry, entries)

    web.install(app, token=token, metrics=metrics)
    return app
