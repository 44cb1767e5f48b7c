"""Ray's exceptions map to raydrive's through one table, and the errors module's docstring is that table.

These build real ``ray.exceptions`` instances (no cluster needed); tests/test_ray_layer.py checks the
same mapping on exceptions a real cluster raised.
"""

from __future__ import annotations

import textwrap

import pytest

from raydrive.core.errors import (
    ActorDiedError,
    ClusterUnreachableError,
    ExecutionError,
    ExecutionTimeoutError,
    InfeasibleResourcesError,
    SubmissionError,
    ValidationError,
)
from raydrive.drivers.ray import errors
from raydrive.drivers.ray.errors import RAY_ERROR_TABLE, is_actor_death, to_raydrive_error

rex = pytest.importorskip("ray.exceptions")


def test_the_docstring_shows_the_table_as_it_is() -> None:
    rendered = textwrap.indent(errors._table_doc(), "    ")
    assert rendered in (errors.__doc__ or ""), (
        "the table in raydrive/drivers/ray/errors.py's docstring differs from RAY_ERROR_TABLE; "
        "paste the output of `python -c 'from raydrive.drivers.ray.errors import _table_doc; "
        "print(_table_doc())'` (indented by 4) there:\n" + rendered
    )
    for row in RAY_ERROR_TABLE:
        for name in row.ray:
            assert name in errors.__doc__


def test_every_class_the_table_names_exists_in_this_ray() -> None:
    missing = [
        name for row in RAY_ERROR_TABLE for name in row.ray if not isinstance(getattr(rex, name, None), type)
    ]
    assert not missing, f"ray.exceptions has no {missing}: update RAY_ERROR_TABLE"


def test_the_last_row_catches_every_ray_error() -> None:
    assert RAY_ERROR_TABLE[-1].ray == ("RayError",)


def _task(cause: BaseException | None) -> BaseException:
    return rex.RayTaskError("f", "Traceback (most recent call last):\nKeyError: 'k'", cause)


CASES = [
    (rex.RayActorError(error_msg="boom"), ActorDiedError),
    (rex.ActorDiedError(), ActorDiedError),
    (rex.ActorUnavailableError("gone", None), ActorDiedError),
    (rex.WorkerCrashedError("w"), ActorDiedError),
    (rex.OutOfMemoryError("oom"), ActorDiedError),
    (rex.NodeDiedError("nd"), ActorDiedError),
    (rex.LocalRayletDiedError("lr"), ActorDiedError),
    (rex.GetTimeoutError("t"), ExecutionTimeoutError),
    (rex.TaskCancelledError(error_message="c"), ExecutionError),
    (rex.RuntimeEnvSetupError("rt"), ExecutionError),
    (rex.TaskUnschedulableError("u"), InfeasibleResourcesError),
    (rex.ActorUnschedulableError("au"), InfeasibleResourcesError),
    (rex.PendingCallsLimitExceeded("p"), SubmissionError),
    (rex.ObjectLostError("ab", None, "cs"), ExecutionError),
    (rex.OwnerDiedError("ab", None, "cs"), ExecutionError),  # an ObjectLostError
    (rex.AuthenticationError("auth"), ClusterUnreachableError),
    (rex.RaySystemError("sys"), ExecutionError),  # no row of its own: the RayError row
    (_task(KeyError("k")), ExecutionError),
    (_task(rex.GetTimeoutError("inner")), ExecutionTimeoutError),  # a Ray cause by its own row
]


@pytest.mark.parametrize(("exc", "expected"), CASES, ids=[type(c[0]).__name__ for c in CASES])
def test_each_row_gives_its_error(exc: BaseException, expected: type) -> None:
    mapped = to_raydrive_error(exc, action="act", job_id="j-1", address="ray://h:1")
    assert type(mapped) is expected
    if isinstance(mapped, ExecutionError):
        assert mapped.job_id == "j-1"
    assert is_actor_death(exc) is (expected is ActorDiedError)


def test_error_details_are_kept() -> None:
    died = to_raydrive_error(rex.OutOfMemoryError("node full"), action="act")
    assert "out of memory" in str(died) and died.error_type == "OutOfMemoryError" and is_actor_death(died)
    cancelled = to_raydrive_error(rex.TaskCancelledError(error_message="stop"))
    assert cancelled.error_type == "TaskCancelledError"
    failed = to_raydrive_error(_task(KeyError("k")), action="act", job_id="j-1")
    assert failed.error_type == "KeyError" and "KeyError" in failed.remote_traceback
    assert "'act'" in str(failed) and "'j-1'" in str(failed)


def test_a_raydrive_error_from_the_worker_comes_back_as_itself() -> None:
    inner = ValidationError("bad params for X", action="X", errors=[])
    assert to_raydrive_error(_task(inner)) is inner


def test_what_is_not_rays() -> None:
    plain = ValueError("not Ray's")
    assert to_raydrive_error(plain) is plain
    assert to_raydrive_error(ConnectionError("reset")).__class__ is ConnectionError  # no address
    mapped = to_raydrive_error(ConnectionError("reset"), address="ray://h:1")
    assert isinstance(mapped, ClusterUnreachableError) and "ray://h:1" in str(mapped)
    own = ExecutionError("mine")
    assert to_raydrive_error(own) is own
