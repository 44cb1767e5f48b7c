"""Clients of the pipeline service: :class:`PipelineServiceClient` (sync) and
:class:`AsyncPipelineServiceClient` (asyncio), with the same methods.

Both retry what is safe to retry: reads, deletes, PATCH and progress reports (which set fields
and so are idempotent) on connection errors and 5xx answers, with exponential backoff and a
bounded number of attempts; creates (pipelines, runs, checkpoints, logs) only when the request
provably never reached the service (the connection could not be opened). Errors map to the
project's own types:

- 404 for a run: :class:`~raydrive.core.errors.JobNotFoundError`; any other error status:
  :class:`~raydrive.core.errors.ServiceError` with ``status_code`` and ``detail``;
- no service reachable: :class:`~raydrive.core.errors.ServiceUnavailableError`, naming the URL.

The bearer token (argument, or ``$RAYDRIVE_SERVICE_TOKEN``) only ever travels in the
``Authorization`` header of the underlying httpx client: no repr, log line or error message
shows it.

Progress streams (:meth:`~PipelineServiceClient.stream_progress`,
:meth:`~PipelineServiceClient.stream_events`) reconnect after a dropped connection or a service
restart with ``Last-Event-ID``, deliver each event once and in order, end after the run's
terminal event, and give up after ``timeout`` seconds overall.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import httpx_sse
from pydantic import BaseModel, TypeAdapter
from pydantic_core import to_jsonable_python

from raydrive.core.errors import (
    ExecutionTimeoutError,
    JobNotFoundError,
    ServiceError,
    ServiceUnavailableError,
)
from raydrive.core.pipeline import ActionProgress, PipelineProgress, RunStatus
from raydrive.service.models import (
    ActionSpec,
    Checkpoint,
    LogEntry,
    LogEntryCreate,
    Pipeline,
    ProgressAck,
    Run,
    RunStatusView,
)

__all__ = [
    "DEFAULT_URL",
    "TOKEN_ENV",
    "AsyncPipelineServiceClient",
    "PipelineServiceClient",
    "ProgressEvent",
]

#: Where the clients look for the service unless told otherwise.
DEFAULT_URL = "http://localhost:8100"
#: Environment variable holding the bearer token (read by the service and the clients).
TOKEN_ENV = "RAYDRIVE_SERVICE_TOKEN"

_log = logging.getLogger(__name__)
_M = TypeVar("_M", bound=BaseModel)
_Self = TypeVar("_Self", bound="_ClientBase")


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

    def send_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        if self.json is not None:
            kwargs["json"] = self.json
        if self.params:
            kwargs["params"] = self.params
        return kwargs


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
_STATUS = _model(RunStatusView)


class _Api:
    """The endpoints of the contract as :class:`_Call` values."""

    @staticmethod
    def health() -> _Call:
        return _Call("GET", "/health", json.loads)

    @staticmethod
    def create_pipeline(
        name: str, actions: Sequence[ActionSpec | Mapping[str, Any]], description: str | None
    ) -> _Call:
        body = _body(name=name, actions=list(actions), description=description)
        return _Call("POST", "/api/v1/pipelines/", _PIPELINE, body, idempotent=False)

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
        pipeline_id: str, params: Mapping[str, Any] | None, work_dir: str | os.PathLike[str] | None
    ) -> _Call:
        body = _body(
            params=dict(params or {}), work_dir=os.fspath(work_dir) if work_dir is not None else None
        )
        return _Call("POST", f"/api/v1/pipelines/{_q(pipeline_id)}/runs/", _RUN, body, idempotent=False)

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
        return _Call("POST", _run_path(run_id, "/progress"), _ACK, _body(**fields), run_id=run_id)

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
    def create_checkpoint(run_id: str, **fields: Any) -> _Call:
        return _Call(
            "POST",
            _run_path(run_id, "/checkpoints/"),
            _CHECKPOINT,
            _body(**fields),
            idempotent=False,
            run_id=run_id,
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
    def append_logs(run_id: str, entries: Sequence[LogEntryCreate | Mapping[str, Any]]) -> _Call:
        return _Call(
            "POST",
            _run_path(run_id, "/logs/"),
            _LOGS,
            _body(entries=list(entries)),
            idempotent=False,
            run_id=run_id,
        )

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


# -- what both clients share: configuration, retry policy, answers, stream bookkeeping ----------


def _detail(response: httpx.Response) -> Any:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    return body.get("detail", body) if isinstance(body, dict) else body


def _missing(response: httpx.Response) -> str | None:
    # The service names what a 404 is about: "pipeline", "run" or "checkpoint".
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("missing") if isinstance(body, dict) else None


def _describe(detail: Any) -> str:
    if isinstance(detail, list):  # FastAPI's 422: name each field
        parts = []
        for item in detail:
            if isinstance(item, dict):
                loc = ".".join(str(p) for p in item.get("loc", ())[1:]) or "body"
                parts.append(f"{loc}: {item.get('msg', item)}")
            else:
                parts.append(str(item))
        return "; ".join(parts)
    return str(detail)


class _ClientBase:
    def __init__(
        self,
        base_url: str,
        token: str | None,
        timeout: float,
        retries: int,
        backoff: float,
        max_backoff: float,
        stream_read_timeout: float,
        reconnect_timeout: float,
        http_factory: Callable[..., Any],
        transport: Any,
    ) -> None:
        self.base_url = str(base_url).rstrip("/")
        self.retries = max(0, retries)
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.reconnect_timeout = reconnect_timeout
        token = token if token is not None else os.environ.get(TOKEN_ENV)
        self._authenticated = bool(token)
        self._stream_timeout = httpx.Timeout(timeout, read=stream_read_timeout)
        # The token goes straight into the httpx client's default headers and nowhere else.
        self._http = http_factory(
            base_url=self.base_url,
            transport=transport,
            timeout=httpx.Timeout(timeout),
            headers={"Authorization": f"Bearer {token}"} if token else {},
        )

    def __repr__(self) -> str:
        auth = ", token=<set>" if self._authenticated else ""
        return f"{type(self).__name__}({self.base_url!r}{auth})"

    def _delay(self, attempt: int) -> float:
        # Jitter spreads the retries of many reporters that failed at the same moment.
        return min(self.max_backoff, self.backoff * 2**attempt) * random.uniform(0.5, 1.0)

    def _retryable(
        self, call: _Call, attempt: int, *, error: Exception | None = None, status: int | None = None
    ) -> bool:
        if attempt >= self.retries:
            return False
        if error is not None:
            if isinstance(error, httpx.UnsupportedProtocol):
                return False
            # A create is repeated only when it cannot have reached the service.
            never_sent = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
            return call.idempotent or isinstance(error, never_sent)
        return call.idempotent and status is not None and status >= 500

    def _log_retry(self, call: _Call, attempt: int, reason: object) -> float:
        delay = self._delay(attempt)
        _log.debug("retrying %s %s in %.2fs after %s", call.method, call.path, delay, reason)
        return delay

    def _unavailable(self, path: str, error: Exception) -> ServiceUnavailableError:
        url = f"{self.base_url}{path}"
        return ServiceUnavailableError(
            f"the pipeline service at {self.base_url} cannot be reached "
            f"({type(error).__name__}: {error}); start one with `raydrive service` or pass the "
            "right base_url",
            url=url,
        )

    def _answer(self, call: _Call, response: httpx.Response) -> Any:
        if response.is_success:
            if call.parse is None or response.status_code == 204:
                return None
            return call.parse(response.content)
        if call.absent_ok and response.status_code == 404 and _missing(response) == call.absent_ok:
            return None  # e.g. "this run has no checkpoint yet"
        raise self._error(call.method, call.path, response, call.run_id)

    def _error(
        self, method: str, path: str, response: httpx.Response, run_id: str | None = None
    ) -> ServiceError | JobNotFoundError:
        status = response.status_code
        if status == 404 and run_id is not None and _missing(response) in (None, "run"):
            return JobNotFoundError(
                f"no pipeline run {run_id!r} on the pipeline service at {self.base_url}", job_id=run_id
            )
        detail = _detail(response)
        hint = f" (set {TOKEN_ENV} or pass token= to the client)" if status == 401 else ""
        return ServiceError(
            f"pipeline service answered {status} to {method} {path}: {_describe(detail)}{hint}",
            status_code=status,
            detail=detail,
            url=f"{self.base_url}{path}",
        )


class _Reconnect(Exception):
    """Internal: the stream request got a 5xx answer; try again after a pause."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class _Stream:
    """Bookkeeping of one progress stream across reconnects (no I/O)."""

    def __init__(self, client: _ClientBase, run_id: str, timeout: float, last_event_id: int | None) -> None:
        self.client = client
        self.run_id = run_id
        self.timeout = timeout
        self.path = _run_path(run_id, "/progress/stream")
        self.deadline = time.monotonic() + timeout
        self.last_id = last_event_id
        self.attempt = 0
        self.failing_since: float | None = None

    def headers(self) -> dict[str, str]:
        return {} if self.last_id is None else {"Last-Event-ID": str(self.last_id)}

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def timed_out(self) -> ExecutionTimeoutError:
        return ExecutionTimeoutError(
            f"progress stream of run {self.run_id!r} did not end within {self.timeout:g}s", job_id=self.run_id
        )

    def check(self, response: httpx.Response) -> None:
        """Raise unless the stream is open: _Reconnect for a 5xx, the error for others.

        The caller reads the body of an error answer first.
        """
        if response.is_success:
            self.attempt, self.failing_since = 0, None
            return
        error = self.client._error("GET", self.path, response, self.run_id)
        if response.status_code >= 500:
            raise _Reconnect(error)
        raise error

    def accept(self, sse: httpx_sse.ServerSentEvent) -> ProgressEvent | None:
        """The event to deliver, or None for one delivered before (replayed after a reconnect)."""
        if time.monotonic() > self.deadline:
            raise self.timed_out()
        if not sse.data:
            return None
        try:
            seq: int | None = int(sse.id)
        except (TypeError, ValueError):
            seq = None
        # A reset (the replay was pruned, or our id is one this run never reached) is the current
        # state, whatever its id: take it and go on from there.
        if seq is not None and self.last_id is not None and seq <= self.last_id and sse.event != "reset":
            return None
        progress = PipelineProgress.model_validate_json(sse.data)
        if seq is not None:
            self.last_id = seq
        return ProgressEvent(sse.event or "progress", seq, progress)

    def lost(self, error: Exception | None) -> float:
        """The stream ended before the terminal event (``error`` says why, None for a clean
        end): seconds to wait before reconnecting, or raise when it is time to give up."""
        now = time.monotonic()
        if now >= self.deadline:
            raise self.timed_out() from error
        if self.failing_since is None:
            self.failing_since = now
        elif error is not None and now - self.failing_since > self.client.reconnect_timeout:
            if isinstance(error, _Reconnect):
                raise error.error
            raise self.client._unavailable(self.path, error) from error
        delay = min(self.client._delay(self.attempt), self.remaining())
        self.attempt += 1
        _log.debug(
            "progress stream of run %r lost (%s); reconnecting in %.2fs",
            self.run_id,
            error or "ended early",
            delay,
        )
        return delay


class _Watchdog:
    """Shuts a stream's socket at the deadline: pings keep a quiet stream's reads from timing out,
    so only this bounds a synchronous stream by its overall timeout."""

    def __init__(self, response: httpx.Response, seconds: float) -> None:
        self._response = response
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def _fire(self) -> None:
        network_stream = self._response.extensions.get("network_stream")
        sock = network_stream.get_extra_info("socket") if network_stream is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed: nothing to wake
                sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked read; close() would not

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._timer.cancel()


_CLIENT_DOC = """
    :param base_url: the service, e.g. ``http://127.0.0.1:8100``.
    :param token: bearer token; defaults to ``$RAYDRIVE_SERVICE_TOKEN``.
    :param timeout: seconds for connecting and for each read of a plain request.
    :param retries: how many times a retryable request is repeated (0: never).
    :param backoff: first retry delay in seconds; it doubles per attempt, up to ``max_backoff``.
    :param max_backoff: the longest delay between two attempts.
    :param stream_read_timeout: a stream silent this long (no event, no ping) is reconnected.
    :param reconnect_timeout: a stream gives up when it cannot reconnect for this long.
    :param transport: an httpx transport to use instead of the network (tests, proxies).
"""


class PipelineServiceClient(_ClientBase):
    __doc__ = "Synchronous client of the pipeline service.\n" + _CLIENT_DOC
    _http: httpx.Client

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        token: str | None = None,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.1,
        max_backoff: float = 2.0,
        stream_read_timeout: float = 45.0,
        reconnect_timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(
            base_url,
            token,
            timeout,
            retries,
            backoff,
            max_backoff,
            stream_read_timeout,
            reconnect_timeout,
            httpx.Client,
            transport,
        )

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def __enter__(self: _Self) -> _Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _send(self, call: _Call) -> Any:
        attempt = 0
        while True:
            try:
                response = self._http.request(call.method, call.path, **call.send_kwargs())
            except httpx.TransportError as error:
                if not self._retryable(call, attempt, error=error):
                    raise self._unavailable(call.path, error) from error
                reason: object = error
            else:
                if not self._retryable(call, attempt, status=response.status_code):
                    return self._answer(call, response)
                reason = response.status_code
            time.sleep(self._log_retry(call, attempt, reason))
            attempt += 1

    # -- endpoints

    def health(self) -> dict[str, Any]:
        """``GET /health``: ``{"status": "ok"}`` when the service is up."""
        return self._send(_Api.health())

    def create_pipeline(
        self, name: str, actions: Sequence[ActionSpec | Mapping[str, Any]], description: str | None = None
    ) -> Pipeline:
        """Store a pipeline; ``actions`` are ``{"name", "entrypoint"}`` mappings or ActionSpecs."""
        return self._send(_Api.create_pipeline(name, actions, description))

    def list_pipelines(self, skip: int = 0, limit: int = 100) -> list[Pipeline]:
        """Pipelines, newest first."""
        return self._send(_Api.list_pipelines(skip, limit))

    def get_pipeline(self, pipeline_id: str) -> Pipeline:
        """One pipeline (ServiceError with ``status_code`` 404 when unknown)."""
        return self._send(_Api.get_pipeline(pipeline_id))

    def delete_pipeline(self, pipeline_id: str) -> None:
        """Delete a pipeline and all its runs."""
        self._send(_Api.delete_pipeline(pipeline_id))

    def create_run(
        self,
        pipeline_id: str,
        params: Mapping[str, Any] | None = None,
        work_dir: str | os.PathLike[str] | None = None,
    ) -> Run:
        """Start a ``pending`` run of the pipeline."""
        return self._send(_Api.create_run(pipeline_id, params, work_dir))

    def list_runs(self, status: RunStatus | str | None = None, skip: int = 0, limit: int = 100) -> list[Run]:
        """Runs, newest first, optionally only those with ``status``."""
        return self._send(_Api.list_runs(status, skip, limit))

    def get_run(self, run_id: str) -> Run:
        """One run (JobNotFoundError when unknown)."""
        return self._send(_Api.get_run(run_id))

    def update_run(
        self, run_id: str, *, status: RunStatus | str = UNSET, result: Any = UNSET, error: str | None = UNSET
    ) -> Run:
        """Set the run's status, result or error (ServiceError 409 when a finished run would
        change status)."""
        return self._send(_Api.update_run(run_id, status=status, result=result, error=error))

    def delete_run(self, run_id: str) -> None:
        """Delete a run with its checkpoints and logs."""
        self._send(_Api.delete_run(run_id))

    def report_progress(
        self,
        run_id: str,
        *,
        status: RunStatus | str = UNSET,
        current_action: str | None = UNSET,
        current_action_index: int | None = UNSET,
        action_progress: ActionProgress | Mapping[str, Any] = UNSET,
        error: str | None = UNSET,
    ) -> ProgressAck:
        """Report progress; only the arguments given are changed. ``action_progress`` replaces
        the run's entry with the same name. Answers the run's id, status and current action."""
        return self._send(
            _Api.report_progress(
                run_id,
                status=status,
                current_action=current_action,
                current_action_index=current_action_index,
                action_progress=action_progress,
                error=error,
            )
        )

    def get_progress(self, run_id: str) -> PipelineProgress:
        """The run's progress view."""
        return self._send(_Api.get_progress(run_id))

    def cancel_run(self, run_id: str) -> RunStatusView:
        """Mark the run cancelled on the service (its pipeline actor stops on its own); a
        cancelled run stays so; ServiceError 409 for a completed or failed run."""
        return self._send(_Api.cancel_run(run_id))

    def get_run_status(self, run_id: str) -> RunStatusView:
        """``{id, status, cancel_requested}``: cheap to poll."""
        return self._send(_Api.get_run_status(run_id))

    def create_checkpoint(
        self,
        run_id: str,
        action_name: str,
        action_index: int,
        *,
        status: str = "completed",
        params_snapshot: Mapping[str, Any] | None = None,
        result: Any = None,
        artifacts_path: str | None = None,
    ) -> Checkpoint:
        """Store a checkpoint of the run after ``action_name``."""
        return self._send(
            _Api.create_checkpoint(
                run_id,
                action_name=action_name,
                action_index=action_index,
                status=status,
                params_snapshot=dict(params_snapshot or {}),
                result=result,
                artifacts_path=artifacts_path,
            )
        )

    def list_checkpoints(self, run_id: str) -> list[Checkpoint]:
        """The run's checkpoints, oldest first."""
        return self._send(_Api.list_checkpoints(run_id))

    def get_latest_checkpoint(self, run_id: str) -> Checkpoint | None:
        """The run's newest checkpoint, or None when it has none."""
        return self._send(_Api.latest_checkpoint(run_id, None))

    def get_checkpoint(self, run_id: str, action_name: str) -> Checkpoint | None:
        """The newest checkpoint of ``action_name`` in the run, or None."""
        return self._send(_Api.latest_checkpoint(run_id, action_name))

    def append_logs(
        self, run_id: str, entries: Sequence[LogEntryCreate | Mapping[str, Any]]
    ) -> list[LogEntry]:
        """Store log entries (``{"message", "level", "action_name"}``) of the run."""
        return self._send(_Api.append_logs(run_id, entries))

    def list_logs(
        self,
        run_id: str,
        *,
        action_name: str | None = None,
        level: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[LogEntry]:
        """The run's log entries, oldest first, filtered by the arguments given."""
        return self._send(_Api.list_logs(run_id, action_name, level, since, limit))

    # -- streams

    def stream_events(
        self, run_id: str, *, timeout: float = 3600.0, last_event_id: int | None = None
    ) -> Iterator[ProgressEvent]:
        """Yield the run's progress events until its terminal event.

        The first event is the current state (or, with ``last_event_id``, the first change after
        it). A dropped connection or a restarted service is resumed with ``Last-Event-ID``, so
        each event arrives exactly once. Raises ExecutionTimeoutError after ``timeout`` seconds,
        JobNotFoundError for an unknown run, ServiceUnavailableError when the service stays
        unreachable for ``reconnect_timeout`` seconds.
        """
        stream = _Stream(self, run_id, timeout, last_event_id)
        while True:
            error: Exception | None = None
            try:
                with httpx_sse.connect_sse(
                    self._http, "GET", stream.path, headers=stream.headers(), timeout=self._stream_timeout
                ) as source:
                    if not source.response.is_success:
                        source.response.read()
                    stream.check(source.response)
                    with _Watchdog(source.response, stream.remaining()):
                        for sse in source.iter_sse():
                            event = stream.accept(sse)
                            if event is not None:
                                yield event
                                if event.terminal:
                                    return
            except (httpx.TransportError, _Reconnect) as exc:
                error = exc
            time.sleep(stream.lost(error))

    def stream_progress(self, run_id: str, timeout: float = 3600.0) -> Iterator[PipelineProgress]:
        """Yield the run's progress view at every change until it finishes (see
        :meth:`stream_events`)."""
        for event in self.stream_events(run_id, timeout=timeout):
            yield event.progress


class AsyncPipelineServiceClient(_ClientBase):
    __doc__ = "Asynchronous (asyncio) client of the pipeline service.\n" + _CLIENT_DOC
    _http: httpx.AsyncClient

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        token: str | None = None,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.1,
        max_backoff: float = 2.0,
        stream_read_timeout: float = 45.0,
        reconnect_timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(
            base_url,
            token,
            timeout,
            retries,
            backoff,
            max_backoff,
            stream_read_timeout,
            reconnect_timeout,
            httpx.AsyncClient,
            transport,
        )

    async def aclose(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    async def __aenter__(self: _Self) -> _Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _send(self, call: _Call) -> Any:
        attempt = 0
        while True:
            try:
                response = await self._http.request(call.method, call.path, **call.send_kwargs())
            except httpx.TransportError as error:
                if not self._retryable(call, attempt, error=error):
                    raise self._unavailable(call.path, error) from error
                reason: object = error
            else:
                if not self._retryable(call, attempt, status=response.status_code):
                    return self._answer(call, response)
                reason = response.status_code
            await asyncio.sleep(self._log_retry(call, attempt, reason))
            attempt += 1

    # -- endpoints (same as PipelineServiceClient)

    async def health(self) -> dict[str, Any]:
        """``GET /health``: ``{"status": "ok"}`` when the service is up."""
        return await self._send(_Api.health())

    async def create_pipeline(
        self, name: str, actions: Sequence[ActionSpec | Mapping[str, Any]], description: str | None = None
    ) -> Pipeline:
        """Store a pipeline; ``actions`` are ``{"name", "entrypoint"}`` mappings or ActionSpecs."""
        return await self._send(_Api.create_pipeline(name, actions, description))

    async def list_pipelines(self, skip: int = 0, limit: int = 100) -> list[Pipeline]:
        """Pipelines, newest first."""
        return await self._send(_Api.list_pipelines(skip, limit))

    async def get_pipeline(self, pipeline_id: str) -> Pipeline:
        """One pipeline (ServiceError with ``status_code`` 404 when unknown)."""
        return await self._send(_Api.get_pipeline(pipeline_id))

    async def delete_pipeline(self, pipeline_id: str) -> None:
        """Delete a pipeline and all its runs."""
        await self._send(_Api.delete_pipeline(pipeline_id))

    async def create_run(
        self,
        pipeline_id: str,
        params: Mapping[str, Any] | None = None,
        work_dir: str | os.PathLike[str] | None = None,
    ) -> Run:
        """Start a ``pending`` run of the pipeline."""
        return await self._send(_Api.create_run(pipeline_id, params, work_dir))

    async def list_runs(
        self, status: RunStatus | str | None = None, skip: int = 0, limit: int = 100
    ) -> list[Run]:
        """Runs, newest first, optionally only those with ``status``."""
        return await self._send(_Api.list_runs(status, skip, limit))

    async def get_run(self, run_id: str) -> Run:
        """One run (JobNotFoundError when unknown)."""
        return await self._send(_Api.get_run(run_id))

    async def update_run(
        self, run_id: str, *, status: RunStatus | str = UNSET, result: Any = UNSET, error: str | None = UNSET
    ) -> Run:
        """Set the run's status, result or error (ServiceError 409 when a finished run would
        change status)."""
        return await self._send(_Api.update_run(run_id, status=status, result=result, error=error))

    async def delete_run(self, run_id: str) -> None:
        """Delete a run with its checkpoints and logs."""
        await self._send(_Api.delete_run(run_id))

    async def report_progress(
        self,
        run_id: str,
        *,
        status: RunStatus | str = UNSET,
        current_action: str | None = UNSET,
        current_action_index: int | None = UNSET,
        action_progress: ActionProgress | Mapping[str, Any] = UNSET,
        error: str | None = UNSET,
    ) -> ProgressAck:
        """Report progress; only the arguments given are changed. ``action_progress`` replaces
        the run's entry with the same name. Answers the run's id, status and current action."""
        return await self._send(
            _Api.report_progress(
                run_id,
                status=status,
                current_action=current_action,
                current_action_index=current_action_index,
                action_progress=action_progress,
                error=error,
            )
        )

    async def get_progress(self, run_id: str) -> PipelineProgress:
        """The run's progress view."""
        return await self._send(_Api.get_progress(run_id))

    async def cancel_run(self, run_id: str) -> RunStatusView:
        """Mark the run cancelled (see :meth:`PipelineServiceClient.cancel_run`)."""
        return await self._send(_Api.cancel_run(run_id))

    async def get_run_status(self, run_id: str) -> RunStatusView:
        """``{id, status, cancel_requested}``: cheap to poll."""
        return await self._send(_Api.get_run_status(run_id))

    async def create_checkpoint(
        self,
        run_id: str,
        action_name: str,
        action_index: int,
        *,
        status: str = "completed",
        params_snapshot: Mapping[str, Any] | None = None,
        result: Any = None,
        artifacts_path: str | None = None,
    ) -> Checkpoint:
        """Store a checkpoint of the run after ``action_name``."""
        return await self._send(
            _Api.create_checkpoint(
                run_id,
                action_name=action_name,
                action_index=action_index,
                status=status,
                params_snapshot=dict(params_snapshot or {}),
                result=result,
                artifacts_path=artifacts_path,
            )
        )

    async def list_checkpoints(self, run_id: str) -> list[Checkpoint]:
        """The run's checkpoints, oldest first."""
        return await self._send(_Api.list_checkpoints(run_id))

    async def get_latest_checkpoint(self, run_id: str) -> Checkpoint | None:
        """The run's newest checkpoint, or None when it has none."""
        return await self._send(_Api.latest_checkpoint(run_id, None))

    async def get_checkpoint(self, run_id: str, action_name: str) -> Checkpoint | None:
        """The newest checkpoint of ``action_name`` in the run, or None."""
        return await self._send(_Api.latest_checkpoint(run_id, action_name))

    async def append_logs(
        self, run_id: str, entries: Sequence[LogEntryCreate | Mapping[str, Any]]
    ) -> list[LogEntry]:
        """Store log entries (``{"message", "level", "action_name"}``) of the run."""
        return await self._send(_Api.append_logs(run_id, entries))

    async def list_logs(
        self,
        run_id: str,
        *,
        action_name: str | None = None,
        level: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[LogEntry]:
        """The run's log entries, oldest first, filtered by the arguments given."""
        return await self._send(_Api.list_logs(run_id, action_name, level, since, limit))

    # -- streams

    async def stream_events(
        self, run_id: str, *, timeout: float = 3600.0, last_event_id: int | None = None
    ) -> AsyncIterator[ProgressEvent]:
        """Yield the run's progress events until its terminal event (see
        :meth:`PipelineServiceClient.stream_events`)."""
        stream = _Stream(self, run_id, timeout, last_event_id)
        while True:
            error: Exception | None = None
            try:
                async with httpx_sse.aconnect_sse(
                    self._http, "GET", stream.path, headers=stream.headers(), timeout=self._stream_timeout
                ) as source:
                    if not source.response.is_success:
                        await source.response.aread()
                    stream.check(source.response)
                    events = source.aiter_sse()
                    try:
                        while True:
                            try:
                                # wait_for bounds each read: pings keep reads alive forever.
                                sse = await asyncio.wait_for(events.__anext__(), stream.remaining())
                            except StopAsyncIteration:
                                break
                            except asyncio.TimeoutError:
                                raise stream.timed_out() from None
                            event = stream.accept(sse)
                            if event is not None:
                                yield event
                                if event.terminal:
                                    return
                    finally:
                        await events.aclose()
            except (httpx.TransportError, _Reconnect) as exc:
                error = exc
            await asyncio.sleep(stream.lost(error))

    async def stream_progress(self, run_id: str, timeout: float = 3600.0) -> AsyncIterator[PipelineProgress]:
        """Yield the run's progress view at every change until it finishes."""
        async for event in self.stream_events(run_id, timeout=timeout):
            yield event.progress
