"""``/api/v1/runs/{run_id}/logs/``: a run's log entries."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool as in_thread

from raydrive.service.bodies import decode
from raydrive.service.guards import utc_or_422
from raydrive.service.masking import mask_text
from raydrive.service.models import LogEntry, LogLevel, LogsAppend
from raydrive.service.routes.common import ServiceContext, SlashRoutes, json_list

__all__ = ["router"]


def router(service: ServiceContext) -> APIRouter:
    """The log routes of one app."""
    routes = APIRouter()
    route = SlashRoutes(routes)
    store = service.store

    @route("POST", "/api/v1/runs/{run_id}/logs/", response_model=list[LogEntry])
    async def append_logs(run_id: str, request: Request) -> Response:
        """Store log entries; each gets an ``id`` and a ``timestamp`` (409 for a finished run)."""
        raw = await request.body()

        def append() -> Response:  # parse, store and answer in one trip to the thread pool
            return json_list(LogEntry, service.reports.logs(run_id, decode(raw, LogsAppend, service.limits)))

        return await in_thread(append)

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
            store.list_logs,
            run_id,
            action_name=mask_text(action_name),  # stored masked
            level=level.value if level else None,
            since=utc_or_422(since, "since"),
            limit=limit,
        )
        return json_list(LogEntry, entries)

    return routes
