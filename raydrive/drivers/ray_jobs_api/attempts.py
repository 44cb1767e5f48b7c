"""Retries of ``ray-jobs-api`` jobs: one job id, a chain of Ray Jobs (its attempts).

Ray's Jobs API has no retries (ray#64104), so raydrive resubmits: attempt ``n`` of job ``J`` is
the Ray Job with submission id ``J`` (``n`` = 1) or ``J--a<n>``
(:func:`~raydrive.drivers.ray_jobs_api.wire.attempt_submission_id`). What a later attempt needs is on the
cluster, in the previous attempt's own record: its entrypoint, runtime env (the payload and
working-dir packages, by ``gcs://`` URI), resources and metadata (``raydrive_retry``: the
policy, ``raydrive_attempt``: its number). So *any* raydrive process that looks at the job can
start the next attempt, and the submission id is the lock: Ray refuses a second job with the
same id, so two processes racing to retry start one attempt.

Who drives the retry: whoever looks at the job (``get_status``, ``wait``, ``get_result``,
``get_attempts``, ``get_logs``, ``stream_logs``). When the current attempt has ended in a way the
policy retries, the next attempt is submitted at once and its entry waits out the backoff on the
cluster (``--delay``). The honest limit of an API without retries: with every submitting process
gone, no further attempt starts until some raydrive process looks at the job again. (An entry
that supervises the action in a child process was considered and not taken: it cannot survive the
death of its own process or node, nor a runtime env that failed to set up, which are the failures
"infra" retries exist for.)

How an attempt ended (:func:`verdict`): an Outcome with an error is the action's exception
(retried with ``retry_on="any"`` or its type named); FAILED with no Outcome is infrastructure
(the process was killed, the node died, the runtime env failed): retried under ``"infra"``;
STOPPED is never retried. A stop (:func:`stop_chain`) stops the current attempt, so it ends
STOPPED; when it falls between two attempts, a stop marker (a trivial job with metadata
``raydrive_stopped``) takes the next attempt's submission id, so that no process starts it.
"""

from __future__ import annotations

import asyncio
import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from raydrive.core.errors import JobNotFoundError, RaydriveError, SubmissionError
from raydrive.core.retry import Attempt, RetryPolicy
from raydrive.drivers.ray_jobs_api.dashboard import AsyncDashboard, JobInfo
from raydrive.drivers.ray_jobs_api.outcome import read_outcome, result_of
from raydrive.drivers.ray_jobs_api.wire import Outcome, attempt_submission_id

__all__ = [
    "META_ATTEMPT",
    "META_JOB",
    "META_RETRY",
    "META_STOPPED",
    "Chain",
    "Step",
    "Verdict",
    "attempt_header",
    "load_chain",
    "next_attempt",
    "stop_chain",
    "verdict",
]

META_JOB = "raydrive_job_id"
META_ATTEMPT = "raydrive_attempt"
META_RETRY = "raydrive_retry"
META_STOPPED = "raydrive_stopped"


@dataclass(frozen=True)
class Step:
    """One Ray Job of a raydrive job: an attempt, or the stop marker that ends the chain."""

    number: int
    submission_id: str
    info: JobInfo

    @property
    def marker(self) -> bool:
        return self.info.metadata.get(META_STOPPED) == "1"


@dataclass
class Chain:
    """A job's Ray Jobs, oldest first, and its retry policy (from the first attempt's metadata)."""

    job_id: str
    steps: list[Step]
    policy: RetryPolicy

    @property
    def attempts(self) -> list[Step]:
        return [s for s in self.steps if not s.marker]

    @property
    def current(self) -> Step:
        return self.attempts[-1]

    @property
    def stopped(self) -> bool:
        """A stop fell between two attempts (the marker holds the next one's id)."""
        return self.steps[-1].marker


@dataclass(frozen=True)
class Verdict:
    """How the current attempt ended: its outcome, the error it stands for, whether to retry."""

    outcome: Outcome | None
    error: Exception | None
    retry: bool


def _policy(info: JobInfo) -> RetryPolicy:
    raw = info.metadata.get(META_RETRY)
    if not raw:
        return RetryPolicy()
    try:
        return RetryPolicy.from_wire(json.loads(raw))
    except (ValueError, TypeError):
        return RetryPolicy()  # not raydrive's metadata: no retries


async def load_chain(api: AsyncDashboard, job_id: str) -> Chain:
    """The job's chain as the cluster has it now (one request per attempt so far).

    :raises JobNotFoundError: no job with this id.
    """
    info = await api.job(job_id)
    if info is None:
        raise JobNotFoundError(f"no job {job_id!r} on the cluster at {api.shown}", job_id=job_id)
    chain = Chain(job_id, [Step(1, job_id, info)], _policy(info))
    for number in range(2, chain.policy.max_attempts + 1):
        last = chain.steps[-1]
        if last.marker or not last.info.terminal:
            break  # a later attempt starts only after this one ended
        submission_id = attempt_submission_id(job_id, number)
        found = await api.job(submission_id)
        if found is None or not _is_attempt(found, job_id, number):
            break
        chain.steps.append(Step(number, submission_id, found))
    return chain


async def verdict(api: AsyncDashboard, chain: Chain, driver: str, outcome: Outcome | None = None) -> Verdict:
    """How the chain's current (ended) attempt ended, and whether its policy retries it.

    ``outcome``: the attempt's outcome file as already read (an attempt writes it once, before
    its process exits), instead of reading it again.
    """
    step = chain.current
    if outcome is None:
        outcome = await read_outcome(api, step.submission_id, step.info)
    try:
        result_of(chain.job_id, step.info, outcome, driver)
        return Verdict(outcome, None, False)
    except Exception as exc:  # the error the attempt stands for
        error: Exception = exc
    if step.info.status != "FAILED" or chain.stopped:
        return Verdict(outcome, error, False)
    if outcome is None:
        # No outcome and FAILED: the entry never got to write one (killed, node lost, runtime env).
        retry = step.number <= chain.policy.retries
    else:
        retry = chain.policy.should_retry(error, step.number)
    return Verdict(outcome, error, retry)


def _entrypoint(previous: str, attempt: int, delay: float) -> str:
    """The previous attempt's entrypoint with this attempt's ``--attempt`` and ``--delay``."""
    words = shlex.split(previous)
    out: list[str] = []
    skip = False
    for word in words:
        if skip:
            skip = False
            continue
        if word in ("--attempt", "--delay"):
            skip = True
            continue
        out.append(word)
    return shlex.join([*out, "--attempt", str(attempt), "--delay", f"{delay:.3f}"])


async def next_attempt(api: AsyncDashboard, chain: Chain) -> Step:
    """Submit the attempt after the current one (from its record), or find the one another
    process submitted; the backoff is waited out by its entry, on the cluster."""
    previous = chain.current
    number = previous.number + 1
    submission_id = attempt_submission_id(chain.job_id, number)
    info = previous.info
    request: dict[str, Any] = {
        "entrypoint": _entrypoint(info.entrypoint or "", number, chain.policy.backoff.delay(number - 1)),
        "submission_id": submission_id,
        "runtime_env": dict(info.runtime_env),
        "metadata": {**info.metadata, META_JOB: chain.job_id, META_ATTEMPT: str(number)},
        **info.resources,
    }
    await keep_packages(api, info.runtime_env)
    await api.submit(request)  # False: another process started it first, which is as good...
    found = await api.job(submission_id)
    if found is None:
        raise JobNotFoundError(
            f"attempt {number} of job {chain.job_id!r} ({submission_id}) vanished right after its submission",
            job_id=chain.job_id,
        )
    if not _is_attempt(found, chain.job_id, number):
        # ...if it is one: a job someone else submitted under this id is not adopted.
        raise SubmissionError(
            f"job {chain.job_id!r}: the cluster holds a job {submission_id!r} that is not attempt "
            f"{number} of it (its metadata names no such attempt), so the retry cannot be made; "
            f"delete that job or submit under another id",
            job_id=chain.job_id,
        )
    step = Step(number, submission_id, found)
    chain.steps.append(step)
    return step


def _is_attempt(info: JobInfo, job_id: str, number: int) -> bool:
    """Whether the job ``info`` is attempt ``number`` of ``job_id`` (by the metadata raydrive
    gives each attempt), not a job that someone else submitted under that id."""
    return info.metadata.get(META_JOB) == job_id and info.metadata.get(META_ATTEMPT) == str(number)


async def keep_packages(api: AsyncDashboard, runtime_env: Mapping[str, Any]) -> None:
    """Pin the job's ``gcs://`` packages (payload, working dir) for Ray's temporary-reference
    time (10 min by default), so that a later attempt can still set them up on any node after
    the attempt holding them ended."""
    uris = [runtime_env.get("working_dir"), *(runtime_env.get("py_modules") or [])]
    for uri in uris:
        if isinstance(uri, str) and uri.startswith("gcs://"):
            await api.package_exists(uri)


async def stop_chain(api: AsyncDashboard, job_id: str, driver: str) -> bool:
    """Stop the job's current attempt so that no further one starts; False when it had ended.

    :raises JobNotFoundError: no job with this id.
    """
    for _ in range(10):  # each round loses a race with an attempt that ended or started meanwhile
        chain = await load_chain(api, job_id)
        if chain.stopped:
            return False
        step = chain.current
        if not step.info.terminal:
            if await api.job_action("POST", step.submission_id, "/stop", "stopped"):
                await _stopped(api, step.submission_id)
                return True
            continue
        if not (await verdict(api, chain, driver)).retry:
            return False
        marker_id = attempt_submission_id(job_id, step.number + 1)
        placed = await api.submit(
            {
                "entrypoint": "true",
                "submission_id": marker_id,
                "metadata": {META_JOB: job_id, META_ATTEMPT: str(step.number + 1), META_STOPPED: "1"},
            }
        )
        if placed:
            await api.job_action("POST", marker_id, "/stop", "stopped")
            return True
    return False


STOP_CONFIRM_S = 30.0
"""The longest ``stop()`` waits for Ray to report the stopped attempt ended (Ray sends SIGTERM,
then SIGKILL after ``RAY_JOB_STOP_WAIT_TIME_S``, 3 s by default, and only then says STOPPED)."""


async def _stopped(api: AsyncDashboard, submission_id: str) -> None:
    """Return once Ray reports the attempt ended: its supervisor has killed the entry's process
    tree by then (the entry ``exec``s itself, so the tree Ray sees holds it)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STOP_CONFIRM_S
    while True:
        info = await api.job(submission_id)
        if info is None or info.terminal:
            return
        if loop.time() > deadline:
            raise RaydriveError(
                f"job {submission_id!r} was asked to stop but Ray still reports it {info.status} after "
                f"{STOP_CONFIRM_S:g} s; its process may still run",
                job_id=submission_id,
                status=info.status,
            )
        await asyncio.sleep(0.1)


def attempt_header(step: Step, chain: Chain) -> str:
    """The log line between two attempts."""
    return (
        f"--- raydrive: attempt {step.number} of {chain.policy.max_attempts} "
        f"(submission {step.submission_id}) ---\n"
    )


def attempt_record(step: Step, error: Exception | None) -> Attempt:
    """The :class:`Attempt` of one step (its error redacted)."""
    from raydrive.core.redaction import redact_text

    info = step.info
    return Attempt(
        number=step.number,
        state=info.status,
        started_at=info.start_time,
        ended_at=info.end_time,
        error_type=None if error is None else (getattr(error, "error_type", None) or type(error).__name__),
        error=None if error is None else redact_text(str(error)),
        submission_id=step.submission_id,
    )


async def attempt_records(api: AsyncDashboard, chain: Chain, driver: str) -> list[Attempt]:
    """Every attempt of the chain, oldest first, each with the error it ended with."""
    records = []
    for step in chain.attempts:
        error = None
        if step.info.terminal:
            outcome = await read_outcome(api, step.submission_id, step.info)
            try:
                result_of(chain.job_id, step.info, outcome, driver)
            except Exception as exc:
                error = exc
        records.append(attempt_record(step, error))
    return records
