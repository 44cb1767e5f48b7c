"""The pipeline service as a FastAPI application (the HTTP contract of ``PIPELINE_SERVICE_API.md``).

This module only assembles the app: its middlewares, error handlers and one router per resource
(:mod:`raydrive.service.routes`, and the web page of :mod:`raydrive.service.web`).

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
import os
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from raydrive.service import web
from raydrive.service.auth import AuthMiddleware, HostCheckMiddleware, LoginThrottle, Sessions
from raydrive.service.broker import DEFAULT_MAX_STREAMS, RunBroker
from raydrive.service.client import TOKEN_ENV
from raydrive.service.config import check_retain_days
from raydrive.service.guards import CatchAllMiddleware, install_error_handlers
from raydrive.service.idempotency import IdempotencyKeys, IdempotencyMiddleware
from raydrive.service.limits import BodyLimitMiddleware, Limits
from raydrive.service.metrics import ServiceMetrics, TimedStore
from raydrive.service.reports import RunReports
from raydrive.service.routes import (
    checkpoints,
    health,
    logs,
    pipelines,
    prometheus,
    run_metrics,
    runs,
    stream,
)
from raydrive.service.routes.common import ServiceContext
from raydrive.service.store import PipelineStore
from raydrive.service.text import TextGuardMiddleware

__all__ = ["TOKEN_ENV", "RunBroker", "create_app", "resolve_token"]


def _default_store(location: str | os.PathLike[str] | None) -> PipelineStore:
    from raydrive.service.db import open_store

    return open_store(location)  # type: ignore[return-value]


def resolve_token(token: str | None) -> str | None:
    """The token in force: ``token`` when given, else ``$RAYDRIVE_SERVICE_TOKEN``; "" means none."""
    return (token if token is not None else os.environ.get(TOKEN_ENV)) or None


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
        every ``prune_interval`` seconds (see :mod:`raydrive.service.retention`); None or 0
        keeps every run; under 1 day is refused (:mod:`raydrive.service.config`).
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
    retain_days = check_retain_days(retain_days)
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
    app.state.metrics = metrics
    app.state.limits = limits
    app.state.idempotency = IdempotencyKeys(raw_store)
    app.add_middleware(IdempotencyMiddleware, keys=app.state.idempotency)
    # Innermost but for the keys: a body is only read once Host and token were accepted.
    app.add_middleware(BodyLimitMiddleware, limits=limits)
    # A NUL or a lone surrogate in a path or query answers 422 on every backend (no 500).
    app.add_middleware(TextGuardMiddleware)
    app.state.throttle = LoginThrottle()
    app.state.sessions = Sessions(token, raw_store) if token else None
    if token:
        app.add_middleware(
            AuthMiddleware, token=token, sessions=app.state.sessions, throttle=app.state.throttle
        )
    # Added last, so it runs first: a request for another Host is refused before anything else.
    app.add_middleware(HostCheckMiddleware, allowed_hosts=allowed_hosts)
    app.add_middleware(metrics.middleware)
    app.add_middleware(CatchAllMiddleware)

    install_error_handlers(app)

    service = ServiceContext(
        store=the_store,
        broker=broker,
        reports=RunReports(the_store, limits),
        metrics=metrics,
        limits=limits,
        state=app.state,
        ping_interval=ping_interval,
    )
    app.include_router(health.router())
    for resource in (pipelines, runs, stream, checkpoints, logs, prometheus, run_metrics):
        app.include_router(resource.router(service))
    web.install(app, token=token)
    return app
