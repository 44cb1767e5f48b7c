"""What crosses between the ``ray-jobs-api`` submitter and its job, packed and unpacked here only.

- :class:`Payload`: the action, params, env and secrets, in ``<dir>/payload.json`` of a one-off
  ``py_modules`` package (never in the entrypoint, env vars or metadata, which the dashboard shows);
- :class:`Outcome`: the result or the error, written by the job as ``raydrive/<id>.json`` in Ray's
  log directory of the driver's node and read back through the dashboard's log API.

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
    "result_filename",
    "valid_job_id",
]

PROTOCOL = 2  # 2: the action may travel pickled (a class defined in __main__)
PAYLOAD_FILE = "payload.json"
PAYLOAD_PREFIX = "_raydrive_payload_"  # of the payload package's gcs:// name
PAYLOAD_DIR_PREFIX = "_rdp_"  # of the directory inside it (one per submission)
RESULT_DIR = "raydrive"
# Letters, digits and ``_.:-``: an id is a path segment of the Jobs API and a file name on the node.
_JOB_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:\-]{0,255}")


def valid_job_id(job_id: object) -> bool:
    """Whether ``job_id`` can name a raydrive job (and be a URL path segment and a file name)."""
    return isinstance(job_id, str) and _JOB_ID.fullmatch(job_id) is not None


def result_filename(submission_id: str) -> str:
    """The outcome file's path relative to the Ray logs directory of the driver's node."""
    return f"{RESULT_DIR}/{submission_id}.json"


@dataclass(frozen=True)
class Payload:
    """The job's input. ``action`` is ``module.Class``; ``action_pickle`` the class by value
    (cloudpickle, base64) when it cannot be imported by name (defined in ``__main__``)."""

    action: str
    params: Any
    env: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    action_pickle: str | None = None

    @classmethod
    def for_target(
        cls, target: Any, params: Any, env: Mapping[str, str], secrets: Mapping[str, str]
    ) -> Payload:
        """From :func:`~raydrive.drivers.ray_common.base.wire_target`'s answer (a string or a class)."""
        if isinstance(target, str):
            return cls(target, params, dict(env), dict(secrets))
        from ray import cloudpickle  # the submitter has Ray; only a by-value class needs it

        name = f"{target.__module__}.{target.__qualname__}"
        blob = base64.b64encode(cloudpickle.dumps(target)).decode("ascii")
        return cls(name, params, dict(env), dict(secrets), blob)

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

    kind: str  # "validation", "import", "execution" or "payload"
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
        from raydrive.core.errors import ActionImportError, ExecutionError, ValidationError

        summary = self.summary or self.message or "the job failed"
        if self.kind == "validation":
            return ValidationError(summary, action=self.action, errors=self.errors or [])
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
    """The job's outcome: ``ok`` with ``result`` (JSON data), or ``error``."""

    ok: bool
    result: Any = None
    error: RemoteError | None = None

    def pack(self) -> str:
        """:raises TypeError / ValueError: the result is not JSON data."""
        error = None if self.error is None else dataclasses.asdict(self.error)
        return json.dumps({"protocol": PROTOCOL, "ok": self.ok, "result": self.result, "error": error})

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
        if doc["ok"]:
            return cls(True, doc.get("result"))
        if not isinstance(error, dict):
            return None
        names = {f.name for f in dataclasses.fields(RemoteError)}
        try:
            remote = RemoteError(**{k: v for k, v in error.items() if k in names})
        except TypeError:  # a field missing
            return None
        return cls(False, None, remote)
