"""Wake-ups of the progress streams, across every process of the service.

Each process keeps one :class:`RunBroker` on its event loop. A change this process writes wakes
the streams of that run at once (:meth:`RunBroker.notify`); a change any *other* process writes
arrives through the store's change feed (``store.watch``: PostgreSQL ``LISTEN/NOTIFY``, or a
``PRAGMA data_version`` check on SQLite every 50 ms), read in a daemon thread and handed to the
loop. A woken stream reads its new events from the store, so a wake-up carries no data and a
duplicate one costs one empty read.

The broker also bounds what streams may hold: at most ``max_streams`` open per process, counted
at admission (:meth:`RunBroker.admit`; the service answers 503 with ``Retry-After`` beyond
it), and a stream that falls more than ``backlog`` events behind gets the run's current state
instead of every event it missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from typing import Any

__all__ = ["DEFAULT_BACKLOG", "DEFAULT_MAX_STREAMS", "RETRY_AFTER_S", "RunBroker"]

#: Open progress streams per process before new ones are answered 503.
DEFAULT_MAX_STREAMS = 10_000
#: Events a stream may be behind before it skips to the current state.
DEFAULT_BACKLOG = 100
#: ``Retry-After`` (seconds) of the 503 answered beyond ``max_streams``.
RETRY_AFTER_S = 5
_log = logging.getLogger(__name__)


class RunBroker:
    """Wakes the progress streams of a run when the run changes, whichever process changed it.

    :param max_streams: open streams this process serves at most (:meth:`full`).
    :param backlog: events a stream may lag before it is sent the current state only.
    """

    def __init__(self, *, max_streams: int = DEFAULT_MAX_STREAMS, backlog: int = DEFAULT_BACKLOG) -> None:
        self._events: dict[str, asyncio.Event] = {}
        self.closed = False
        self.max_streams = max_streams
        self.backlog = max(1, backlog)
        self.open_streams = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def waiter(self, run_id: str) -> asyncio.Event:
        """An event set by the next :meth:`notify` of ``run_id`` (take it before reading)."""
        event = self._events.get(run_id)
        if event is None:
            event = self._events[run_id] = asyncio.Event()
            if self.closed:
                event.set()
        return event

    def notify(self, run_id: str) -> None:
        """Wake every stream waiting on ``run_id``."""
        event = self._events.pop(run_id, None)
        if event is not None:
            event.set()

    def notify_all(self) -> None:
        """Wake every waiting stream (after deletes, or when changes may have been missed)."""
        events, self._events = self._events, {}
        for event in events.values():
            event.set()

    # -- the stream cap

    def admit(self) -> bool:
        """Take a stream place at admission; False when all ``max_streams`` are taken (answer 503).

        Check and count are one step on the event loop (no ``await`` between them), so a burst
        of requests can never open more than ``max_streams``: a place is held from the moment
        the request is admitted, not from when its response starts. Call :meth:`release` once
        the stream ends, however it ends (also when its response never started).
        """
        if self.open_streams >= self.max_streams:
            return False
        self.open_streams += 1
        return True

    def release(self) -> None:
        """A place taken by :meth:`admit` is free again."""
        self.open_streams -= 1

    # -- changes of other processes

    def start(self, store: Any) -> None:
        """Follow the change feed of ``store`` (its ``watch`` method), if it has one.

        Call on the event loop the streams run on; :meth:`close` stops following.
        """
        watch = getattr(store, "watch", None)
        if watch is None or self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(
            target=self._follow, args=(watch,), name="raydrive-run-changes", daemon=True
        )
        self._thread.start()

    def _follow(self, watch: Any) -> None:
        try:
            watch(self._changed, self._stop)
        except Exception:  # the service keeps serving; streams still wake on pings
            _log.exception("the run change feed stopped; other processes' changes reach streams late")

    def _changed(self, run_id: str | None) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        # RuntimeError: the loop closed between the check and the call (shutting down).
        with contextlib.suppress(RuntimeError):
            if run_id is None:
                loop.call_soon_threadsafe(self.notify_all)
            else:
                loop.call_soon_threadsafe(self.notify, run_id)

    def close(self) -> None:
        """End every stream and the change feed: the server is shutting down (clients resume)."""
        self.closed = True
        self._stop.set()
        self.notify_all()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=2.0)
