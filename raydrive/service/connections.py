"""Bounds on the service's connections, so that no client can lock the others out.

uvicorn's HTTP/1.1 protocol has no header-read timeout: a connection that sends half a request
header (slow-loris) is kept forever, and its keep-alive timer only starts after a response.
:class:`GuardedH11Protocol` is uvicorn's own h11 protocol with the two bounds every trusted
server has:

- **a header-read timeout** (nginx ``client_header_timeout``, Go's ``ReadHeaderTimeout``): a
  request whose headers are not complete :data:`HEADER_TIMEOUT_S` seconds after the connection
  opened (or after the previous response) is answered ``408`` and the connection closed;
- **a bound on open connections per process** (nginx ``worker_connections``): a connection
  beyond :func:`max_connections` is closed at once, before it costs anything more, so the
  process keeps serving the connections it has, ``/health`` among them.

:func:`raise_open_files_limit` lifts the process's soft limit on open files to its hard limit
at start (as Go's runtime does since 1.19), so the bound, not ``EMFILE`` on ``accept``, is what
decides.

Why uvicorn with these bounds rather than Hypercorn or Granian: the service already runs on
uvicorn (in a thread for tests and demos, with ``--workers`` processes), and the measure of
``benchmarks/bench_service_slowloris.py`` shows the bounded h11 protocol keeps ``/health`` within
its target under 1,000 slow-loris connections; see docs/service.md for the figures.
"""

from __future__ import annotations

import asyncio
import resource
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["HEADER_TIMEOUT_S", "GuardedH11Protocol", "max_connections", "raise_open_files_limit"]

#: Seconds a client has to send a request's complete headers (nginx's default is 60; 10 is
#: ample on the networks a pipeline service serves and frees a slow-loris place six times sooner).
HEADER_TIMEOUT_S = 10.0
#: Open connections per process at most (fewer when the open-files limit is lower).
MAX_CONNECTIONS = 4096
_FD_RESERVE = 256  # files a process needs besides its connections (database, logs, threads)
_TIMEOUT_ANSWER = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


def raise_open_files_limit() -> int:
    """Lift the soft limit on open files to the hard limit; returns the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass  # keep the limit we have; the bound below follows it
    return soft


def max_connections() -> int:
    """The bound on open connections of this process: :data:`MAX_CONNECTIONS`, or fewer when
    the open-files limit leaves less room."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    room = soft - _FD_RESERVE if soft != resource.RLIM_INFINITY else MAX_CONNECTIONS
    return max(16, min(MAX_CONNECTIONS, room))


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header-read timeout and a per-process connection bound."""

    header_timeout: float = HEADER_TIMEOUT_S
    connection_bound: int | None = None  # None: max_connections(), read at the first connection

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        bound = type(self).connection_bound
        if bound is None:
            bound = type(self).connection_bound = max_connections()
        if len(self.connections) > bound:
            transport.abort()  # beyond the bound: closed before it costs anything more
            return
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._header_timer is None and self.conn.their_state is h11.IDLE:
            self._arm()  # a new request on a kept-alive connection: its headers are timed too
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._disarm()  # the headers are complete

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_timed_out)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_timed_out(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(_TIMEOUT_ANSWER)  # nginx answers 408, then closes
        self.transport.close()
