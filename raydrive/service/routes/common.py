"""What every router of the service shares: the app's collaborators and how answers are written."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BaseModel, TypeAdapter
from starlette.datastructures import State

from raydrive.service.broker import RunBroker
from raydrive.service.limits import Limits
from raydrive.service.metrics import ServiceMetrics
from raydrive.service.models import Checkpoint, LogEntry, Pipeline, Run
from raydrive.service.reports import RunReports
from raydrive.service.store import PipelineStore

__all__ = ["ServiceContext", "SlashRoutes", "json_list", "json_response", "wants_minimal"]

_Endpoint = TypeVar("_Endpoint", bound=Callable[..., Any])
_LISTS: dict[type, TypeAdapter[Any]] = {
    model: TypeAdapter(list[model]) for model in (Pipeline, Run, Checkpoint, LogEntry)
}


@dataclass
class ServiceContext:
    """The collaborators of one service app that its routers use.

    :param store: the store, its writes timed for ``/metrics``.
    :param broker: wakes the progress streams.
    :param reports: the report writes (progress, checkpoints, logs, updates).
    :param metrics: the app's Prometheus metrics.
    :param limits: the body limits in force.
    :param state: the app's ``state`` (``active_streams`` is kept there).
    :param ping_interval: seconds of quiet after which a progress stream sends ``: ping``.
    """

    store: PipelineStore
    broker: RunBroker
    reports: RunReports
    metrics: ServiceMetrics
    limits: Limits
    state: State
    ping_interval: float = 15.0


def json_response(value: BaseModel, headers: dict[str, str] | None = None) -> Response:
    """``value`` as a JSON response, serialized by pydantic directly."""
    # The values are already validated models, so FastAPI's second validation pass through the
    # response model would only cost time on the hot path.
    return Response(value.model_dump_json(), media_type="application/json", headers=headers)


def wants_minimal(prefer: str | None) -> bool:
    """True when a ``Prefer`` header (RFC 7240) asks for ``return=minimal``.

    Preferences are comma-separated, their names case-insensitive, a value may be quoted and be
    followed by ``;`` parameters; one header may repeat (joined by commas).
    """
    if not prefer:
        return False
    for preference in prefer.split(","):
        name, _, value = preference.split(";", 1)[0].partition("=")
        if name.strip().lower() == "return" and value.strip().strip('"').lower() == "minimal":
            return True
    return False


def json_list(model: type[BaseModel], values: list[Any]) -> Response:
    """A list of ``model`` values as a JSON response."""
    return Response(_LISTS[model].dump_json(values), media_type="application/json")


class SlashRoutes:
    """Registers each path of ``router`` both with and without its trailing slash (the contract
    accepts both forms; no redirect, so a body is never lost)."""

    def __init__(self, router: APIRouter) -> None:
        self.router = router

    def __call__(self, method: str, path: str, **options: Any) -> Callable[[_Endpoint], _Endpoint]:
        def register(endpoint: _Endpoint) -> _Endpoint:
            twin = path[:-1] if path.endswith("/") else f"{path}/"
            self.router.add_api_route(path, endpoint, methods=[method], **options)
            self.router.add_api_route(twin, endpoint, methods=[method], include_in_schema=False, **options)
            return endpoint

        return register
