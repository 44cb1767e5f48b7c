"""The pipeline service: HTTP API, its embedded store, and its clients.

Importing this package stays light (pydantic and httpx): the server side, which needs FastAPI
and uvicorn, is loaded on first use of :func:`create_app`, :func:`serve` or
:func:`start_service`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from raydrive.service.client import (
    AsyncPipelineServiceClient,
    PipelineServiceClient,
    ProgressEvent,
)

if TYPE_CHECKING:
    from raydrive.service.app import create_app
    from raydrive.service.server import ServiceServer, serve, start_service

__all__ = [
    "AsyncPipelineServiceClient",
    "PipelineServiceClient",
    "ProgressEvent",
    "ServiceServer",
    "create_app",
    "serve",
    "start_service",
]

_LAZY = {
    "create_app": "raydrive.service.app",
    "ServiceServer": "raydrive.service.server",
    "serve": "raydrive.service.server",
    "start_service": "raydrive.service.server",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
