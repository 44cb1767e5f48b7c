"""Every statement of the store, built once from the table definitions and compiled once per dialect.

Building a Core statement and computing its cache key costs more than SQLite takes to run it
(measured: ~2 ms per progress report through ``conn.execute(select(...))`` against ~0.25 ms
for the hand-written SQLite store), so the store compiles each statement to the driver's SQL
once and runs it with ``exec_driver_sql``: the tables stay the one definition, the SQL text is
SQLAlchemy's, and values always travel as bound parameters.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, CursorResult, Dialect, bindparam, delete, func, insert, select, update
from sqlalchemy.sql import Executable

from raydrive.service.db.tables import checkpoints, logs, metric_points, pipelines, run_events, runs

__all__ = [
    "STATEMENTS",
    "Prepared",
    "log_query",
    "metric_query",
    "metric_series_query",
    "upsert_metric_point",
]


def _b(name: str) -> Any:
    return bindparam(name)


_next_change = select(func.coalesce(func.max(runs.c.change_id), 0) + 1).scalar_subquery()
_event_cols = (run_events.c.seq, run_events.c.event, run_events.c.data)
_checkpoint_cols = (checkpoints.c.seq, checkpoints.c.created_at, checkpoints.c.doc)

STATEMENTS: dict[str, Executable] = {
    "insert_pipeline": insert(pipelines).values(id=_b("id"), doc=_b("doc")),
    "list_pipelines": select(pipelines.c.doc)
    .order_by(pipelines.c.seq.desc())
    .limit(_b("limit"))
    .offset(_b("skip")),
    "get_pipeline": select(pipelines.c.doc).where(pipelines.c.id == _b("id")),
    "pipeline_runs": select(runs.c.id).where(runs.c.pipeline_id == _b("id")),
    "delete_pipeline": delete(pipelines).where(pipelines.c.id == _b("id")),
    "insert_run": insert(runs).values(
        id=_b("id"),
        pipeline_id=_b("pipeline_id"),
        status=_b("status"),
        event_seq=_b("event_seq"),
        doc=_b("doc"),
        change_id=_next_change,
    ),
    "list_runs": select(runs.c.doc).order_by(runs.c.seq.desc()).limit(_b("limit")).offset(_b("skip")),
    "list_runs_by_status": select(runs.c.doc)
    .where(runs.c.status == _b("status"))
    .order_by(runs.c.seq.desc())
    .limit(_b("limit"))
    .offset(_b("skip")),
    "get_run": select(runs.c.doc).where(runs.c.id == _b("id")),
    "run_for_change": select(runs.c.doc, runs.c.event_seq).where(runs.c.id == _b("id")),
    "run_for_change_locked": select(runs.c.doc, runs.c.event_seq)
    .where(runs.c.id == _b("id"))
    .with_for_update(),
    "save_run": update(runs)
    .where(runs.c.id == _b("id"))
    .values(
        status=_b("status"),
        event_seq=_b("event_seq"),
        doc=_b("doc"),
        completed_at=_b("completed_at"),
        change_id=_next_change,
    ),
    "delete_run": delete(runs).where(runs.c.id == _b("id")),
    "run_exists": select(runs.c.seq).where(runs.c.id == _b("id")),
    "run_status": select(runs.c.status).where(runs.c.id == _b("id")),
    # FOR SHARE: a checkpoint or log cannot land while another transaction finishes the run.
    "run_status_locked": select(runs.c.status).where(runs.c.id == _b("id")).with_for_update(read=True),
    "insert_event": insert(run_events).values(
        run_id=_b("run_id"), seq=_b("seq"), event=_b("event"), data=_b("data")
    ),
    "prune_events": delete(run_events).where(
        run_events.c.run_id == _b("run_id"), run_events.c.seq <= _b("seq")
    ),
    "latest_event": select(*_event_cols)
    .where(run_events.c.run_id == _b("run_id"))
    .order_by(run_events.c.seq.desc())
    .limit(1),
    "events_after": select(*_event_cols)
    .where(run_events.c.run_id == _b("run_id"), run_events.c.seq > _b("seq"))
    .order_by(run_events.c.seq),
    "insert_checkpoint": insert(checkpoints)
    .values(run_id=_b("run_id"), action_name=_b("action_name"), created_at=_b("created_at"), doc=_b("doc"))
    .returning(checkpoints.c.seq),
    "list_checkpoints": select(*_checkpoint_cols)
    .where(checkpoints.c.run_id == _b("run_id"))
    .order_by(checkpoints.c.seq),
    "latest_checkpoint": select(*_checkpoint_cols)
    .where(checkpoints.c.run_id == _b("run_id"))
    .order_by(checkpoints.c.seq.desc())
    .limit(1),
    "latest_action_checkpoint": select(*_checkpoint_cols)
    .where(checkpoints.c.run_id == _b("run_id"), checkpoints.c.action_name == _b("action_name"))
    .order_by(checkpoints.c.seq.desc())
    .limit(1),
    "insert_log": insert(logs)
    .values(
        run_id=_b("run_id"),
        timestamp=_b("timestamp"),
        level=_b("level"),
        action_name=_b("action_name"),
        message=_b("message"),
    )
    .returning(logs.c.seq),
}


def log_query(action_name: bool, level: bool, since: bool) -> Executable:
    """The log listing with the filters that are given (eight variants, each prepared once)."""
    query = (
        select(logs.c.seq, logs.c.timestamp, logs.c.level, logs.c.action_name, logs.c.message)
        .where(logs.c.run_id == _b("run_id"))
        .order_by(logs.c.seq)
        .limit(_b("limit"))
    )
    if action_name:
        query = query.where(logs.c.action_name == _b("action_name"))
    if level:
        query = query.where(logs.c.level == _b("level"))
    if since:
        query = query.where(logs.c.timestamp > _b("since"))
    return query


def upsert_metric_point(dialect: str) -> Executable:
    """Store one point; a point already at that action, key and step takes the new value."""
    from sqlalchemy.dialects.postgresql import insert as pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    make = pg_insert if dialect == "postgresql" else sqlite_insert
    mp = metric_points.c
    stmt = make(metric_points).values(
        run_id=_b("run_id"), action_name=_b("action_name"), key=_b("key"), step=_b("step"), value=_b("value")
    )
    return stmt.on_conflict_do_update(
        index_elements=[mp.run_id, mp.action_name, mp.key, mp.step], set_={"value": stmt.excluded.value}
    )


def metric_series_query(key: bool, action: bool, since: bool) -> Executable:
    """The (action, key, points) of a run's metric series with the filters given, in that order."""
    mp = metric_points.c
    query = (
        select(mp.action_name, mp.key, func.count())
        .where(mp.run_id == _b("run_id"))
        .group_by(mp.action_name, mp.key)
        .order_by(mp.action_name, mp.key)
    )
    if key:
        query = query.where(mp.key == _b("key"))
    if action:
        query = query.where(mp.action_name == _b("action_name"))
    if since:
        query = query.where(mp.step > _b("since_step"))
    return query


def metric_query(since: bool) -> Executable:
    """The (step, value) points of one metric series of a run, in step order."""
    mp = metric_points.c
    query = (
        select(mp.step, mp.value)
        .where(mp.run_id == _b("run_id"), mp.action_name == _b("action_name"), mp.key == _b("key"))
        .order_by(mp.step)
    )
    return query.where(mp.step > _b("since_step")) if since else query


class Prepared:
    """One statement compiled for one dialect: its SQL text and how to order its parameters."""

    def __init__(self, statement: Executable, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql = str(compiled)
        self._names = compiled.positiontup  # None for a dialect with named parameters
        # Literals of the statement (the 0 and 1 of COALESCE(MAX(..), 0) + 1) are parameters too.
        self._defaults = {name: value for name, value in compiled.params.items() if value is not None}

    def __call__(self, conn: Connection, **values: Any) -> CursorResult[Any]:
        """Run the statement on ``conn`` with ``values`` bound."""
        values = {**self._defaults, **values} if self._defaults else values
        params: Any = tuple(values[name] for name in self._names) if self._names is not None else values
        return conn.exec_driver_sql(self.sql, params)

    def many(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        """Run the statement once per row of ``rows`` (the driver's ``executemany``)."""
        if not rows:
            return
        if self._names is not None:
            conn.exec_driver_sql(self.sql, [tuple(row[name] for name in self._names) for row in rows])
        else:
            conn.exec_driver_sql(self.sql, rows)
