"""``/api/v1/pipelines/...``: pipeline definitions."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool as in_thread

from raydrive.service.bodies import decode
from raydrive.service.masking import mask_pipeline
from raydrive.service.models import MAX_INT, Pipeline, PipelineCreate
from raydrive.service.routes.common import ServiceContext, SlashRoutes, json_list, json_response

__all__ = ["router"]


def router(service: ServiceContext) -> APIRouter:
    """The pipeline routes of one app."""
    routes = APIRouter()
    route = SlashRoutes(routes)
    store = service.store

    @route("POST", "/api/v1/pipelines/", response_model=Pipeline)
    async def create_pipeline(request: Request) -> Response:
        """Store a pipeline definition (body: :class:`PipelineCreate`)."""
        raw = await request.body()

        def create() -> Response:  # parse, mask, store and answer in one trip to the thread pool
            body = decode(raw, PipelineCreate, service.limits)
            return json_response(store.create_pipeline(mask_pipeline(body)))

        return await in_thread(create)

    @route("GET", "/api/v1/pipelines/", response_model=list[Pipeline])
    async def list_pipelines(
        skip: int = Query(0, ge=0, le=MAX_INT), limit: int = Query(100, ge=1, le=1000)
    ) -> Response:
        """Pipelines, newest first."""
        return json_list(Pipeline, await in_thread(store.list_pipelines, skip, limit))

    @route("GET", "/api/v1/pipelines/{pipeline_id}", response_model=Pipeline)
    async def get_pipeline(pipeline_id: str) -> Response:
        """One pipeline."""
        return json_response(await in_thread(store.get_pipeline, pipeline_id))

    @route("DELETE", "/api/v1/pipelines/{pipeline_id}", status_code=204)
    async def delete_pipeline(pipeline_id: str) -> Response:
        """Delete a pipeline and its runs."""
        await in_thread(store.delete_pipeline, pipeline_id)
        service.broker.notify_all()
        return Response(status_code=204)

    return routes
