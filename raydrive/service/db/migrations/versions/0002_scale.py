"""Team scale: ``runs.completed_at`` (retention) and ``runs.change_id`` (cross-process change feed).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_TERMINAL = ("completed", "failed", "cancelled")


def upgrade() -> None:
    op.add_column("runs", sa.Column("completed_at", sa.String(40), nullable=True))
    op.add_column("runs", sa.Column("change_id", sa.BigInteger, nullable=False, server_default="0"))
    op.create_index("runs_by_change", "runs", ["change_id"])
    op.create_index("runs_by_completion", "runs", ["completed_at"])
    # Finished runs of an older database get their completion time from their document.
    conn = op.get_bind()
    runs = sa.table("runs", sa.column("id"), sa.column("status"), sa.column("doc"), sa.column("completed_at"))
    rows = conn.execute(sa.select(runs.c.id, runs.c.doc).where(runs.c.status.in_(_TERMINAL))).all()
    for run_id, doc in rows:
        value = json.loads(doc).get("completed_at")
        if value:
            stamp = datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(timezone.utc)
            conn.execute(
                runs.update()
                .where(runs.c.id == run_id)
                .values(completed_at=stamp.isoformat(timespec="microseconds"))
            )
