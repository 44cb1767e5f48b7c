"""Every registered driver against the executor protocols it claims (what the CLI programs against)."""

from __future__ import annotations

import inspect

import pytest

from raydrive.core.protocols import (
    AsyncExecutor,
    Executor,
    LogStreamingExecutor,
    PipelineExecutor,
    RetryingExecutor,
    SyncExecutor,
)
from raydrive.core.registry import get_registry

CLAIMS = {
    "local": [SyncExecutor, AsyncExecutor],
    "ray-actor": [SyncExecutor, RetryingExecutor],
    "ray-task": [SyncExecutor, RetryingExecutor],
    "ray-job": [AsyncExecutor, RetryingExecutor],
    "ray-jobs-api": [LogStreamingExecutor, RetryingExecutor],
    "ray-pipeline": [PipelineExecutor],  # get_attempts(run_id): named as its other methods
}


def _members(protocol: type) -> set[str]:
    names: set[str] = set()
    for klass in protocol.__mro__:
        if klass in (object,) or not getattr(klass, "_is_protocol", False):
            continue
        names |= {
            n
            for n, v in vars(klass).items()
            if callable(v) and (not n.startswith("_") or n in {"__enter__", "__exit__"})
        }
    return names


def test_every_built_in_driver_makes_a_claim():
    assert set(CLAIMS) <= set(get_registry().names())


@pytest.mark.parametrize("name", sorted(CLAIMS))
def test_driver_has_every_member_of_the_protocols_it_claims(name):
    cls = get_registry().get(name)
    for protocol in [Executor, *CLAIMS[name]]:
        for member in _members(protocol):
            assert callable(getattr(cls, member, None)), f"{name} lacks {protocol.__name__}.{member}"
            wanted = [p for p in inspect.signature(getattr(protocol, member)).parameters if p != "self"]
            have = inspect.signature(getattr(cls, member)).parameters
            positional = [p for p in wanted if p not in ("args", "kwargs")]
            missing = [p for p in positional if p not in have and "kwargs" not in have]
            assert not missing, f"{name}.{member} lacks parameters {missing}"


@pytest.mark.parametrize("name", ["local", "ray-job", "ray-jobs-api"])
def test_async_drivers_cancel_with_the_same_meaning(name):
    # cancel(job_id) -> bool on every asynchronous driver: the CLI's `stop` calls nothing else.
    cls = get_registry().get(name)
    assert inspect.signature(cls.cancel).return_annotation in (bool, "bool")


def test_local_driver_instance_satisfies_its_protocols_at_runtime():
    with get_registry().get("local")() as ex:
        assert isinstance(ex, SyncExecutor) and isinstance(ex, AsyncExecutor)
        job = ex.submit("tests.actions_for_tests.AddAction", {"a": 1})
        assert ex.get_result(job) is not None
        assert ex.cancel(job) is False  # already ended
