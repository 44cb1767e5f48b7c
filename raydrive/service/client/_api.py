"""The requests of the pipeline service API, built once for both clients (no I/O)."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import quote

from pydantic import BaseModel, TypeAdapter
from pydantic_core import to_jsonable_python

from raydrive.core.pipeline import DEFAULT_SERVICE_URL, PipelineProgress, RunStatus
from raydrive.service.metric_points import RunMetrics
from raydrive.service.models import (
    ActionSpec,
    Checkpoint,
    LogEntry,
    LogEntryCreate,
    Pipeline,
    ProgressAck,
    ReportBatchAck,
    Run,
    RunStatusView,
)

__all__ = ["DEFAULT_URL", "HEADER", "TOKEN_ENV", "UNSET", "ProgressEvent"]

#: Where the clients look for the service unless told otherwise.
DEFAULT_URL = DEFAULT_SERVICE_URL
#: Environment variable holding the bearer token (read by the service and the clients).
TOKEN_ENV = "RAYDRIVE_SERVICE_TOKEN"

_M = TypeVar("_M", bound=BaseModel)


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


#: Marks an argument that was not given (so ``None`` can mean "clear this field").
UNSET: Any = _Unset()


@dataclass(frozen=True)
class ProgressEvent:
    """One event of a run's progress stream.

    ``event`` is ``progress``, ``completed``, ``failed`` or ``cancelled``; ``id`` grows with every
    change of the run; ``progress`` is the run's progress view after that change.
    """

    event: str
    id: int | None
    progress: PipelineProgress

    @property
    def terminal(self) -> bool:
        """True for the run's last event: completed, failed or cancelled, or a ``reset`` (the
        replay's events were pruned: this is the current state) to a finished state."""
        if self.event == "reset":
            return self.progress.status.is_terminal()
        return self.event != "progress"


# -- the requests, built once for both clients -------------------------------------------------


@dataclass
class _Call:
    method: str
    path: str
    parse: Callable[[bytes], Any] | None = None
    json: Any = None
    params: dict[str, Any] | None = None
    idempotent: bool = True
    run_id: str | None = None  # a 404 for this call means "no such run"
    absent_ok: str | None = None  # a 404 whose ``missing`` is this answers None
    optional: bool = False  # beyond the contract: a service without this route answers None
    key: str | None = None  # Idempotency-Key of a create: the same for every retry of it
    headers: dict[str, str] | None = None  # more request headers

    def send_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        headers = dict(self.headers or {})
        if self.key is not None:
            headers[HEADER] = self.key
        if headers:
            kwargs["headers"] = headers
        if self.json is not None:
            kwargs["json"] = self.json
        if self.params:
            kwargs["params"] = self.params
        return kwargs


#: The header a create carries (see :mod:`raydrive.service.idempotency`).
HEADER = "Idempotency-Key"
#: RFC 7240: a progress report asks for the small acknowledgement, not the whole run (whose
#: params and result may be large); a service that does not honour it answers the run, which
#: reads as the acknowledgement too.
_MINIMAL = {"Prefer": "return=minimal"}


def _key(given: str | None) -> str:
    # One key per logical create, made once, so that every retry of it carries the same one.
    return given if given is not None else uuid.uuid4().hex


def _q(value: str) -> str:
    # Ids and action names go into the path: quote everything, so none can change the route.
    return quote(value, safe="")


def _model(model: type[_M]) -> Callable[[bytes], _M]:
    return model.model_validate_json


def _models(model: type[_M]) -> Callable[[bytes], list[_M]]:
    return TypeAdapter(list[model]).validate_json  # type: ignore[valid-type]


def _body(**fields: Any) -> dict[str, Any]:
    return {key: to_jsonable_python(value) for key, value in fields.items() if value is not UNSET}


def _run_path(run_id: str, tail: str = "") -> str:
    return f"/api/v1/runs/{_q(run_id)}{tail}"


_PIPELINE, _PIPELINES = _model(Pipeline), _models(Pipeline)
_RUN, _RUNS = _model(Run), _models(Run)
_CHECKPOINT, _CHECKPOINTS = _model(Checkpoint), _models(Checkpoint)
_LOGS = _models(LogEntry)
_PROGRESS = _model(PipelineProgress)
_ACK = _model(ProgressAck)
_BATCH_ACK = _model(ReportBatchAck)
_STATUS = _model(RunStatusView)
_METRICS = _model(RunMetrics)


class _Api:
    """The endpoints of the contract as :class:`_Call` values."""

    @staticmethod
    def health() -> _Call:
        return _Call("GET", "/health", json.loads)

    @staticmethod
    def create_pipeline(
        name: str,
        actions: Sequence[ActionSpec | Mapping[str, Any]],
        description: str | None,
        idempotency_key: str | None = None,
    ) -> _Call:
        body = _body(name=name, actions=list(actions), description=description)
        return _Call("POST", "/api/v1/pipelines/", _PIPELINE, body, key=_key(idempotency_key))

    @staticmethod
    def list_pipelines(skip: int, limit: int) -> _Call:
        return _Call("GET", "/api/v1/pipelines/", _PIPELINES, params={"skip": skip, "limit": limit})

    @staticmethod
    def get_pipeline(pipeline_id: str) -> _Call:
        return _Call("GET", f"/api/v1/pipelines/{_q(pipeline_id)}", _PIPELINE)

    @staticmethod
    def delete_pipeline(pipeline_id: str) -> _Call:
        return _Call("DELETE", f"/api/v1/pipelines/{_q(pipeline_id)}")

    @staticmethod
    def create_run(
        pipeline_id: str,
        params: Mapping[str, Any] | None,
        work_dir: str | os.PathLike[str] | None,
        idempotency_key: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> _Call:
        body = _body(
            params=dict(params or {}), work_dir=os.fspath(work_dir) if work_dir is not None else None
        )
        # Fields beyond the contract (fingerprint, resumed_from, max_attempts) only when given,
        # so a request to an older service is the contract's.
        body.update(_body(**{k: v for k, v in (extra or {}).items() if v is not None}))
        path = f"/api/v1/pipelines/{_q(pipeline_id)}/runs/"
        return _Call("POST", path, _RUN, body, key=_key(idempotency_key))

    @staticmethod
    def list_runs(status: RunStatus | str | None, skip: int, limit: int) -> _Call:
        params: dict[str, Any] = {"skip": skip, "limit": limit}
        if status is not None:
            params["status_filter"] = RunStatus(status).value
        return _Call("GET", "/api/v1/runs/", _RUNS, params=params)

    @staticmethod
    def get_run(run_id: str) -> _Call:
        return _Call("GET", _run_path(run_id), _RUN, run_id=run_id)

    @staticmethod
    def update_run(run_id: str, **fields: Any) -> _Call:
        return _Call("PATCH", _run_path(run_id), _RUN, _body(**fields), run_id=run_id)

    @staticmethod
    def delete_run(run_id: str) -> _Call:
        return _Call("DELETE", _run_path(run_id), run_id=run_id)

    @staticmethod
    def report_progress(run_id: str, **fields: Any) -> _Call:
        # Idempotent: a report sets fields and replaces an action entry by name.
        path = _run_path(run_id, "/progress")
        return _Call("POST", path, _ACK, _body(**fields), run_id=run_id, headers=_MINIMAL)

    @staticmethod
    def cancel_run(run_id: str) -> _Call:
        # Idempotent: cancelling a cancelled run changes nothing.
        return _Call("POST", _run_path(run_id, "/cancel"), _STATUS, run_id=run_id)

    @staticmethod
    def get_run_status(run_id: str) -> _Call:
        return _Call("GET", _run_path(run_id, "/status"), _STATUS, run_id=run_id)

    @staticmethod
    def get_progress(run_id: str) -> _Call:
        return _Call("GET", _run_path(run_id, "/progress"), _PROGRESS, run_id=run_id)

    @staticmethod
    def create_checkpoint(run_id: str, idempotency_key: str | None = None, **fields: Any) -> _Call:
        return _Call(
            "POST",
            _run_path(run_id, "/checkpoints/"),
            _CHECKPOINT,
            _body(**fields),
            run_id=run_id,
            key=_key(idempotency_key),
        )

    @staticmethod
    def list_checkpoints(run_id: str) -> _Call:
        return _Call("GET", _run_path(run_id, "/checkpoints/"), _CHECKPOINTS, run_id=run_id)

    @staticmethod
    def latest_checkpoint(run_id: str, action_name: str | None) -> _Call:
        tail = "latest" if action_name is None else _q(action_name)
        return _Call(
            "GET",
            _run_path(run_id, f"/checkpoints/{tail}"),
            _CHECKPOINT,
            run_id=run_id,
            absent_ok="checkpoint",
        )

    @staticmethod
    def append_logs(
        run_id: str,
        entries: Sequence[LogEntryCreate | Mapping[str, Any]],
        idempotency_key: str | None = None,
    ) -> _Call:
        return _Call(
            "POST",
            _run_path(run_id, "/logs/"),
            _LOGS,
            _body(entries=list(entries)),
            run_id=run_id,
            key=_key(idempotency_key),
        )

    @staticmethod
    def send_reports(
        run_id: str, reports: Sequence[Mapping[str, Any]], idempotency_key: str | None = None
    ) -> _Call:
        return _Call(
            "POST",
            _run_path(run_id, "/reports"),
            _BATCH_ACK,
            {"reports": to_jsonable_python(list(reports))},
            run_id=run_id,
            key=_key(idempotency_key),
            optional=True,
        )

    @staticmethod
    def get_metrics(
        run_id: str, key: str | None, action: str | None, since_step: int | None, max_points: int | None
    ) -> _Call:
        given = (("key", key), ("action", action), ("since_step", since_step), ("max_points", max_points))
        params = {name: value for name, value in given if value is not None}
        path = _run_path(run_id, "/metrics")
        return _Call("GET", path, _METRICS, params=params, run_id=run_id, optional=True)

    @staticmethod
    def list_logs(
        run_id: str, action_name: str | None, level: str | None, since: datetime | None, limit: int | None
    ) -> _Call:
        params = {
            key: value
            for key, value in (
                ("action_name", action_name),
                ("level", str(level) if level else None),
                ("since", since.isoformat() if since else None),
                ("limit", limit),
            )
            if value is not None
        }
        return _Call("GET", _run_path(run_id, "/logs/"), _LOGS, params=params, run_id=run_id)
