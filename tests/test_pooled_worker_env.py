"""The pooled worker's environment scope: what a job sets, changes or removes does not outlive it.

``scoped_environ`` runs in-process here (it is plain Python); the pooled path that uses it runs on
a real cluster in ``test_ray_job.py`` and ``security/test_ray_job_secrets.py``.
"""

from __future__ import annotations

import os

import pytest

from raydrive.drivers.ray_job.worker import scoped_environ


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RD_TEST_KEEP", "kept")
    monkeypatch.setenv("RD_TEST_CHANGE", "original")
    monkeypatch.setenv("RD_TEST_REMOVE", "present")
    monkeypatch.delenv("RD_TEST_SECRET", raising=False)
    monkeypatch.delenv("RD_TEST_ADDED", raising=False)


def test_the_jobs_variables_are_set_inside_and_gone_after(clean_env: None) -> None:
    with scoped_environ({"RD_TEST_SECRET": "s3cr3t", "RD_TEST_KEEP": "shadowed"}):
        assert os.environ["RD_TEST_SECRET"] == "s3cr3t"
        assert os.environ["RD_TEST_KEEP"] == "shadowed"
    assert "RD_TEST_SECRET" not in os.environ
    assert os.environ["RD_TEST_KEEP"] == "kept"
    assert os.getenv("RD_TEST_SECRET") is None


def test_what_the_action_itself_changed_is_put_back(clean_env: None) -> None:
    before = dict(os.environ)
    with scoped_environ({}):
        os.environ["RD_TEST_ADDED"] = "by the action"
        os.environ["RD_TEST_CHANGE"] = "changed"
        del os.environ["RD_TEST_REMOVE"]
    assert dict(os.environ) == before


def test_the_environment_is_restored_when_the_job_raises(clean_env: None) -> None:
    before = dict(os.environ)
    with pytest.raises(RuntimeError), scoped_environ({"RD_TEST_SECRET": "s3cr3t"}):
        os.environ["RD_TEST_CHANGE"] = "changed"
        raise RuntimeError("the action failed")
    assert dict(os.environ) == before


def test_subprocesses_see_the_restored_environment(clean_env: None) -> None:
    # putenv must follow os.environ: a child started after the job must not inherit the secret.
    import subprocess
    import sys

    with scoped_environ({"RD_TEST_SECRET": "s3cr3t"}):
        os.environ["RD_TEST_CHANGE"] = "changed"
    out = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getenv('RD_TEST_SECRET'), os.getenv('RD_TEST_CHANGE'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out == ["None", "original"]


def test_a_variable_refused_halfway_leaves_none_of_the_jobs_variables_set(clean_env: None) -> None:
    # os.environ refuses a name with "=" only when it reaches it: the secret before it was set.
    before = dict(os.environ)
    with pytest.raises(ValueError), scoped_environ({"RD_TEST_SECRET": "s3cr3t", "BAD=NAME": "x"}):
        pass
    assert dict(os.environ) == before
