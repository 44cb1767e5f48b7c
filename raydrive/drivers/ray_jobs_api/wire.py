"""What crosses between ray-jobs-api's submitter and the job's entry, typed, packed and unpacked here only.

One module, so that a change to a message is made on both ends at once:

============================  =================================================  ==================
message                       carries                                            packed as
============================  =================================================  ==================
:class:`Payload`              the job's input (a GCS package)                    JSON
:class:`Outcome`              the job's result or error                          JSON
:class:`RemoteError`          the error schema of every outcome                  JSON
============================  =================================================  ==================

and the names both ends derive: submission ids of attempts, the outcome file's path, what a job
id may be. Secrets travel only in the payload (never in a runtime env, which Ray's state API and
the dashboard show).

Kept light (no Ray, httpx or pydantic import): the job's entry imports it before anything else.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "PAYLOAD_DIR_PREFIX",
    "PAYLOAD_FILE",
    "PAYLOAD_PREFIX",
    "PROTOCOL",
    "Outcome",
    "Payload",
    "RemoteError",
    "attempt_of",
    "attempt_submission_id",
    "result_filename",
    "valid_job_id",
]

PROTOCOL = 3  # 2: the action may travel pickled (a class defined in __main__); 3: deadline, retries
PAYLOAD_FILE = "payload.json"
PAYLOAD_PREFIX = "_raydrive_payload_"  # of the payload package's gcs:// name
PAYLOAD_DIR_PREFIX = "_rdp_"  # of the directory inside it (one per submission)
RESULT_DIR = "raydrive"
# Letters, digits and ``_.:-``: an id is a path segment of the Jobs API and a file name on the node.
_JOB_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:\-]{0,255}")


def valid_job_id(job_id: object) -> bool:
    """Whether ``job_id`` can name a raydrive job (and be a URL path segment and a file name)."""
    return isinstance(job_id, str) and _JOB_ID.fullmatch(job_id) is not None


ATTEMPT_SEPARATOR = "--a"
_ATTEMPT_SUFFIX = re.compile(r"--a([0-9]+)$")


def attempt_submission_id(job_id: str, attempt: int) -> str:
    """Ray's submission id of attempt ``attempt`` of a ray-jobs-api job: the job id itself for the
    first attempt, ``<job id>--a<n>`` for the n-th (the Jobs API has no retries: each is a job)."""
    return job_id if attempt <= 1 else f"{job_id}{ATTEMPT_SEPARATOR}{attempt}"


def attempt_of(submission_id: str) -> tuple[str, int]:
    """``(job id, attempt)`` of a submission id made by :func:`attempt_submission_id`."""
    match = _ATTEMPT_SUFFIX.search(submission_id)
    if match is None or int(match.group(1)) < 2:
        return submission_id, 1
    return submission_id[: match.start()], int(match.group(1))


def result_filename(submission_id: str) -> str:
    """The outcome file's path relative to the Ray logs directory of the driver's node."""
    return f"{RESULT_DIR}/{submission_id}.json"


@dataclass(frozen=True)
class Payload:
    """The job's input. ``action`` is ``module.Class``; ``action_pickle`` the class by value
    (cloudpickle, base64) when it cannot be imported by name (defined in ``__main__``).

    ``timeout_s``: the deadline of each attempt, enforced by the entry's watchdog on the cluster;
    ``retry``: the job's :class:`~raydrive.core.retry.RetryPolicy` (``to_wire()``), so that the
    entry keeps the payload on disk only while a later attempt may need it. Every attempt of a
    job reads the same payload (the same package).
    """

    action: str
    params: Any = field(repr=False)
    env: dict[str, str] = field(default_factory=dict, repr=False)
    secrets: dict[str, str] = field(default_factory=dict, repr=False)
    action_pickle: str | None = None
    timeout_s: float | None = None
    retry: dict[str, Any] | None = None

    @classmethod
    def for_target(
        cls,
        target: Any,
        params: Any,
        env: Mapping[str, str],
        secrets: Mapping[str, str],
        *,
        timeout_s: float | None = None,
        retry: dict[str, Any] | None = None,
    ) -> Payload:
        """From :func:`~raydrive.drivers.ray.submission.wire_target`'s answer (a string or a class)."""
        if isinstance(target, str):
            return cls(target, params, dict(env), dict(secrets), None, timeout_s, retry)
        from ray import cloudpickle  # the submitter has Ray; only a by-value class needs it

        name = f"{target.__module__}.{target.__qualname__}"
        blob = base64.b64encode(cloudpickle.dumps(target)).decode("ascii")
        return cls(name, params, dict(env), dict(secrets), blob, timeout_s, retry)

    def pack(self) -> str:
        return json.dumps({"protocol": PROTOCOL, **dataclasses.asdict(self)})

    @classmethod
    def unpack(cls, text: str) -> Payload:
        """:raises ValueError: not a payload of this protocol (another raydrive version)."""
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("protocol") != PROTOCOL:
            got = data.get("protocol") if isinstance(data, dict) else None
            raise ValueError(
                f"payload protocol {got!r} is not {PROTOCOL}: the submitter and the cluster run "
                "different raydrive versions"
            )
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def target(self) -> Any:
        """What :func:`~raydrive.core.action.run_action` takes: the entrypoint or the class."""
        if self.action_pickle is None:
            return self.action
        from ray import cloudpickle

        return cloudpickle.loads(base64.b64decode(self.action_pickle))


@dataclass(frozen=True)
class RemoteError:
    """An error raised in the job, with what it takes to raise the same raydrive error here."""

    kind: str  # "validation", "import", "execution", "deadline" or "payload"
    type: str
    message: str
    summary: str
    traceback: str | None = None
    action: str | None = None
    errors: list[Any] | None = None
    entrypoint: str | None = None
    reason: str | None = None

    @classmethod
    def from_exception(cls, exc: BaseException, kind: str, **fields: Any) -> RemoteError:
        tb = getattr(exc, "remote_traceback", None) or "".join(
            traceback.format_exception(type(exc), exc, exc.__traceback__)
        )
        return cls(
            kind=kind,
            type=getattr(exc, "error_type", None) or type(exc).__name__,
            message=getattr(exc, "error_message", None) or str(exc),
            summary=getattr(exc, "message", None) or str(exc),
            traceback=tb,
            **fields,
        )

    def to_raydrive(self, job_id: str) -> Exception:
        """The raydrive error it was in the job."""
        from raydrive.core.errors import (
            ActionImportError,
            ExecutionError,
            ExecutionTimeoutError,
            ValidationError,
        )

        summary = self.summary or self.message or "the job failed"
        if self.kind == "validation":
            return ValidationError(summary, action=self.action, errors=self.errors or [])
        if self.kind == "deadline":
            return ExecutionTimeoutError(
                summary,
                reason=self.reason,
                error_type=self.type,
                error_message=self.message,
                job_id=job_id,
            )
        if self.kind == "import":
            return ActionImportError(str(self.entrypoint), str(self.reason))
        return ExecutionError(
            f"{summary} (job {job_id!r})" if self.kind == "execution" else f"job {job_id!r}: {summary}",
            error_type=self.type,
            error_message=self.message,
            remote_traceback=self.traceback,
            job_id=job_id,
        )


@dataclass(frozen=True)
class Outcome:
    """The job's outcome: ``ok`` with ``result`` (JSON data), or ``error``.

    ``run``: the payload package (``--payload``) of the submission that wrote it, so that a file
    left by an earlier job under the same id (its record deleted by other means than
    ``delete()``, the id then reused) is not taken for this job's. None from an older entry.
    """

    ok: bool
    result: Any = None
    error: RemoteError | None = None
    run: str | None = None

    def pack(self) -> str:
        """:raises TypeError / ValueError: the result is not JSON data."""
        error = None if self.error is None else dataclasses.asdict(self.error)
        doc = {"protocol": PROTOCOL, "ok": self.ok, "result": self.result, "error": error, "run": self.run}
        return json.dumps(doc)

    @classmethod
    def unpack(cls, data: bytes | str) -> Outcome | None:
        """The outcome in ``data``; None when ``data`` is not one (not raydrive's file, or torn)."""
        try:
            doc = json.loads(data)
        except ValueError:
            return None
        if not isinstance(doc, dict) or not isinstance(doc.get("ok"), bool):
            return None
        error = doc.get("error")
        run = doc.get("run") if isinstance(doc.get("run"), str) else None
        if doc["ok"]:
            return cls(True, doc.get("result"), run=run)
        if not isinstance(error, dict):
            return None
        names = {f.name for f in dataclasses.fields(RemoteError)}
        try:
            remote = RemoteError(**{k: v for k, v in error.items() if k in names})
        except TypeError:  # a field missing
            return None
        return cls(False, None, remote, run)
