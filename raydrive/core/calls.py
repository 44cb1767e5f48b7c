"""Per-call options: what ``submit`` / ``execute`` take beside the action and its params, checked
once here for every driver (one error type, :class:`~raydrive.core.errors.InvalidOptionsError`,
and one bound for each).

A per-call value comes from code, so it must already have its type: ``timeout_s=True`` or
``timeout_s="30"`` is refused, as Stripe's API refuses a string for a number (the driver options,
which may come from environment variables, still read ``"30"`` as 30). The bounds are those of the
options of the same name (:class:`~raydrive.core.retry.JobPolicyOptions`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from raydrive.core.options import validate_options
from raydrive.core.retry import MAX_TIMEOUT_S

__all__ = ["MAX_PRIORITY", "MIN_PRIORITY", "CallOptions", "check_call"]

MIN_PRIORITY, MAX_PRIORITY = -(2**31), 2**31 - 1
"""The range of a job's ``priority`` (a 32-bit integer, as Kubernetes' PriorityClass value)."""


class CallOptions(BaseModel):
    """The per-call options a driver takes (each driver takes the ones it supports)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    timeout_s: float | None = Field(
        default=None, gt=0, le=MAX_TIMEOUT_S, description="This call's deadline in seconds (per attempt)."
    )
    priority: int = Field(
        default=0, ge=MIN_PRIORITY, le=MAX_PRIORITY, description="The job's place in its queue."
    )


def check_call(driver: str, **given: Any) -> CallOptions:
    """The per-call options ``given`` to ``driver``'s ``submit``/``execute``, checked.

    :raises InvalidOptionsError: a value of the wrong type or out of bounds (naming each).
    """
    checked = validate_options(driver, CallOptions, given)
    assert isinstance(checked, CallOptions)
    return checked
