"""Routes of the web page: the pages, login and the page's ``/ui/api`` reads."""

from __future__ import annotations

import hmac
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader
from starlette.concurrency import run_in_threadpool as in_thread
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from raydrive.core.pipeline import RunStatus
from raydrive.core.redaction import redact, redact_text
from raydrive.service.auth import (
    CSRF_HEADER,
    SESSION_COOKIE,
    LoginThrottle,
    Sessions,
    client_of,
    too_many_attempts,
)
from raydrive.service.metric_points import MAX_KEY_LENGTH, thinned
from raydrive.service.models import Run
from raydrive.service.store import RecordNotFoundError, progress_view
from raydrive.service.web.timeline import action_attempts

__all__ = ["install"]

_HERE = Path(__file__).parent
_ENV = Environment(loader=FileSystemLoader(_HERE / "templates"), autoescape=True)
# Only this origin: no inline script, no CDN, nothing framed elsewhere.
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; "
    "base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_SCAN = 2000  # most runs read per query when filtering by pipeline name
_MAX_PIPELINES = 10_000
_MAX_ROW_METRICS = 100  # metric keys a runs-page row carries (the chooser offers these)
_MAX_ATTEMPT_LINES = 5000  # warning lines read for the timeline's action attempts
_RUN_IDS = Query(None, max_length=500)  # the runs of one sparklines request (a page's rows)


def _page(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    html = _ENV.get_template(name).render(csrf_header=CSRF_HEADER, **context)
    return HTMLResponse(html, status_code=status_code, headers=_PAGE_HEADERS)


def _local_next(target: str | None) -> str:
    # Only a path of this service: an absolute or scheme-relative URL would be an open redirect.
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    parts = urlsplit(target)
    return "/" if parts.scheme or parts.netloc else target


def _text(value: str | None) -> str | None:
    return redact_text(value) if value else value


def _run_row(run: Run, pipeline_name: str | None) -> dict[str, Any]:
    # The row's keys are fixed; only its free-text values can hold a secret.
    view = progress_view(run)
    return {
        "id": _text(run.id),
        "pipeline_id": _text(run.pipeline_id),
        "pipeline_name": _text(pipeline_name),
        "status": run.status.value,
        "current_action": _text(run.current_action),
        "progress": view.overall_progress,
        "actions_done": view.completed_actions,
        "actions_total": view.total_actions,
        "created_at": run.created_at.isoformat(),
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "completed_at": run.completed_at.isoformat() if run.completed_at else None,
        "metrics": _latest_metrics(run),
    }


def _latest_metrics(run: Run) -> dict[str, float]:
    """Each numeric metric's latest value (a key several actions report: the last action's)."""
    latest: dict[str, float] = {}
    for entry in run.progress:
        for key, value in entry.metrics.items():
            if key == "step" or isinstance(value, bool) or not isinstance(value, int | float):
                continue
            name = redact_text(key)
            if len(latest) < _MAX_ROW_METRICS or name in latest:
                latest[name] = value
    return latest


class _RedactedStream:
    """The service's own progress stream of a run, each event's data redacted (raw ASGI route)."""

    def __init__(self, app: FastAPI) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        run_id = scope["path_params"]["run_id"]
        path = f"/api/v1/runs/{run_id}/progress/stream"
        inner = dict(scope, path=path, raw_path=path.encode(), path_params={})
        inner.pop("route", None)

        async def redacting_send(message: Message) -> None:
            if message["type"] == "http.response.body" and message.get("body"):
                message = dict(message, body=_redact_events(message["body"]))
            await send(message)

        # Straight to the router: auth, Host check and metrics already ran for this request.
        await self._app.router(inner, receive, redacting_send)


def _redact_events(body: bytes) -> bytes:
    out = []
    for line in body.decode().split("\n"):
        if line.startswith("data: "):
            try:
                line = "data: " + json.dumps(redact(json.loads(line[6:])), separators=(",", ":"))
            except ValueError:
                line = "data: " + redact_text(line[6:])
        out.append(line)
    return "\n".join(out).encode()


def install(app: FastAPI, *, token: str | None) -> None:
    """Add the page, its login and the ``/ui/api`` reads to the service ``app``."""
    # Sessions live in the store too, so logout ends them on the server (raydrive.service.auth).
    signer: Sessions | None = app.state.sessions if token else None
    throttle: LoginThrottle = app.state.throttle
    names: dict[str, str] = {}  # pipeline id -> name; pipelines never change name

    def store() -> Any:
        return app.state.store

    def pipeline_name(pipeline_id: str) -> str | None:
        if pipeline_id not in names:
            try:
                names[pipeline_id] = store().get_pipeline(pipeline_id).name
            except RecordNotFoundError:
                return None
        return names.get(pipeline_id)

    def all_pipelines() -> list[Any]:
        found, skip = [], 0
        while skip < _MAX_PIPELINES:
            page = store().list_pipelines(skip, 1000)
            found.extend(page)
            if len(page) < 1000:
                break
            skip += 1000
        return found

    def runs_page(status: RunStatus | None, pipeline: str | None, skip: int, limit: int) -> dict[str, Any]:
        pipelines = all_pipelines()
        for p in pipelines:
            names[p.id] = p.name
        if pipeline:
            ids = {p.id for p in pipelines if p.name == pipeline}
            runs: list[Run] = []
            passed, offset, chunk = 0, 0, max(100, 2 * (skip + limit))
            # The store filters by status only: read newest first in growing chunks until the page
            # is full (a pipeline with many runs fills it from the first chunk).
            while ids and len(runs) <= limit:
                batch = store().list_runs(status, offset, chunk)
                for run in batch:
                    if run.pipeline_id not in ids:
                        continue
                    if passed < skip:
                        passed += 1
                    elif len(runs) <= limit:
                        runs.append(run)
                if len(batch) < chunk:
                    break
                offset += chunk
                chunk = min(2 * chunk, _SCAN)
        else:
            runs = store().list_runs(status, skip, limit + 1)
        return {
            "runs": [_run_row(r, pipeline_name(r.pipeline_id)) for r in runs[:limit]],
            "has_more": len(runs) > limit,
            "skip": skip,
            "limit": limit,
            "pipelines": sorted({redact_text(p.name) for p in pipelines}),
        }

    def run_detail(run_id: str) -> dict[str, Any]:
        run = store().get_run(run_id)
        checkpoints = store().list_checkpoints(run_id)
        doc = run.model_dump(mode="json")
        doc["overall_progress"] = progress_view(run).overall_progress
        warnings = store().list_logs(run_id, level="warning", limit=_MAX_ATTEMPT_LINES)
        return {
            "run": redact(doc),
            "pipeline_name": redact_text(pipeline_name(run.pipeline_id) or ""),
            "checkpoints": [redact(c.model_dump(mode="json")) for c in checkpoints],
            "action_attempts": redact(action_attempts(run, warnings)),
        }

    def sparklines(key: str, run_ids: list[str], points: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for run_id in dict.fromkeys(run_ids):
            try:
                found = store().metric_series(run_id, key=key)
            except RecordNotFoundError:
                continue
            if not found:
                continue
            # A key several actions report: the line of the action whose last step is the latest.
            line = max(found, key=lambda series: series.steps[-1])
            out[redact_text(run_id)] = {"values": thinned(line, points).values}
        return {"key": redact_text(key), "runs": out}

    def logs_after(run_id: str, after: int, since: datetime | None, limit: int) -> list[dict[str, Any]]:
        # The store pages logs by time and a batch shares one timestamp: ask from just before
        # the last entry the page has, and drop what it has by id (ids grow).
        since = since - timedelta(milliseconds=1) if since is not None else None
        entries = store().list_logs(run_id, since=since, limit=10_000 if since else limit)
        out = []
        for entry in entries:
            if entry.id.isdigit() and int(entry.id) <= after:
                continue
            doc = entry.model_dump(mode="json")
            doc["message"] = redact_text(entry.message)
            doc["action_name"] = _text(entry.action_name)
            out.append(doc)
            if len(out) >= limit:
                break
        return out

    # -- pages

    @app.get("/", include_in_schema=False)
    async def runs_html() -> HTMLResponse:
        return _page("runs.html", statuses=[s.value for s in RunStatus], auth=bool(token))

    @app.get("/runs/{run_id}", include_in_schema=False)
    async def run_html(run_id: str) -> HTMLResponse:
        return _page("run.html", run_id=run_id, auth=bool(token))

    @app.get("/compare", include_in_schema=False)
    async def compare_html() -> HTMLResponse:
        return _page("compare.html", auth=bool(token))

    @app.get("/login", include_in_schema=False)
    async def login_form(next: str | None = None) -> Response:
        if signer is None:
            return RedirectResponse(_local_next(next), status_code=303)
        return _page("login.html", next=_local_next(next), error=None)

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        if signer is None or token is None:
            return RedirectResponse("/", status_code=303)
        body = await request.body()
        form = parse_qs(body[:8192].decode("utf-8", "replace"))
        candidate = (form.get("token") or [""])[0]
        target = _local_next((form.get("next") or ["/"])[0])
        wait = throttle.retry_after(client_of(request.scope))
        if wait > 0:  # too many wrong tokens from this client: not even checked (Grafana)
            return too_many_attempts(wait)
        if not hmac.compare_digest(candidate.encode(), token.encode()):
            throttle.failed(client_of(request.scope))
            return _page("login.html", status_code=401, next=target, error="That token is not right.")
        response = RedirectResponse(target, status_code=303, headers=_PAGE_HEADERS)
        response.set_cookie(
            SESSION_COOKIE,
            await in_thread(signer.issue),
            max_age=signer.max_age,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )
        return response

    @app.post("/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        session = request.cookies.get(SESSION_COOKIE)
        if signer is not None and session:
            await in_thread(signer.revoke, session)  # the cookie stops working everywhere
        response = JSONResponse({"status": "logged out"})
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        return response

    app.mount("/static", StaticFiles(directory=_HERE / "static"), name="web-static")

    # -- what the page reads

    @app.get("/ui/api/runs", include_in_schema=False)
    async def ui_runs(
        status: RunStatus | None = None,
        pipeline: str | None = Query(None, max_length=512),
        skip: int = Query(0, ge=0, le=10_000_000),
        limit: int = Query(50, ge=1, le=500),
    ) -> JSONResponse:
        return JSONResponse(await in_thread(runs_page, status, pipeline or None, skip, limit))

    @app.get("/ui/api/runs/{run_id}", include_in_schema=False)
    async def ui_run(run_id: str) -> JSONResponse:
        return JSONResponse(await in_thread(run_detail, run_id))

    @app.get("/ui/api/sparklines", include_in_schema=False)
    async def ui_sparklines(
        key: str = Query(min_length=1, max_length=MAX_KEY_LENGTH),
        run: list[str] | None = _RUN_IDS,
        points: int = Query(60, ge=2, le=500),
    ) -> JSONResponse:
        """Each run's line of metric ``key`` for the runs page (thinned to ``points``)."""
        return JSONResponse(await in_thread(sparklines, key, run or [], points))

    @app.get("/ui/api/runs/{run_id}/logs", include_in_schema=False)
    async def ui_logs(
        run_id: str,
        after: int = Query(0, ge=0, le=2**62),
        since: datetime | None = None,
        limit: int = Query(1000, ge=1, le=5000),
    ) -> JSONResponse:
        return JSONResponse(await in_thread(logs_after, run_id, after, since, limit))

    app.router.routes.append(Route("/ui/api/runs/{run_id}/stream", _RedactedStream(app), methods=["GET"]))
