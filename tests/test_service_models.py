"""The shared pipeline models: status words, progress arithmetic, timestamps."""

from __future__ import annotations

import json
from dataclasses import fields
from datetime import datetime, timedelta, timezone

import pydantic
import pytest

from raydrive.core.pipeline import (
    ActionProgress,
    ActionStatus,
    PipelineDefinition,
    PipelineProgress,
    RunStatus,
)


def test_status_words_are_the_contracts() -> None:
    assert [s.value for s in RunStatus] == ["pending", "running", "completed", "failed", "cancelled"]
    assert [s.value for s in ActionStatus] == ["pending", "running", "completed", "failed", "skipped"]
    assert RunStatus("completed") is RunStatus.COMPLETED
    assert RunStatus.RUNNING == "running"
    assert str(RunStatus.FAILED) == "failed"


@pytest.mark.parametrize(
    ("status", "terminal"),
    [
        (RunStatus.PENDING, False),
        (RunStatus.RUNNING, False),
        (RunStatus.COMPLETED, True),
        (RunStatus.FAILED, True),
        (RunStatus.CANCELLED, True),
    ],
)
def test_run_status_is_terminal(status: RunStatus, terminal: bool) -> None:
    assert status.is_terminal() is terminal


def _progress(*entries: tuple[str, float]) -> PipelineProgress:
    return PipelineProgress(
        run_id="r",
        progress=[
            ActionProgress(name=f"a{i}", status=status, progress=fraction)
            for i, (status, fraction) in enumerate(entries)
        ],
    )


def test_overall_progress_counts_done_actions_whole_and_running_ones_by_fraction() -> None:
    view = _progress(("completed", 1.0), ("skipped", 0.0), ("running", 0.5), ("pending", 0.7))
    assert view.overall_progress == pytest.approx((1 + 1 + 0.5 + 0) / 4)
    assert view.completed_actions == 2
    assert view.total_actions == 4
    # A failed action's own fraction does not count as done work.
    assert _progress(("failed", 0.9), ("pending", 0.0)).overall_progress == 0.0
    assert PipelineProgress(run_id="r").overall_progress == 0.0


def test_actions_is_the_progress_list_and_action_finds_by_name() -> None:
    view = _progress(("running", 0.2), ("pending", 0.0))
    assert view.actions is view.progress
    assert view.action("a1") is view.progress[1]
    assert view.action("missing") is None


def test_action_progress_bounds_are_validated() -> None:
    with pytest.raises(pydantic.ValidationError, match="progress"):
        ActionProgress(name="a", progress=1.5)
    with pytest.raises(pydantic.ValidationError, match="status"):
        ActionProgress(name="a", status="done")


def test_timestamps_serialize_with_a_utc_offset_and_naive_times_are_utc() -> None:
    local = timezone(timedelta(hours=2))
    entry = ActionProgress(
        name="a",
        started_at=datetime(2024, 5, 1, 12, 0, tzinfo=local),
        completed_at=datetime(2024, 5, 1, 12, 30),
    )
    data = json.loads(entry.model_dump_json())
    assert data["started_at"] == "2024-05-01T10:00:00+00:00"
    assert data["completed_at"] == "2024-05-01T12:30:00+00:00"
    assert ActionProgress.model_validate(data) == entry


def test_pipeline_definition_fields_match_the_guide() -> None:
    definition = PipelineDefinition(name="p", actions=["mod.A", int])
    assert [f.name for f in fields(PipelineDefinition)] == ["name", "actions", "description"]
    assert definition.description is None
