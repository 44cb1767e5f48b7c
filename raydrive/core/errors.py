"""raydrive's exceptions: one tree, so callers can catch as broadly or as narrowly as they need.

::

    RaydriveError
    ├── DriverNotFoundError (LookupError)      unknown driver name; lists the known ones
    ├── DriverLoadError                        the driver's entry point failed to import
    ├── InvalidOptionsError (ValueError)       a driver option is misspelt or has a bad value
    ├── ValidationError (ValueError)           action params fail the action's params model
    ├── ActionImportError (ImportError)        an ``module.Class`` entrypoint cannot be imported
    ├── ResourceVetoError                      a resources hook refused the request
    ├── SubmissionError                        nothing was submitted: fix the cause, submit again
    │   ├── ClusterUnreachableError (ConnectionError)
    │   ├── WorkingDirError                    missing, or too large for Ray's package limit
    │   ├── InfeasibleResourcesError           no node of the cluster can ever satisfy it
    │   ├── DuplicateJobError                  the job id is already in use
    │   └── AuthenticationError                the cluster (dashboard) refused the credentials (401/403)
    ├── ExecutionError                         the job ran and failed (remote type + traceback)
    │   ├── ActorDiedError                     the worker process died under the call
    │   ├── JobNotFoundError (LookupError)     no job / run with that id
    │   └── ExecutionTimeoutError (TimeoutError)
    └── ServiceError                           the pipeline service answered with an error
        └── ServiceUnavailableError (ConnectionError)

Every error pickles with its fields, so one raised inside a Ray worker arrives intact.
No error message ever contains a secret value: messages name keys, never values, and every
message and text field (a URL, a remote traceback, a service's ``detail``) goes through the one
redaction function (:mod:`raydrive.core.redaction`) when the error is made, so ``str``, ``repr``,
logs and pickles of it show ``***`` / ``user:***@host``.
"""

from __future__ import annotations

import traceback as _traceback
from typing import Any

from raydrive.core.redaction import redact, redact_text

__all__ = [
    "ActionImportError",
    "ActorDiedError",
    "AuthenticationError",
    "ClusterUnreachableError",
    "DriverLoadError",
    "DriverNotFoundError",
    "DuplicateJobError",
    "ExecutionError",
    "ExecutionTimeoutError",
    "InfeasibleResourcesError",
    "InvalidOptionsError",
    "JobNotFoundError",
    "RaydriveError",
    "ResourceVetoError",
    "ServiceError",
    "ServiceUnavailableError",
    "SubmissionError",
    "ValidationError",
    "WorkingDirError",
]


class RaydriveError(Exception):
    """Base of every error raydrive raises."""

    # False only where the message is built from field names and fixed texts, never values
    # (redacting "auth_token: unknown option" would hide the problem, not a secret).
    _redact_message = True

    def __init__(self, message: str = "", **fields: Any) -> None:
        message = redact_text(str(message)) if self._redact_message else str(message)
        fields = {k: _redacted_field(k, v) for k, v in fields.items()}
        super().__init__(message)
        self.message = message
        for key, value in fields.items():
            setattr(self, key, value)
        self._fields = fields

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuild through keyword fields so subclasses with their own attributes survive pickling
        # across a Ray worker boundary.
        return (_rebuild, (type(self), self.message, self._fields))

    def __str__(self) -> str:
        return self.message


def _redacted_field(key: str, value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if key == "detail" and value is not None:  # a service's error body, any JSON shape
        return redact(value)
    return value


def _rebuild(cls: type[RaydriveError], message: str, fields: dict[str, Any]) -> RaydriveError:
    err = cls.__new__(cls)
    RaydriveError.__init__(err, message, **fields)
    return err


class DriverNotFoundError(RaydriveError, LookupError):
    """No driver is registered under the requested name."""

    def __init__(self, name: str, group: str, available: list[str]) -> None:
        known = ", ".join(sorted(available)) or "none"
        super().__init__(
            f"no driver named {name!r} in entry-point group {group!r}; known drivers: {known}",
            name=name,
            group=group,
            available=sorted(available),
        )


class DriverLoadError(RaydriveError):
    """The requested driver is registered but its entry point failed to load."""

    def __init__(self, name: str, cause: BaseException | str) -> None:
        super().__init__(f"could not load driver {name!r}: {cause}", name=name)


class InvalidOptionsError(RaydriveError, ValueError):
    """A driver option is unknown or has a bad value. ``errors`` lists ``(field, problem)``."""

    _redact_message = False  # the problems are redacted one by one below

    def __init__(self, driver: str, errors: list[tuple[str, str]]) -> None:
        # Each problem on its own (a validator may quote a value); field names as they are.
        errors = [(field, redact_text(str(problem))) for field, problem in errors]
        detail = "; ".join(f"{field}: {problem}" for field, problem in errors)
        super().__init__(f"invalid options for driver {driver!r}: {detail}", driver=driver, errors=errors)


class ValidationError(RaydriveError, ValueError):
    """Action params do not match the action's params model.

    ``errors`` is a list of ``{"loc": [...], "msg": ..., "type": ...}`` as pydantic reports them.
    """

    def __init__(
        self, message: str, *, action: str | None = None, errors: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(message, action=action, errors=errors or [])


class ActionImportError(RaydriveError, ImportError):
    """An action given as ``module.Class`` could not be imported or is not a BaseAction."""

    def __init__(self, entrypoint: str, reason: str) -> None:
        super().__init__(f"cannot load action {entrypoint!r}: {reason}", entrypoint=entrypoint, reason=reason)


class ResourceVetoError(RaydriveError):
    """A resources hook refused the resource request of an action (raise it from the hook)."""


class SubmissionError(RaydriveError):
    """The job could not be submitted; nothing is running on its behalf."""


class ClusterUnreachableError(SubmissionError, ConnectionError):
    """The Ray cluster (or its dashboard) did not answer within the connect timeout."""


class WorkingDirError(SubmissionError):
    """The working directory is missing or too large to ship to the cluster."""


class InfeasibleResourcesError(SubmissionError):
    """No node of the cluster can ever satisfy the resource request."""


class DuplicateJobError(SubmissionError):
    """A job or run with this id already exists."""


class AuthenticationError(SubmissionError):
    """The cluster's dashboard refused the request's credentials (HTTP 401 / 403)."""


class ExecutionError(RaydriveError):
    """The action ran and failed, or its outcome cannot be obtained.

    ``error_type``, ``error_message`` and ``remote_traceback`` describe the exception raised where the
    action ran (in a Ray worker for the Ray drivers); ``job_id`` names the job when known.
    """

    def __init__(
        self,
        message: str,
        *,
        error_type: str | None = None,
        error_message: str | None = None,
        remote_traceback: str | None = None,
        job_id: str | None = None,
    ) -> None:
        super().__init__(
            message,
            error_type=error_type,
            error_message=error_message,
            remote_traceback=remote_traceback,
            job_id=job_id,
        )

    @classmethod
    def from_exception(
        cls, exc: BaseException, *, action: str | None = None, job_id: str | None = None
    ) -> ExecutionError:
        """Describe ``exc`` (caught where the action ran) as an ExecutionError."""
        tb = "".join(_traceback.format_exception(type(exc), exc, exc.__traceback__))
        where = f"action {action!r}" if action else "action"
        return cls(
            f"{where} failed: {type(exc).__name__}: {exc}",
            error_type=type(exc).__name__,
            error_message=str(exc),
            remote_traceback=tb,
            job_id=job_id,
        )

    def __str__(self) -> str:
        if self.remote_traceback:
            return f"{self.message}\n\nRemote traceback:\n{self.remote_traceback.rstrip()}"
        return self.message


class ActorDiedError(ExecutionError):
    """The worker process running the action died (killed, out of memory, ``os._exit``)."""


class JobNotFoundError(ExecutionError, LookupError):
    """No job (or pipeline run) with this id is known.

    Kept under ExecutionError on purpose: the reference guide's users wrap ``get_result`` and
    ``wait`` in ``except ExecutionError`` (its "Handle Errors Gracefully"), and a job whose record
    expired (ray-job's ``result_ttl``) or was deleted meanwhile must still land there. It is also
    a LookupError, which is what a caller that tells the two apart catches.
    """


class ExecutionTimeoutError(ExecutionError, TimeoutError):
    """Waiting for a job or run took longer than the given timeout, or the job passed its own
    deadline (``timeout_s``) and was stopped on the cluster: then ``reason`` is
    ``"deadline exceeded"`` (:data:`raydrive.core.retry.DEADLINE_EXCEEDED`) and its status FAILED."""

    def __init__(self, message: str, *, reason: str | None = None, **fields: Any) -> None:
        super().__init__(message, **fields)
        self.reason = reason
        self._fields = {**self._fields, "reason": reason}


class ServiceError(RaydriveError):
    """The pipeline service answered with an error status. ``status_code`` and ``detail`` say which."""

    def __init__(
        self, message: str, *, status_code: int | None = None, detail: Any = None, url: str | None = None
    ) -> None:
        super().__init__(message, status_code=status_code, detail=detail, url=url)


class ServiceUnavailableError(ServiceError, ConnectionError):
    """The pipeline service could not be reached."""
