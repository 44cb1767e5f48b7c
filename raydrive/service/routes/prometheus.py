"""``GET /metrics``: the service's Prometheus metrics (behind the token when one is set)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool as in_thread

from raydrive.service.metrics import CONTENT_TYPE
from raydrive.service.routes.common import ServiceContext

__all__ = ["router"]


def router(service: ServiceContext) -> APIRouter:
    """The metrics route of one app."""
    routes = APIRouter()

    async def metrics_text() -> Response:
        """Prometheus text format; behind the token when one is set."""
        return Response(await in_thread(service.metrics.render), media_type=CONTENT_TYPE)

    routes.add_api_route("/metrics", metrics_text, methods=["GET"], include_in_schema=False)
    return routes
