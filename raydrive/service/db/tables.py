"""The service's tables, defined once (SQLAlchemy Core) for every backend.

Documents (pipelines, runs, checkpoint bodies) are stored as JSON text validated by the pydantic
models; only the columns that queries filter or sort on are columns of their own. Times that SQL
compares (``completed_at``, log ``timestamp``) are fixed-width UTC ISO text, so they compare
correctly as text on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

__all__ = [
    "TABLES",
    "checkpoints",
    "idempotency_keys",
    "logs",
    "metadata",
    "metric_points",
    "pipelines",
    "run_events",
    "runs",
    "sessions",
]

# SQLite only makes INTEGER PRIMARY KEY an alias of its rowid (and autoincrementing).
_ID = BigInteger().with_variant(Integer, "sqlite")

metadata = MetaData()

pipelines = Table(
    "pipelines",
    metadata,
    Column("seq", _ID, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("doc", Text, nullable=False),
)

runs = Table(
    "runs",
    metadata,
    Column("seq", _ID, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("pipeline_id", String(64), ForeignKey("pipelines.id", ondelete="CASCADE"), nullable=False),
    Column("status", String(16), nullable=False),
    Column("event_seq", BigInteger, nullable=False),
    Column("doc", Text, nullable=False),
    # Set once a run is terminal: what retention prunes by.
    Column("completed_at", String(40), nullable=True),
    # Grows with every change of any run (SQLite): what other processes watch for changes.
    Column("change_id", BigInteger, nullable=False, server_default="0"),
    Index("runs_by_status", "status", "seq"),
    Index("runs_by_pipeline", "pipeline_id"),
    Index("runs_by_change", "change_id"),
    Index("runs_by_completion", "completed_at"),
)

run_events = Table(
    "run_events",
    metadata,
    Column("run_id", String(64), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("event", String(16), nullable=False),
    Column("data", Text, nullable=False),
)

checkpoints = Table(
    "checkpoints",
    metadata,
    Column("seq", _ID, primary_key=True, autoincrement=True),
    Column("run_id", String(64), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("action_name", Text, nullable=False),
    Column("created_at", String(40), nullable=False),
    Column("doc", Text, nullable=False),
    Index("checkpoints_by_run", "run_id", "action_name", "seq"),
)

logs = Table(
    "logs",
    metadata,
    Column("seq", _ID, primary_key=True, autoincrement=True),
    Column("run_id", String(64), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("timestamp", String(40), nullable=False),
    Column("level", String(16), nullable=False),
    Column("action_name", Text, nullable=True),
    Column("message", Text, nullable=False),
    Index("logs_by_run", "run_id", "seq"),
)

# One row per action, key and step of a run's metrics (see raydrive.service.metric_points): a later
# report of the same step replaces the value. Keyed (and on SQLite stored) in that order, so that
# one curve is one contiguous range.
metric_points = Table(
    "metric_points",
    metadata,
    Column("run_id", String(64), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("action_name", Text, nullable=False),
    Column("key", Text, nullable=False),
    Column("step", BigInteger, nullable=False),
    Column("value", Double, nullable=False),
    PrimaryKeyConstraint("run_id", "action_name", "key", "step"),
    sqlite_with_rowid=False,
)

#: Idempotency keys (:mod:`raydrive.service.idempotency`): one row per ``path + key``, a request
#: ``running`` under a lease, then ``done`` with its answer, kept 24 h.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("slot", Text, primary_key=True),
    Column("digest", String(64), nullable=False),
    Column("state", String(8), nullable=False),
    Column("owner", String(32), nullable=False),
    Column("created_at", String(40), nullable=False),
    Column("lease_until", String(40), nullable=False),
    Column("status", Integer, nullable=True),
    Column("headers", Text, nullable=True),
    Column("body", LargeBinary, nullable=True),
    Index("idempotency_keys_by_age", "created_at"),
)

#: The web page's live sessions (:mod:`raydrive.service.auth`): logout deletes the row.
sessions = Table(
    "sessions",
    metadata,
    Column("nonce", String(64), primary_key=True),
    Column("expires_at", String(40), nullable=False),
)

#: Every table copied by ``service migrate``, parents before children (the order a copy inserts
#: in). Idempotency keys and sessions are not: they are short-lived state of one database.
TABLES = (pipelines, runs, run_events, checkpoints, logs, metric_points)
