"""Retries and deadlines: one policy for every driver, resolved once per submission.

``retries``, ``retry_on`` and ``retry_backoff`` are driver options (:class:`JobPolicyOptions`) and
may also be declared on an action class; an option that is given wins over the class::

    class Train(BaseAction[TrainParams]):
        retries = 2
        retry_on = "infra"          # or "any", or ["OSError", "TimeoutError"]

What is retried (:meth:`RetryPolicy.should_retry`), as Ray, Temporal and Airflow do it:

- ``"infra"`` (default): the process or node died (ActorDiedError), the runtime env could not be
  set up (``RuntimeEnvSetupError``), the cluster was briefly unreachable (ClusterUnreachableError);
- ``"any"``: also any exception the action raised;
- a list of exception type names: infrastructure failures, and the action's exceptions of those
  types (by the remote type's name, e.g. ``"OSError"``).

A deadline (``timeout_s``, :data:`DEADLINE_EXCEEDED`) is never retried unless ``retry_on`` names
``"ExecutionTimeoutError"``: a job that ran out of time would most likely run out of time again.
Invalid params, an action that cannot be imported and infeasible resources are never retried.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from raydrive.core.errors import (
    ActionImportError,
    ActorDiedError,
    ClusterUnreachableError,
    ExecutionError,
    ExecutionTimeoutError,
    SubmissionError,
    ValidationError,
)

__all__ = [
    "DEADLINE_EXCEEDED",
    "INFRA_ERROR_TYPES",
    "WORKER_DEATH_ERROR_TYPES",
    "Attempt",
    "JobPolicyOptions",
    "RetryBackoff",
    "RetryPolicy",
    "deadline_error",
]

DEADLINE_EXCEEDED = "deadline exceeded"
"""The reason (``ExecutionTimeoutError.reason``) of a job stopped at its ``timeout_s``."""

WORKER_DEATH_ERROR_TYPES = (
    "RayActorError",
    "ActorDiedError",
    "ActorUnavailableError",
    "WorkerCrashedError",
    "OutOfMemoryError",
    "NodeDiedError",
    "LocalRayletDiedError",
)
"""Ray's exception class names that mean "the process running the work is gone" (mapped to
ActorDiedError by :mod:`raydrive.drivers.ray.errors`)."""

INFRA_ERROR_TYPES = frozenset(
    {
        *WORKER_DEATH_ERROR_TYPES,
        "RuntimeEnvSetupError",
        "ClusterUnreachableError",
        "ObjectLostError",
        "OwnerDiedError",
    }
)
"""Remote error types (``ExecutionError.error_type``) that mean the infrastructure failed, not the action."""

_MAX_RETRIES = 100
MAX_TIMEOUT_S = 10 * 365 * 86400
"""The longest deadline (``timeout_s``, option or per call): ten years."""


class RetryBackoff(BaseModel):
    """Exponential backoff between attempts: ``initial * factor**(n-1)``, capped at ``max``, each
    delay spread by ``+-jitter`` (a fraction) so that many jobs retried at once do not return at once."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    initial: float = Field(default=1.0, ge=0, le=3600, description="Seconds before the first retry.")
    max: float = Field(default=60.0, ge=0, le=86400, description="The longest delay.")
    factor: float = Field(default=2.0, ge=1, le=10, description="Growth per retry.")
    jitter: float = Field(default=0.1, ge=0, le=1, description="Random spread, a fraction of the delay.")

    def delay(self, retry: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first retry)."""
        base = min(self.max, self.initial * self.factor ** max(0, retry - 1))
        if not self.jitter or not base:
            return base
        spread = base * self.jitter
        return max(0.0, base + (rng or random).uniform(-spread, spread))


RetryOn = Literal["infra", "any"] | list[str]

_NO_BACKOFF_GIVEN = RetryBackoff()  # frozen, so one shared default is safe


class JobPolicyOptions(BaseModel):
    """Options of retries and deadlines, shared by the Ray drivers (see the module docstring)."""

    retries: int | None = Field(
        default=None, ge=0, le=_MAX_RETRIES, description="Retries after a failed attempt (default 0)."
    )
    retry_on: RetryOn | None = Field(
        default=None, description="'infra' (default), 'any', or a list of exception type names."
    )
    retry_backoff: RetryBackoff | None = Field(default=None, description="Delay between attempts.")
    timeout_s: float | None = Field(
        default=None, gt=0, le=MAX_TIMEOUT_S, description="Deadline of a job, enforced on the cluster."
    )
    setup_timeout_s: float | None = Field(
        default=None, gt=0, le=86400, description="Bound on the runtime env's setup (pip/uv)."
    )

    @field_validator("retry_on")
    @classmethod
    def _names(cls, value: Any) -> Any:
        if isinstance(value, list) and (
            len(value) > 100 or not all(isinstance(v, str) and v.isidentifier() for v in value)
        ):
            raise ValueError("retry_on must be 'infra', 'any' or a list of exception type names")
        return value


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """The retry policy of one job: options first, then the action class, then the defaults."""

    retries: int = 0
    retry_on: str | tuple[str, ...] = "infra"
    backoff: RetryBackoff = _NO_BACKOFF_GIVEN

    @classmethod
    def resolve(cls, options: Any, action: type | None = None) -> RetryPolicy:
        """The policy for ``action`` under ``options`` (either may lack the fields).

        :raises ValidationError: the action class declares an invalid policy.
        """
        declared = {
            name: getattr(action, name)
            for name in ("retries", "retry_on", "retry_backoff")
            if action is not None and getattr(action, name, None) is not None
        }
        given = {
            name: getattr(options, name)
            for name in ("retries", "retry_on", "retry_backoff")
            if getattr(options, name, None) is not None
        }
        merged = {**declared, **given}
        if not merged:
            return _DEFAULT
        try:
            checked = JobPolicyOptions.model_validate(
                {k: (v.model_dump() if isinstance(v, BaseModel) else v) for k, v in merged.items()}
            )
        except Exception as exc:
            name = getattr(action, "__name__", "the action")
            raise ValidationError(f"invalid retry policy declared on {name}: {exc}") from None
        retry_on = checked.retry_on or "infra"
        return cls(
            retries=checked.retries or 0,
            retry_on=tuple(retry_on) if isinstance(retry_on, list) else retry_on,
            backoff=checked.retry_backoff or RetryBackoff(),
        )

    @property
    def max_attempts(self) -> int:
        return self.retries + 1

    def should_retry(self, error: BaseException, attempt: int) -> bool:
        """Whether a job whose attempt number ``attempt`` (1 = the first) failed with ``error``
        gets another attempt."""
        if attempt > self.retries:
            return False
        return self.retryable(error)

    def retryable(self, error: BaseException) -> bool:
        """Whether ``error`` is of a kind this policy retries (ignoring how many attempts are left)."""
        if isinstance(error, ExecutionTimeoutError) or getattr(error, "reason", None) == DEADLINE_EXCEEDED:
            return isinstance(self.retry_on, tuple) and "ExecutionTimeoutError" in self.retry_on
        if isinstance(error, ValidationError | ActionImportError):
            return False
        if isinstance(error, ActorDiedError | ClusterUnreachableError):
            return True
        if isinstance(error, SubmissionError):
            return False  # infeasible, duplicate id, refused credentials: another try changes nothing
        error_type = getattr(error, "error_type", None) or type(error).__name__
        if error_type in INFRA_ERROR_TYPES:
            return True
        if self.retry_on == "any":
            return isinstance(error, ExecutionError | Exception)
        if isinstance(self.retry_on, tuple):
            return error_type in self.retry_on
        return False

    def to_wire(self) -> dict[str, Any]:
        """Plain data for a cluster-side runner (ray-job's registry, the pipeline actor)."""
        return {
            "retries": self.retries,
            "retry_on": list(self.retry_on) if isinstance(self.retry_on, tuple) else self.retry_on,
            "backoff": self.backoff.model_dump(),
        }

    @classmethod
    def from_wire(cls, data: Mapping[str, Any] | None) -> RetryPolicy:
        if not data:
            return _DEFAULT
        retry_on = data.get("retry_on", "infra")
        return cls(
            retries=int(data.get("retries", 0)),
            retry_on=tuple(retry_on) if isinstance(retry_on, list | tuple) else str(retry_on),
            backoff=RetryBackoff.model_validate(data.get("backoff") or {}),
        )


_DEFAULT = RetryPolicy()


class Attempt(BaseModel):
    """One attempt of a job: when it ran, how it ended, and its error (already redacted)."""

    model_config = ConfigDict(frozen=True)

    number: int = Field(ge=1)
    state: str
    started_at: float | None = None
    ended_at: float | None = None
    error_type: str | None = None
    error: str | None = None
    submission_id: str | None = None


def deadline_error(job_id: str, timeout_s: float, action: str | None = None) -> ExecutionTimeoutError:
    """The error of a job stopped at its deadline (``status`` FAILED, reason ``deadline exceeded``)."""
    what = f"action {action!r} (job {job_id!r})" if action else f"job {job_id!r}"
    return ExecutionTimeoutError(
        f"{what} passed its deadline of {timeout_s:g} s and was stopped",
        job_id=job_id,
        reason=DEADLINE_EXCEEDED,
        error_type="ExecutionTimeoutError",
        error_message=DEADLINE_EXCEEDED,
    )
