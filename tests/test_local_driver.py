from __future__ import annotations

import pytest

import raydrive
from raydrive import (
    DuplicateJobError,
    ExecutionError,
    JobNotFoundError,
    ValidationError,
    hookimpl,
)
from raydrive.core.protocols import AsyncExecutor, SyncExecutor
from tests.actions_for_tests import AddAction, BoomAction, EnvAction


def test_local_execute_runs_in_process():
    with raydrive.get_executor("local") as executor:
        assert isinstance(executor, SyncExecutor)
        assert executor.execute(AddAction, {"a": 1, "b": 2}) == {"total": 3}
        assert executor.execute("tests.actions_for_tests.AddAction", {"a": 5}) == {"total": 6}


def test_local_errors_match_the_ray_drivers():
    executor = raydrive.get_executor("local")
    with pytest.raises(ValidationError):
        executor.execute(AddAction, {"b": 2})
    with pytest.raises(ExecutionError) as info:
        executor.execute(BoomAction, {})
    assert info.value.error_type == "RuntimeError"


def test_local_async_submit_status_wait_result():
    with raydrive.get_executor("local", max_workers=2) as executor:
        assert isinstance(executor, AsyncExecutor)
        job = executor.submit(AddAction, {"a": 40, "b": 2}, job_id="answer")
        assert job == "answer"
        assert executor.wait(job, timeout_seconds=10) == "SUCCEEDED"
        assert executor.get_status(job) == "SUCCEEDED"
        assert executor.get_result(job) == {"total": 42}
        with pytest.raises(DuplicateJobError):
            executor.submit(AddAction, {"a": 1}, job_id="answer")
        failed = executor.submit(BoomAction, {})
        with pytest.raises(ExecutionError):
            executor.wait(failed, timeout_seconds=10)
        assert executor.get_status(failed) == "FAILED"
        with pytest.raises(JobNotFoundError):
            executor.get_result("nope")


def test_local_submit_validates_before_submitting():
    executor = raydrive.get_executor("local")
    with pytest.raises(ValidationError):
        executor.submit(AddAction, {"a": "x"})


def test_local_env_follows_the_environment_policy(monkeypatch):
    monkeypatch.setenv("SYNAPSE_HOST", "https://synapse.example")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_planted")
    result = raydrive.get_executor("local").execute(EnvAction, {"keys": ["SYNAPSE_HOST", "GITHUB_TOKEN"]})
    assert result["ctx"] == {"SYNAPSE_HOST": "https://synapse.example", "GITHUB_TOKEN": None}


def test_local_emits_lifecycle_events(plugin_manager):
    events = []

    class Recorder:
        @hookimpl
        def raydrive_job_submitted(self, event):
            events.append(("submitted", event.job_id, event.action))

        @hookimpl
        def raydrive_job_finished(self, event):
            events.append(("finished", event.job_id, event.status))

    plugin_manager.register(Recorder(), name="recorder")
    executor = raydrive.get_executor("local")
    executor.execute(AddAction, {"a": 1}, job_id="j1")
    job = executor.submit(BoomAction, {}, job_id="j2")
    with pytest.raises(ExecutionError):
        executor.get_result(job)
    with pytest.raises(ExecutionError):
        executor.get_result(job)  # reported once only
    assert events == [
        ("submitted", "j1", "AddAction"),
        ("finished", "j1", "SUCCEEDED"),
        ("submitted", "j2", "BoomAction"),
        ("finished", "j2", "FAILED"),
    ]
