"""Clients of the pipeline service: :class:`PipelineServiceClient` (sync) and
:class:`AsyncPipelineServiceClient` (asyncio), with the same methods.

Both retry on connection errors, read timeouts and 5xx answers, with exponential backoff and a
bounded number of attempts: reads, deletes, PATCH and progress reports (which set fields and so
are idempotent), and creates (pipelines, runs, checkpoints, logs), which carry an
``Idempotency-Key`` header that is the same for every retry of one create, so that the service
stores it once (see :mod:`raydrive.service.idempotency`). Errors map to the project's own types:

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

from raydrive.service.client._api import DEFAULT_URL, TOKEN_ENV, UNSET, ProgressEvent
from raydrive.service.client.aio import AsyncPipelineServiceClient
from raydrive.service.client.sync import PipelineServiceClient

__all__ = [
    "DEFAULT_URL",
    "TOKEN_ENV",
    "UNSET",
    "AsyncPipelineServiceClient",
    "PipelineServiceClient",
    "ProgressEvent",
]
