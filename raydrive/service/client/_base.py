"""What both clients share: configuration, retry policy, answers, stream bookkeeping."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
import httpx_sse

from raydrive.core.errors import (
    ExecutionTimeoutError,
    JobNotFoundError,
    ServiceError,
    ServiceUnavailableError,
)
from raydrive.core.pipeline import PipelineProgress
from raydrive.service.client._api import TOKEN_ENV, ProgressEvent, _Call, _run_path

# The name the logger had before the client became a package (users may configure it).
_log = logging.getLogger("raydrive.service.client")
_Self = TypeVar("_Self", bound="_ClientBase")

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
        if call.optional and response.status_code in (404, 405) and _missing(response) is None:
            return None  # a service older than this route (a 404 for the run names it missing)
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
