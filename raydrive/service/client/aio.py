"""The asyncio client of the pipeline service."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any

import httpx
import httpx_sse

from raydrive.core.pipeline import ActionFingerprint, ActionProgress, PipelineProgress, RunStatus
from raydrive.core.retry import Attempt
from raydrive.service.client._api import DEFAULT_URL, UNSET, ProgressEvent, _Api, _Call
from raydrive.service.client._base import _CLIENT_DOC, _ClientBase, _Reconnect, _Self, _Stream
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

__all__ = ["AsyncPipelineServiceClient"]


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
        self,
        name: str,
        actions: Sequence[ActionSpec | Mapping[str, Any]],
        description: str | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> Pipeline:
        """Store a pipeline; ``actions`` are ``{"name", "entrypoint"}`` mappings or ActionSpecs.
        Every create carries an ``Idempotency-Key`` (``idempotency_key``, or a fresh one), so a
        retry after a lost answer stores nothing twice."""
        return await self._send(_Api.create_pipeline(name, actions, description, idempotency_key))

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
        *,
        idempotency_key: str | None = None,
        fingerprint: Sequence[ActionFingerprint | Mapping[str, Any]] | None = None,
        resumed_from: str | None = None,
        max_attempts: int | None = None,
    ) -> Run:
        """Start a ``pending`` run of the pipeline; ``fingerprint`` (one entry per action),
        ``resumed_from`` and ``max_attempts`` are recorded with it."""
        extra = {
            "fingerprint": list(fingerprint) if fingerprint is not None else None,
            "resumed_from": resumed_from,
            "max_attempts": max_attempts,
        }
        return await self._send(_Api.create_run(pipeline_id, params, work_dir, idempotency_key, extra))

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
        attempt: Attempt | Mapping[str, Any] = UNSET,
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
                attempt=attempt,
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
        idempotency_key: str | None = None,
    ) -> Checkpoint:
        """Store a checkpoint of the run after ``action_name``."""
        return await self._send(
            _Api.create_checkpoint(
                run_id,
                idempotency_key,
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
        self,
        run_id: str,
        entries: Sequence[LogEntryCreate | Mapping[str, Any]],
        *,
        idempotency_key: str | None = None,
    ) -> list[LogEntry]:
        """Store log entries (``{"message", "level", "action_name"}``) of the run (a caller
        that retries on its own passes the same ``idempotency_key`` each time)."""
        return await self._send(_Api.append_logs(run_id, entries, idempotency_key))

    async def send_reports(
        self,
        run_id: str,
        reports: Sequence[Mapping[str, Any]],
        *,
        idempotency_key: str | None = None,
    ) -> ReportBatchAck | None:
        """Beyond the contract: apply ``reports`` (each ``{"progress" | "checkpoint" | "logs" |
        "update": body}``, the body its own endpoint takes) in order, in one request. Answers one
        result per report (``status``: what its own endpoint would have answered, ``detail`` when
        refused), or None when the service predates ``POST /runs/{id}/reports``. Retries carry
        the same ``idempotency_key``, so a batch is applied once."""
        return await self._send(_Api.send_reports(run_id, reports, idempotency_key))

    async def get_metrics(
        self,
        run_id: str,
        *,
        key: str | None = None,
        action: str | None = None,
        since_step: int | None = None,
        max_points: int | None = None,
    ) -> RunMetrics | None:
        """Beyond the contract: the run's metric history, one series (steps and values) per action
        and key; ``since_step`` keeps later steps, ``max_points`` thins each series to about that
        many (the lowest and highest point of each stretch). None when the service predates it."""
        return await self._send(_Api.get_metrics(run_id, key, action, since_step, max_points))

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
