"""``raydrive service --workers N``: N uvicorn worker processes on one socket and one database.

Every worker is a whole service (its own store connections and :class:`RunBroker`); they share
runs through the database, and a report accepted by one reaches the streams of all of them
through the store's change feed (see :mod:`raydrive.service.broker`). The parent opens the
database once before starting them, so a bad location or schema fails once, clearly, and the
workers find the schema current.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import uvicorn
from fastapi import FastAPI

from raydrive.service.client import TOKEN_ENV
from raydrive.service.connections import GuardedH11Protocol
from raydrive.service.db import DB_URL_ENV, open_store

__all__ = ["WORKER_ENV", "serve_workers", "worker_app"]

#: Environment variable carrying the service options to each worker process (JSON, no secrets).
WORKER_ENV = "RAYDRIVE_SERVICE_WORKER_OPTIONS"


def worker_app() -> FastAPI:
    """The app of one worker process (uvicorn's factory), built from :data:`WORKER_ENV`."""
    from raydrive.service.app import create_app

    options: dict[str, Any] = json.loads(os.environ[WORKER_ENV])
    return create_app(**options)


def serve_workers(
    host: str,
    port: int,
    *,
    workers: int,
    db: str,
    token: str | None,
    app_options: dict[str, Any],
    log_level: str = "info",
    access_log: bool = False,
    ready: Callable[[], None] | None = None,
) -> None:
    """Run ``workers`` service processes on ``host:port`` until interrupted (blocks); ``ready``
    is called once the database was opened, before the workers start."""
    open_store(db).close()  # migrate (or refuse) once, before any worker starts
    if ready is not None:
        ready()
    # The location (which may hold a password) reaches the workers in the environment variable
    # meant for it, never in the options JSON nor on a command line.
    os.environ[DB_URL_ENV] = db
    os.environ[WORKER_ENV] = json.dumps(app_options)
    if token is not None:
        # The token reaches the workers the way a user sets it, never in the options JSON.
        os.environ[TOKEN_ENV] = token
    uvicorn.run(
        "raydrive.service.workers:worker_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        access_log=access_log,
        timeout_graceful_shutdown=5,
        http=GuardedH11Protocol,  # header-read timeout, connection bound (raydrive.service.connections)
    )
