"""``/api/v1/runs/{run_id}/checkpoints/...``: what a run saved to resume from."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool as in_thread

from raydrive.service.bodies import decode
from raydrive.service.masking import mask_text
from raydrive.service.models import Checkpoint, CheckpointCreate
from raydrive.service.routes.common import ServiceContext, SlashRoutes, json_list, json_response

__all__ = ["router"]


def router(service: ServiceContext) -> APIRouter:
    """The checkpoint routes of one app."""
    routes = APIRouter()
    route = SlashRoutes(routes)
    store = service.store

    @route("POST", "/api/v1/runs/{run_id}/checkpoints/", response_model=Checkpoint)
    async def create_checkpoint(run_id: str, request: Request) -> Response:
        """Store a checkpoint of the run (409 for a finished run)."""
        raw = await request.body()

        def create() -> Response:  # parse, store and answer in one trip to the thread pool
            body = decode(raw, CheckpointCreate, service.limits)
            return json_response(service.reports.checkpoint(run_id, body))

        return await in_thread(create)

    @route("GET", "/api/v1/runs/{run_id}/checkpoints/", response_model=list[Checkpoint])
    async def list_checkpoints(run_id: str) -> Response:
        """The run's checkpoints, oldest first."""
        return await in_thread(lambda: json_list(Checkpoint, store.list_checkpoints(run_id)))

    @route("GET", "/api/v1/runs/{run_id}/checkpoints/latest", response_model=Checkpoint)
    async def latest_checkpoint(run_id: str) -> Response:
        """The run's newest checkpoint; 404 when it has none."""
        return json_response(await in_thread(store.latest_checkpoint, run_id))

    @route("GET", "/api/v1/runs/{run_id}/checkpoints/{action_name}", response_model=Checkpoint)
    async def action_checkpoint(run_id: str, action_name: str) -> Response:
        """The newest checkpoint of one action; 404 when it has none."""
        # Names are stored masked: look up the masked name (the same text for an ordinary one).
        return json_response(await in_thread(store.latest_checkpoint, run_id, mask_text(action_name)))

    return routes
