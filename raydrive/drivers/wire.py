"""Everything that crosses between a submitter and the cluster, typed, packed and unpacked here only.

One module, so that a change to a message is made on both ends at once. Each message is a frozen
dataclass with ``pack()`` (what travels) and ``unpack()`` (the other end):

============================  =================================================  ==================
message                       carries                                            packed as
============================  =================================================  ==================
:class:`ActionCall`           ray-actor: one call on the action actor            bytes (or a list)
:class:`PooledJob`            ray-job ``mode='task'``: one pooled task           bytes (or a list)
:class:`JobSpec`              ray-job: a job for the cluster's job registry      dict
:class:`PipelineSpec`         ray-pipeline: one run for the pipeline actor       the dataclass
:class:`Payload`              ray-jobs-api: the job's input (a GCS package)      JSON
:class:`Outcome`              ray-jobs-api: the job's result or error            JSON
:class:`RemoteError`          the error schema of every JSON outcome             JSON
============================  =================================================  ==================

The hot messages (and the results that come back for them, :func:`pack_result`) travel as one
``bytes`` (:func:`pack_values`: a stdlib pickle): Ray passes bytes through almost untouched, where
a list or dict goes through its serializer (msgpack, with cloudpickle for what msgpack lacks); on
a warm actor call that is about 25 us less of the caller's CPU per round trip, both ways (measured
by ``benchmarks/bench_ray_drivers.py``). What stdlib pickle would get wrong (anything of the
submitter's ``__main__``, which it pickles by reference; Ray's own objects, such as an ObjectRef in
the params, whose borrowers only Ray's reducers register) or cannot take (a local class) travels
as a list, for Ray's serializer, as before. ``target`` is always an entrypoint string
``module.Class`` when the class can be imported by name, else the class itself (pickled by value,
e.g. a class defined in ``__main__``). Secrets travel only in these messages (never in a runtime
env, which Ray's state API and the dashboard show).

Kept light (no Ray, httpx or pydantic import): the Jobs API entry imports it before anything else.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import pickle
import re
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "NAMESPACE",
    "PAYLOAD_DIR_PREFIX",
    "PAYLOAD_FILE",
    "PAYLOAD_PREFIX",
    "PROTOCOL",
    "REGISTRY_NAME",
    "ActionCall",
    "JobSpec",
    "Outcome",
    "Payload",
    "PipelineSpec",
    "PooledJob",
    "RemoteError",
    "attempt_of",
    "attempt_submission_id",
    "pack_result",
    "pack_values",
    "pipeline_actor_name",
    "result_filename",
    "unpack_result",
    "unpack_values",
    "valid_job_id",
]

NAMESPACE = "raydrive"
"""Ray namespace of every named actor raydrive creates."""

# 2: typed JobSpec; 3: queue, priority, retries, deadline, attempts; 4: packed results;
# 5: outcome(gather=...)
REGISTRY_PROTOCOL = 5
REGISTRY_NAME = f"raydrive-job-registry-v{REGISTRY_PROTOCOL}"
"""Name of ray-job's detached job registry; versioned, so an old registry never serves a newer client."""


def pipeline_actor_name(run_id: str) -> str:
    """The detached pipeline actor's name for a run (namespace :data:`NAMESPACE`)."""
    return f"raydrive-pipeline-{run_id}"


def pack_values(*values: Any) -> bytes | list[Any]:
    """``values`` as one ``bytes`` (stdlib pickle) for Ray's fast path, or as a list where stdlib
    pickle would not carry them faithfully; :func:`unpack_values` reads either."""
    try:
        data = pickle.dumps(values, protocol=5)
    except Exception:  # a local class, a lambda...: Ray's cloudpickle takes them by value
        return list(values)
    # Ray's serializer must see two kinds of value (a string spelling either name merely takes
    # the same, slower, correct path):
    # - anything of the submitter's __main__: stdlib pickle names it by reference, and a worker's
    #   __main__ lacks it (cloudpickle takes it by value);
    # - Ray's own objects (an ObjectRef, an actor handle in the params): Ray's reducers register
    #   the worker as a borrower, stdlib pickle would keep only the id.
    return list(values) if _NEEDS_RAY_SERIALIZER.search(data) else data


# A module name as pickle protocol 5 writes it (SHORT_BINUNICODE, then MEMOIZE) for a global.
_NEEDS_RAY_SERIALIZER = re.compile(rb"\x8c.(?:__main__|ray(?:\.[\w.]+)?)\x94", re.DOTALL)


def unpack_values(data: bytes | Sequence[Any]) -> Sequence[Any]:
    """The values :func:`pack_values` packed (a bytes-like object, or the list form)."""
    # Any bytes-like: a large object may come out of Ray's object store as a buffer, not bytes.
    return pickle.loads(data) if isinstance(data, (bytes, bytearray, memoryview)) else data


def pack_result(value: Any) -> bytes | list[Any]:
    """An action's result (JSON data) as it travels back from the actor or pooled task."""
    return pack_values(value)


def unpack_result(data: bytes | Sequence[Any]) -> Any:
    """The result :func:`pack_result` packed."""
    return unpack_values(data)[0]


@dataclass(frozen=True, slots=True)
class ActionCall:
    """One call on ray-actor's action actor (or ray-job's fresh actor per job).

    ``notify``: tell ray-job's registry when the job has run a while (it shows RUNNING).
    """

    target: Any
    params: Any = field(repr=False)
    job_id: str
    notify: bool = False

    def pack(self) -> bytes | list[Any]:
        return pack_values(self.target, self.params, self.job_id, self.notify)

    @classmethod
    def unpack(cls, data: bytes | Sequence[Any]) -> ActionCall:
        target, params, job_id, notify = unpack_values(data)
        return cls(target, params, job_id, notify)


@dataclass(frozen=True, slots=True)
class PooledJob:
    """One ray-job job run as a pooled Ray task: the call plus what the pooled process lacks.

    ``env`` (variables and secrets) is set for the job only; ``code_paths`` are the submitter's
    script dir and cwd, as Ray gives a driver's own workers.
    """

    target: Any
    params: Any = field(repr=False)
    job_id: str
    env: Mapping[str, str] = field(repr=False)
    code_paths: Sequence[str] = ()

    def pack(self) -> bytes | list[Any]:
        return pack_values(self.target, self.params, self.job_id, dict(self.env), list(self.code_paths))

    @classmethod
    def unpack(cls, data: bytes | Sequence[Any]) -> PooledJob:
        target, params, job_id, env, code_paths = unpack_values(data)
        return cls(target, params, job_id, env, code_paths)


@dataclass(frozen=True, slots=True)
class JobSpec:
    """A ray-job job as its submitter sends it to the cluster's job registry.

    ``ray_options`` are the task's or actor's Ray options (resources, runtime env); ``launch`` a
    key naming ``mode`` and ``ray_options`` (the same for the same ones), for the registry's cache
    of Ray launchers; ``ttl`` how long the outcome is kept after the job ends.

    ``retry``: the job's :class:`~raydrive.core.retry.RetryPolicy` (``to_wire()``; None: never
    retried); ``timeout_s``: the deadline of each attempt, counted from its launch; ``queue`` and
    ``max_concurrent``: the registry's queue the job waits in and that queue's limit (None: the
    job is not queued); ``priority``: its place in the queue (higher first, then FIFO).
    """

    mode: str
    action: str
    target: Any
    params: Any = field(repr=False)
    env: Mapping[str, str] = field(repr=False)
    code_paths: Sequence[str]
    ray_options: Mapping[str, Any]
    launch: str
    ttl: float = 3600.0
    retry: Mapping[str, Any] | None = None
    timeout_s: float | None = None
    queue: str = "default"
    max_concurrent: int | None = None
    priority: int = 0

    def pack(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in _JOB_SPEC_FIELDS}

    @classmethod
    def unpack(cls, data: Mapping[str, Any]) -> JobSpec:
        """:raises TypeError: not a spec of this protocol (a field missing or unknown)."""
        return cls(**data)

    def pooled(self, job_id: str) -> PooledJob:
        return PooledJob(self.target, self.params, job_id, self.env, self.code_paths)

    def call(self, job_id: str) -> ActionCall:
        return ActionCall(self.target, self.params, job_id, True)


_JOB_SPEC_FIELDS = tuple(f.name for f in dataclasses.fields(JobSpec))


@dataclass
class PipelineSpec:
    """Everything the pipeline actor needs to run (or resume) one run.

    ``entrypoints`` holds targets (``module.Class`` strings, or classes that travel by value);
    ``params`` holds the real values, secrets included. Retries and deadlines:

    - ``retry``: each action's :class:`~raydrive.core.retry.RetryPolicy` (``to_wire()``), for an
      exception the action raises (retried in place, with backoff);
    - ``max_restarts``: the actor's Ray ``max_restarts``; a restarted actor is built again with
      this same spec and continues from the run's latest checkpoint (``restart_backoff`` between);
    - ``action_timeouts``: each action's deadline in seconds (None: none); ``timeout_s`` the whole
      run's, counted from the run's start on the service (so a restart does not reset it);
    - ``checkpoint_wait_s``: with restarts, how long the next action waits for the previous
      one's checkpoint to be stored (so that a restart never repeats a completed action).
    """

    run_id: str
    service_url: str
    entrypoints: list[Any]
    names: list[str]
    params: dict[str, Any]
    start_index: int = 0
    env: dict[str, str] = field(default_factory=dict)
    progress_interval: float = 0.25
    token: str | None = None
    cancel_poll_interval: float = 0.5
    cancel_grace: float = 0.75
    retry: list[dict[str, Any] | None] = field(default_factory=list)
    max_restarts: int = 0
    restart_backoff: dict[str, Any] | None = None
    action_timeouts: list[float | None] = field(default_factory=list)
    timeout_s: float | None = None
    started_at: float | None = None  # the run's start (time.time()) its deadline counts from
    checkpoint_wait_s: float = 60.0

    def __repr__(self) -> str:  # the token, env and params may hold secrets
        return f"PipelineSpec(run_id={self.run_id!r}, names={self.names!r}, start={self.start_index})"


# --- ray-jobs-api: the payload and the outcome ----------------------------------------------------
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
        """From :func:`~raydrive.drivers.ray_common.base.wire_target`'s answer (a string or a class)."""
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
