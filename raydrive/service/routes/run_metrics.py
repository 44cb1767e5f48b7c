"""``GET /api/v1/runs/{run_id}/metrics``: a run's metric history, for the page and for notebooks.

Every numeric metric an action reported (``set_metrics``/``log_metric``), one series per action
and key, each a column of steps and a column of values in step order. ``key`` and ``action``
narrow it, ``since_step`` keeps the steps after one (how a live reader catches up), and
``max_points`` thins each series above that many points to the lowest and highest point of each
stretch of steps (what the page asks for: a chart has fewer pixels than 10,000 points).
"""

from __future__ import annotations

from fastapi import APIRouter, Query
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool as in_thread

from raydrive.core.redaction import redact_text
from raydrive.service.metric_points import MAX_KEY_LENGTH, MetricSeries, RunMetrics, thinned
from raydrive.service.models import MAX_INT
from raydrive.service.routes.common import ServiceContext, SlashRoutes, json_response

__all__ = ["router"]


def _named(series: MetricSeries) -> MetricSeries:
    # The one redaction rule for the names shown (the page draws them); values are numbers.
    action, key = redact_text(series.action), redact_text(series.key)
    if (action, key) == (series.action, series.key):
        return series
    return series.model_copy(update={"action": action, "key": key})


def router(service: ServiceContext) -> APIRouter:
    """The metric history route of one app."""
    routes = APIRouter()
    route = SlashRoutes(routes)
    store = service.store

    @route("GET", "/api/v1/runs/{run_id}/metrics", response_model=RunMetrics)
    async def run_metrics(
        run_id: str,
        key: str | None = Query(None, min_length=1, max_length=MAX_KEY_LENGTH),
        action: str | None = Query(None, min_length=1, max_length=512),
        since_step: int | None = Query(None, ge=-MAX_INT, le=MAX_INT),
        max_points: int | None = Query(None, ge=2, le=1_000_000),
    ) -> Response:
        """The run's metric series (404 for an unknown run; an empty list when none was reported)."""
        found = await in_thread(store.metric_series, run_id, key=key, action=action, since_step=since_step)
        series = [_named(thinned(s, max_points)) for s in found]
        return json_response(RunMetrics(run_id=run_id, series=series))

    return routes
