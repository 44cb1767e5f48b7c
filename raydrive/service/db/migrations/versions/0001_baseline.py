"""Baseline: the schema of the first embedded SQLite store (``PRAGMA user_version`` 1).

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "pipelines",
        sa.Column("seq", _ID, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(64), nullable=False, unique=True),
        sa.Column("doc", sa.Text, nullable=False),
    )
    op.create_table(
        "runs",
        sa.Column("seq", _ID, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(64), nullable=False, unique=True),
        sa.Column(
            "pipeline_id", sa.String(64), sa.ForeignKey("pipelines.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("event_seq", sa.BigInteger, nullable=False),
        sa.Column("doc", sa.Text, nullable=False),
    )
    op.create_index("runs_by_status", "runs", ["status", "seq"])
    op.create_index("runs_by_pipeline", "runs", ["pipeline_id"])
    op.create_table(
        "run_events",
        sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("event", sa.String(16), nullable=False),
        sa.Column("data", sa.Text, nullable=False),
    )
    op.create_table(
        "checkpoints",
        sa.Column("seq", _ID, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("action_name", sa.Text, nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("doc", sa.Text, nullable=False),
    )
    op.create_index("checkpoints_by_run", "checkpoints", ["run_id", "action_name", "seq"])
    op.create_table(
        "logs",
        sa.Column("seq", _ID, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("timestamp", sa.String(40), nullable=False),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("action_name", sa.Text, nullable=True),
        sa.Column("message", sa.Text, nullable=False),
    )
    op.create_index("logs_by_run", "logs", ["run_id", "seq"])
