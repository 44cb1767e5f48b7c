"""The per-call options (raydrive.core.calls): one check, one error type and one bound on every
Ray driver, before anything reaches a cluster or a service (none runs here: the addresses below
answer nothing)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import raydrive
from raydrive import InvalidOptionsError

NOWHERE = "127.0.0.1:9"  # the discard port: nothing listens
ADD = "tests.actions_for_tests.AddAction"


def _calls() -> dict[str, Callable[..., Any]]:
    actor = raydrive.get_executor("ray-actor", ray_address=NOWHERE, connect_timeout=1)
    job = raydrive.get_executor("ray-job", ray_address=NOWHERE, connect_timeout=1)
    api = raydrive.get_executor("ray-jobs-api", dashboard_address=f"http://{NOWHERE}", connect_timeout=1)
    pipeline = raydrive.get_executor(
        "ray-pipeline", ray_address=NOWHERE, pipeline_service_url=f"http://{NOWHERE}", connect_timeout=1
    )
    return {
        "ray-actor": lambda **kw: actor.execute(ADD, {"a": 1}, **kw),
        "ray-task": lambda **kw: actor.execute(ADD, {"a": 1}, **kw),
        "ray-job": lambda **kw: job.submit(ADD, {"a": 1}, **kw),
        "ray-jobs-api": lambda **kw: api.submit(ADD, {"a": 1}, **kw),
        "ray-pipeline": lambda **kw: pipeline.submit([ADD], {"a": 1}, name="p", **kw),
    }


CALLS = _calls()
BAD_TIMEOUTS = [True, False, "abc", "30", 0, -1, float("nan"), float("inf"), 10 * 365 * 86400 + 1, [1]]


@pytest.mark.parametrize("driver", sorted(CALLS))
@pytest.mark.parametrize("bad", BAD_TIMEOUTS, ids=repr)
def test_a_bad_timeout_is_refused_alike_on_every_driver(driver: str, bad: Any) -> None:
    with pytest.raises(InvalidOptionsError) as info:
        CALLS[driver](timeout_s=bad)
    assert [field for field, _ in info.value.errors] == ["timeout_s"], info.value.errors
    assert bad is not True or "valid number" in str(info.value)


@pytest.mark.parametrize("bad", [True, "high", 1.5, 2**31, -(2**31) - 1])
def test_a_bad_priority_is_refused_with_the_same_error(bad: Any) -> None:
    with pytest.raises(InvalidOptionsError) as info:
        CALLS["ray-job"](priority=bad)
    assert [field for field, _ in info.value.errors] == ["priority"]


def test_the_bounds_are_the_options_bounds() -> None:
    from raydrive.core.calls import CallOptions
    from raydrive.core.retry import MAX_TIMEOUT_S, JobPolicyOptions

    for model in (CallOptions, JobPolicyOptions):
        meta = {type(m).__name__: m for m in model.model_fields["timeout_s"].metadata}
        assert meta["Gt"].gt == 0 and meta["Le"].le == MAX_TIMEOUT_S
