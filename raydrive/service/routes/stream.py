"""``GET /api/v1/runs/{run_id}/progress/stream``: a run's changes as Server-Sent Events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool as in_thread
from starlette.types import Receive, Scope, Send

from raydrive.service.broker import RETRY_AFTER_S, RunBroker
from raydrive.service.guards import reset_event, stream_ends
from raydrive.service.models import MAX_INT
from raydrive.service.routes.common import ServiceContext, SlashRoutes
from raydrive.service.store import RecordNotFoundError, RunEvent

__all__ = ["encode_event", "router"]

_PING = b": ping\n\n"
_STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def encode_event(event: RunEvent) -> bytes:
    """One event as it goes on the wire."""
    return f"id: {event.seq}\nevent: {event.event}\ndata: {event.data}\n\n".encode()


class _AdmittedStream(StreamingResponse):
    """A stream holding a place taken by :meth:`RunBroker.admit`, given back when the response
    ends, however it ends (its body may never have started)."""

    def __init__(self, broker: RunBroker, content: AsyncIterator[bytes], **options: Any) -> None:
        super().__init__(content, **options)
        self._broker = broker

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._broker.release()


def router(service: ServiceContext) -> APIRouter:
    """The progress stream route of one app."""
    routes = APIRouter()
    route = SlashRoutes(routes)
    store, broker = service.store, service.broker

    @route("GET", "/api/v1/runs/{run_id}/progress/stream", response_class=StreamingResponse)
    async def stream_progress(
        run_id: str,
        request: Request,
        last_event_id: int | None = Header(default=None, ge=0, le=MAX_INT),
    ) -> Response:
        """Server-Sent Events: every change of the run, numbered; ends after the terminal one.

        Without ``Last-Event-ID`` the first event is the current state; with it, the events after
        that id are replayed first. When some of those were pruned already, a ``reset`` event
        with the current state comes instead of the replay (and the stream ends after it when
        the run has finished). An id at or past the end of a finished run ends the stream at once.
        """
        # Read before answering, so that an unknown run gets a 404 rather than an empty stream.
        if last_event_id is None:
            first = [await in_thread(store.latest_event, run_id)]
            after = 0
        else:
            first = await in_thread(store.events_after, run_id, last_event_id)
            after = last_event_id
            if first and first[0].seq > last_event_id + 1:
                # The events right after the client's id were pruned: the replay would skip
                # changes silently. Send the current state and say so.
                first = [reset_event(first[-1])]
            if not first:
                latest = await in_thread(store.latest_event, run_id)
                if latest.seq < last_event_id and not latest.terminal:
                    # An id this run never reached (another service's, or garbage): waiting
                    # for it would miss the end. Send the current state and go on from there.
                    first, after = [reset_event(latest)], latest.seq
                elif latest.terminal and latest.seq <= last_event_id:
                    # The client saw the end already: nothing more will ever come.
                    return StreamingResponse(
                        iter(()), media_type="text/event-stream", headers=_STREAM_HEADERS
                    )
        if not broker.admit():
            return JSONResponse(
                {"detail": f"{broker.max_streams} progress streams are open on this process; retry later"},
                status_code=503,
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        return _AdmittedStream(
            broker,
            events(request, run_id, first, after),
            media_type="text/event-stream",
            headers=_STREAM_HEADERS,
        )

    async def events(request: Request, run_id: str, batch: list[RunEvent], last: int) -> AsyncIterator[bytes]:
        service.state.active_streams += 1
        try:
            while True:
                if len(batch) > broker.backlog:
                    # Fallen behind (a slow client): send the current state, not every event.
                    batch = batch[-1:]
                for event in batch:
                    yield encode_event(event)
                    last = event.seq
                    if stream_ends(event):
                        return
                # Take the waiter before reading, so a change landing in between still wakes us.
                waiter = broker.waiter(run_id)
                try:
                    batch = await in_thread(store.events_after, run_id, last)
                except RecordNotFoundError:
                    return  # the run was deleted
                if batch:
                    continue
                if broker.closed:
                    return
                try:
                    await asyncio.wait_for(waiter.wait(), service.ping_interval)
                except asyncio.TimeoutError:
                    if await request.is_disconnected():
                        return
                    yield _PING
        finally:
            # Runs on normal end, on client disconnect (the response cancels us) and on shutdown.
            service.state.active_streams -= 1

    return routes
