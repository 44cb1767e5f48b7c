"""The team-scale backend: PostgreSQL through psycopg 3, a connection pool, LISTEN/NOTIFY."""

from __future__ import annotations

import logging
import threading
from typing import Any

from sqlalchemy import Connection, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import InterfaceError, OperationalError, ProgrammingError

from raydrive.core.redaction import redact_text, redact_url
from raydrive.service.db.base import ChangeCallback, SQLStore
from raydrive.service.db.schema import DatabaseUnavailableError, upgrade_schema
from raydrive.service.store import RunEvent

__all__ = ["CHANNEL", "PostgresStore"]

#: The NOTIFY channel every change of a run is announced on (payload: the run id).
CHANNEL = "raydrive_runs"
_log = logging.getLogger(__name__)
_INSERT_EVENT_AND_NOTIFY = (
    "WITH added AS (INSERT INTO run_events (run_id, seq, event, data)"
    " VALUES (%(run_id)s, %(seq)s, %(event)s, %(data)s) RETURNING run_id)"
    " SELECT pg_notify(%(channel)s, run_id) FROM added"
)


class PostgresStore(SQLStore):
    """The store in a PostgreSQL database, shared by every process of a service.

    Each write is one transaction; a change of a run locks the run's row (``SELECT ... FOR
    UPDATE``), so concurrent reports of one run from any process are applied one after the other
    and number their events without gaps. Every change sends ``NOTIFY raydrive_runs, '<run id>'``
    in its transaction (delivered on commit only), which :meth:`watch` turns into wake-ups.

    :param url: ``postgresql://user:password@host:port/db`` (``postgres://`` too).
    :param pool_size: connections kept open (and as many again on bursts).
    :param event_retention: run events kept per run for stream replay.
    :param migrate: upgrade an older schema on open (else refuse it, saying how).
    """

    _lock_rows = True

    def __init__(
        self, url: str, *, pool_size: int = 10, event_retention: int = 1000, migrate: bool = True
    ) -> None:
        parsed = make_url(url)
        self.url = parsed.set(drivername="postgresql+psycopg")
        engine = create_engine(
            # No pre-ping (a round trip per checkout): a connection the server dropped fails one
            # request, SQLAlchemy then discards the whole pool and the next request reconnects.
            self.url,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_recycle=1800,
        )
        super().__init__(engine, event_retention=event_retention)
        try:
            upgrade_schema(engine, migrate=migrate)
        except (OperationalError, ProgrammingError, InterfaceError) as exc:
            # (psycopg refuses a bad option such as connect_timeout=x only when connecting.)
            self.close()
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
            raise DatabaseUnavailableError(
                f"cannot reach the database {self!r}: {redact_text(reason)}"
            ) from None
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"PostgresStore({redact_url(self.url.render_as_string(hide_password=False))!r})"

    def _announce(self, conn: Connection, run_id: str) -> None:
        conn.exec_driver_sql(
            "SELECT pg_notify(%(channel)s, %(run_id)s)", {"channel": CHANNEL, "run_id": run_id}
        )

    def _insert_event(self, conn: Connection, run_id: str, event: RunEvent) -> None:
        # The event and its NOTIFY in one statement: one round trip less per change, which is
        # what a report costs on a busy machine (each round trip waits for the server's turn).
        conn.exec_driver_sql(
            _INSERT_EVENT_AND_NOTIFY,
            {
                "run_id": run_id,
                "seq": event.seq,
                "event": event.event,
                "data": event.data,
                "channel": CHANNEL,
            },
        )

    def _listen_connection(self) -> Any:
        import psycopg

        url = self.url.set(drivername="postgresql").render_as_string(hide_password=False)
        conn = psycopg.connect(url, autocommit=True)
        conn.execute(f"LISTEN {CHANNEL}")
        return conn

    def watch(self, on_change: ChangeCallback, stop: threading.Event) -> None:
        """Report the runs of every NOTIFY on :data:`CHANNEL` until ``stop`` (reconnects on loss)."""
        while not stop.is_set():
            try:
                conn = self._listen_connection()
            except Exception as exc:
                _log.warning("cannot LISTEN for run changes (%s); retrying", type(exc).__name__)
                stop.wait(1.0)
                continue
            # Changes made while we were not listening are unknown: wake every stream once.
            on_change(None)
            try:
                with conn:
                    while not stop.is_set():
                        for notify in conn.notifies(timeout=0.2, stop_after=1000):
                            on_change(notify.payload)
            except Exception as exc:
                if not stop.is_set():
                    _log.warning("lost the LISTEN connection (%s); reconnecting", type(exc).__name__)
                    stop.wait(0.2)
