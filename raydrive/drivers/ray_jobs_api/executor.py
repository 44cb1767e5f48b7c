"""``RayJobsApiExecutor``: actions as Ray Jobs, submitted over HTTP to the Ray dashboard.

The submitting process never joins the cluster (no ``ray.init``): everything goes through the
dashboard's HTTP address (:mod:`.dashboard`), often the only port of a cluster users can reach.

How a job is put together
-------------------------
- **Entrypoint**: ``exec python -m raydrive.drivers.ray_jobs_api.entry --job-id <id> --payload <dir>``
  (:mod:`.entry`; exec'd so that a stop kills it, see :func:`.sdk.submit_entry`). Ray's submission
  id is the job id.
- **Params and secrets** travel in a one-off ``py_modules`` package (:class:`.wire.Payload`):
  a zip holding ``<dir>/payload.json``, uploaded to the GCS through the dashboard under a
  content-addressed ``gcs://_raydrive_payload_<sha256>.zip`` URI. Nothing of it is in the
  entrypoint, the env vars or the metadata, so ``get_job_info()`` and the dashboard show none of
  it, and params of any size (below the dashboard's 100 MiB upload limit) fit. Each submission gets
  its own package (the payload holds a random directory name). It is not pinned: Ray deletes it
  from the GCS when the job ends (a submission that fails after the upload pins it, so that it
  expires). The entry deletes the unpacked file on every way out.
- **Working dir**: zipped here (content-addressed, cached between submissions), checked against
  the dashboard's upload limit, and uploaded once per content through the same package API.
- **Result**: the entry writes a :class:`.wire.Outcome` as ``raydrive/<id>.json`` in Ray's log
  directory of the driver's node; :meth:`get_result` reads it through the dashboard's log API
  (:mod:`.outcome`), never from the job's output; :meth:`delete` removes it. The file names
  the submission's payload package, so a file an earlier job under the same id left is not
  taken for this job's. A wait's first 10 s also look for the file at each status poll of a
  running attempt (a look that fails or is slow only ends the looking): once it is there the
  process is exiting, so the status is polled every 20 ms for up to 1 s, and the file is not
  read again. The result comes back only once Ray marks the job ended, so that
  :meth:`get_status` agrees. The entry imports raydrive and pydantic with the cyclic GC off and
  freezes them before the action runs (a 15 ms exit instead of 50; the action's objects are
  collected and finalized as usual).
- **Logs**: :mod:`.follow`; a retried job's logs are every attempt's, a header line between them.
- **Retries** (``retries``, ``retry_on``, ``retry_backoff``; options win over the action class):
  Ray's Jobs API has none, so raydrive resubmits under derived submission ids (``<id>--a2``...);
  the job id stays the user's; see :mod:`.attempts` for who drives them and their limit.
- **Deadline** (``timeout_s``, option or ``submit(..., timeout_s=)``, per attempt): enforced by
  the entry's watchdog on the cluster, also when the submitter has gone; the job ends FAILED with
  ExecutionTimeoutError (reason ``deadline exceeded``), not retried unless ``retry_on`` names it.

Security notes: while the job runs, the payload package (like every runtime-env package) can be
read by anyone who can connect to the cluster as a Ray driver, and its unpacked copy by whoever
can read the driver node's ``runtime_resources`` directory until the entry deletes it, right after
reading. The entry also drops it from the runtime env that ``ray.init()`` in the action passes on.
Results live next to the job's logs, readable through the dashboard like the logs, until
:meth:`delete`.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import secrets as _secrets
import threading
import uuid
import zipfile
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from raydrive.core.calls import check_call
from raydrive.core.errors import (
    DuplicateJobError,
    RaydriveError,
    SubmissionError,
)
from raydrive.core.executor import BaseExecutor
from raydrive.core.packaging import DASHBOARD_UPLOAD_LIMIT, check_upload_size
from raydrive.core.plugins import PluginManager
from raydrive.core.retry import Attempt, RetryPolicy
from raydrive.core.runtime_env import BuiltRuntimeEnv
from raydrive.drivers.ray.submission import Submitter
from raydrive.drivers.ray_jobs_api import attempts as chains
from raydrive.drivers.ray_jobs_api.dashboard import AsyncDashboard, Dashboard
from raydrive.drivers.ray_jobs_api.options import JobsApiOptions
from raydrive.drivers.ray_jobs_api.sdk import submit_entry
from raydrive.drivers.ray_jobs_api.tracking import JobTracker
from raydrive.drivers.ray_jobs_api.wire import (
    PAYLOAD_DIR_PREFIX,
    PAYLOAD_FILE,
    PAYLOAD_PREFIX,
    Payload,
    attempt_of,
    attempt_submission_id,
    valid_job_id,
)

if TYPE_CHECKING:
    from ray.job_submission import JobStatus

__all__ = ["JobsApiOptions", "RayJobsApiExecutor"]

_log = logging.getLogger("raydrive.jobs_api")


class RayJobsApiExecutor(BaseExecutor):
    """Runs actions as Ray Jobs through the dashboard's Jobs API, with log streaming.

    ::

        executor = RayJobsApiExecutor(dashboard_address="http://ray-head:8265", working_dir="plugin")
        job_id = executor.submit(TrainAction, {"epochs": 100})
        for line in executor.stream_logs(job_id):
            print(line, end="")
        result = executor.get_result(job_id)

    Constructor options: see :class:`JobsApiOptions`. ``num_cpus``, ``num_gpus``, ``memory`` and
    ``resources`` reserve resources for the job's entrypoint (Ray's ``entrypoint_*``), after the
    resources hooks.
    """

    name = "ray-jobs-api"
    Options = JobsApiOptions
    options: JobsApiOptions

    def __init__(self, env: Any = None, /, *, plugins: PluginManager | None = None, **options: Any) -> None:
        super().__init__(env, plugins=plugins, **options)  # env first and positional, as the guide lists
        self.submitter = Submitter(self.name, self.options, plugins, default_cpus=0.0)
        self._lock = threading.RLock()
        self._dashboard_: Dashboard | None = None
        self._last_env: dict[str, Any] | None = None
        # What follows a submitted job (status, results, retries, stop, delete, logs).
        self._jobs = JobTracker(
            self.name,
            self.options,
            self._dashboard,
            emit_finished=self._emit_finished,
            untrack=self._untrack_job,
            cleanup_env=self._cleanup_env,
        )

    # --- connection ---------------------------------------------------------------------------
    @property
    def dashboard_address(self) -> str:
        return self.options.dashboard_address

    def _dashboard(self) -> Dashboard:
        with self._lock:
            if self._dashboard_ is None:
                self._dashboard_ = Dashboard(self.options)
            return self._dashboard_

    def _run(self, coro: Any) -> Any:
        return self._dashboard().run(coro)

    def close(self) -> None:
        """Close the HTTP connections. The executor may be used again afterwards."""
        with self._lock:
            dashboard, self._dashboard_ = self._dashboard_, None
        if dashboard is not None:
            dashboard.close()

    # --- submission ---------------------------------------------------------------------------
    def submit(
        self,
        action_cls: type | str,
        params: Mapping[str, Any] | BaseModel,
        *,
        job_id: str | None = None,
        timeout_s: float | None = None,
    ) -> str:
        """Submit the action as a Ray Job (non-blocking); return its job id (Ray's submission id
        of its first attempt; a retry runs as ``<job id>--a<n>`` under the same job id).

        :param action_cls: a BaseAction subclass (one defined in ``__main__`` too) or ``module.Class``.
        :param params: the action's params; validated here when the class is importable here.
        :param job_id: the submission id (letters, digits and ``_.:-``); a new one when None.
        :param timeout_s: this job's deadline per attempt (overrides the ``timeout_s`` option),
            enforced on the cluster: the job ends FAILED with ExecutionTimeoutError.
        :raises InvalidOptionsError: ``timeout_s`` is not a number of seconds > 0 (at most ten
            years); a boolean or a string is refused (:mod:`raydrive.core.calls`).
        :raises ActionImportError: ``action_cls`` is a class but not a BaseAction subclass.
        :raises ValidationError: the params do not fit the action's params model.
        :raises DuplicateJobError: a job with this id exists on the cluster.
        :raises InfeasibleResourcesError: no node of the cluster can ever hold the request.
        :raises WorkingDirError: the zipped working dir is over the dashboard's 100 MiB limit.
        :raises ClusterUnreachableError: the dashboard did not answer within ``connect_timeout``.
        :raises AuthenticationError: the dashboard refused the credentials.
        """
        job_id = job_id or f"raydrive_{uuid.uuid4().hex[:20]}"
        if not valid_job_id(job_id) or attempt_of(job_id)[1] > 1:
            raise SubmissionError(
                f"job id {job_id!r} must be letters, digits and '_.:-' (at most 256), starting with a "
                "letter, digit or '_', and not end in '--a<number>' (the ids of retries)",
                job_id=job_id,
            )
        given = check_call(self.name, timeout_s=timeout_s).timeout_s
        timeout_s = given if given is not None else self.options.timeout_s
        # The shared submission step (the payload is JSON: params as JSON data; a Jobs API
        # entrypoint reserves nothing unless asked, so an empty request needs no cluster check).
        dashboard = self._dashboard()
        sub = self.submitter.prepare(
            action_cls,
            params,
            job_id=job_id,
            nodes=self._node_totals,
            runtime=self.submitter.build_runtime_env,
            json_params=True,
            resources_required=False,
        )
        name, request, built = sub.name, sub.resources, sub.runtime
        assert built is not None
        policy = RetryPolicy.resolve(self.options, sub.action.cls)
        if not valid_job_id(attempt_submission_id(job_id, policy.max_attempts)):
            raise SubmissionError(
                f"job id {job_id!r} is too long for {policy.retries} retries (a retry's id adds "
                f"'--a{policy.max_attempts}', and an id has at most 256 characters)",
                job_id=job_id,
            )
        retry = policy.to_wire() if policy.retries else None
        if self._run(dashboard.api.job(job_id)) is not None:
            raise DuplicateJobError(f"a job with id {job_id!r} already exists on the cluster", job_id=job_id)
        if built.package is not None:
            check_upload_size(built.package)  # before anything is uploaded
            self._run(self._upload(dashboard.api, built.package.uri, built.package.data, pin=True))
        payload = Payload.for_target(
            sub.target,
            sub.params,
            built.runtime_env.get("env_vars", {}),
            built.secrets,
            timeout_s=timeout_s,
            retry=retry,
        )
        package_dir = f"{PAYLOAD_DIR_PREFIX}{_secrets.token_hex(12)}"
        payload_uri = self._run(self._upload_payload(dashboard.api, package_dir, payload))
        if retry is not None:
            self._pin(payload_uri)  # a retry may need it after this attempt ended (see .attempts)
        runtime_env = dict(built.runtime_env)
        runtime_env["py_modules"] = [*runtime_env.get("py_modules", []), payload_uri]
        self._last_env = {k: v for k, v in built.runtime_env.items() if k in ("py_modules", "env_vars")}
        args = ["--job-id", job_id, "--payload", package_dir, "--action", payload.action]
        try:
            submit_entry(
                dashboard,
                python_executable=self.options.python_executable,
                job_id=job_id,
                args=args,
                runtime_env=runtime_env,
                metadata={
                    **(self.options.metadata or {}),
                    "raydrive_driver": self.name,
                    "raydrive_action": payload.action,
                    **self._retry_metadata(job_id, retry),
                },
                resources=request,
            )
        except BaseException as exc:
            # Unreferenced, the payload would stay in the GCS: a pin makes it expire.
            self._pin(payload_uri)
            if isinstance(exc, RuntimeError) and "already exists" in str(exc):
                raise DuplicateJobError(
                    f"a job with id {job_id!r} already exists on the cluster", job_id=job_id
                ) from None
            if isinstance(exc, RaydriveError | KeyboardInterrupt | SystemExit):
                raise
            raise SubmissionError(
                f"job {job_id!r} was not submitted to {dashboard.api.shown}: {type(exc).__name__}: {exc}",
                job_id=job_id,
            ) from exc
        self._emit_submitted(job_id, name)
        return job_id

    @staticmethod
    def _retry_metadata(job_id: str, retry: dict[str, Any] | None) -> dict[str, str]:
        """What a later attempt is made from, by any process (see :mod:`.attempts`)."""
        if retry is None:
            return {}
        return {chains.META_JOB: job_id, chains.META_ATTEMPT: "1", chains.META_RETRY: json.dumps(retry)}

    def _node_totals(self) -> list[dict[str, float]]:
        nodes = self._run(self._dashboard().api.nodes())
        return [dict(node.get("resources_total") or {}) for node in nodes]

    def _pin(self, uri: str) -> None:
        # GET on a package adds a reference that expires (Ray's RAY_RUNTIME_ENV_TEMPORARY_
        # REFERENCE_EXPIRATION_S, 10 min): the package is deleted once the last one is gone.
        try:
            self._run(self._dashboard().api.package_exists(uri))
        except RaydriveError:
            _log.warning("could not pin %s so that it expires; it stays until the cluster stops", uri)

    @staticmethod
    async def _upload(api: AsyncDashboard, uri: str, data: bytes, *, pin: bool) -> None:
        # The working dir is pinned (a job queued right now keeps it) and uploaded when missing.
        if pin and await api.package_exists(uri):
            return
        await api.upload(uri, data)

    async def _upload_payload(self, api: AsyncDashboard, package_dir: str, payload: Payload) -> str:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(f"{package_dir}/{PAYLOAD_FILE}", payload.pack())
        data = buf.getvalue()
        if len(data) >= DASHBOARD_UPLOAD_LIMIT:
            raise SubmissionError(
                f"the params and secrets of this job zip to {len(data) / 2**20:.1f} MiB, over the Ray "
                f"dashboard's upload limit of {DASHBOARD_UPLOAD_LIMIT / 2**20:.0f} MiB: pass big data by "
                "reference (a path or URL the job can read)",
                size=len(data),
                limit=DASHBOARD_UPLOAD_LIMIT,
            )
        uri = f"gcs://{PAYLOAD_PREFIX}{hashlib.sha256(data).hexdigest()[:32]}.zip"
        # Not pinned: the job's reference alone keeps it, so Ray deletes it when the job ends.
        await self._upload(api, uri, data, pin=False)
        return uri

    def _cleanup_env(self) -> dict[str, Any]:
        if self._last_env is None:
            with self._lock:
                built: BuiltRuntimeEnv = self.submitter.builder.build(package=False)
            self._last_env = {k: v for k, v in built.runtime_env.items() if k == "env_vars"}
        return dict(self._last_env)

    # --- status, results, attempts, stop, delete, logs (the work is :class:`.tracking.JobTracker`'s)
    def get_status(self, job_id: str) -> JobStatus:
        """The job's status: Ray's ``JobStatus`` (PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED)
        of its latest attempt (starting the next attempt first, when one is due).

        :raises JobNotFoundError: no job with this id.
        """
        return self._jobs.get_status(job_id)

    def get_attempts(self, job_id: str) -> list[Attempt]:
        """The job's attempts, oldest first, each with its submission id, state and error.

        :raises JobNotFoundError: no job with this id.
        """
        return self._jobs.get_attempts(job_id)

    def wait(self, job_id: str, timeout_seconds: float = 300, poll_interval: float = 1.0) -> str:
        """Wait for the job to end (its retries included); return ``'SUCCEEDED'``.

        Polls quickly at first, then every ``poll_interval`` seconds.

        :raises ExecutionError: the job failed or was stopped (same errors as :meth:`get_result`).
        :raises ExecutionTimeoutError: it did not end within ``timeout_seconds``.
        """
        return self._jobs.wait(job_id, timeout_seconds, poll_interval)

    def get_result(self, job_id: str, timeout: float | None = None) -> Any:
        """Wait for the job (its retries included) and return the action's result (JSON data;
        models come back as dicts).

        :raises ExecutionError: the action raised (``error_type``, ``error_message`` and
            ``remote_traceback`` describe it), the runtime env could not be set up, or the job
            was stopped; ActorDiedError when the job's process died without a word;
            ExecutionTimeoutError with ``reason`` ``"deadline exceeded"`` when it passed its
            ``timeout_s``.
        :raises ValidationError: the job could not validate the params.
        :raises ActionImportError: the job could not import the action.
        :raises JobNotFoundError: no job with this id.
        :raises ExecutionTimeoutError: it did not end within ``timeout`` seconds.
        """
        return self._jobs.get_result(job_id, timeout)

    def cancel(self, job_id: str) -> bool:
        """Stop a job that has not ended (SIGTERM, then SIGKILL after Ray's grace period), and
        start no further attempt of it; its status becomes STOPPED shortly after. False when it
        had already ended or is unknown, as on ``ray-job``."""
        return self._jobs.cancel(job_id)

    def stop(self, job_id: str) -> bool:
        """The guide's name for :meth:`cancel`; raises JobNotFoundError for an unknown id.

        The stop is recorded on the cluster (the attempt ends STOPPED, or a stop marker takes
        the next attempt's id), so no other process starts another attempt either.
        """
        return self._jobs.stop(job_id)

    def delete(self, job_id: str) -> bool:
        """Delete an ended job: every attempt's outcome file on its driver's node, then its record.

        The outcome file goes through a short clean-up job on that node (Ray has no API to delete
        a file); Ray's own log files of the job stay on disk.

        :raises RaydriveError: the job has not ended yet (stop it first).
        :raises JobNotFoundError: no job with this id.
        """
        return self._jobs.delete(job_id)

    def get_logs(self, job_id: str) -> str:
        """All of the job's log so far, every attempt's, a header line before each retry (with
        Ray's setup messages, and its error when an attempt never started).

        :raises JobNotFoundError: no job with this id.
        """
        return self._jobs.get_logs(job_id)

    def stream_logs(self, job_id: str, *, timeout: float = 3600.0) -> Iterator[str]:
        """Follow the job's log: yield each line (with its newline) as it is written, every
        attempt's in turn, a header line before each retry.

        Ends when the job has ended for good and every line is out, or after ``timeout``
        seconds. Safe to call from inside an event loop (the HTTP work runs on a private thread).

        :raises JobNotFoundError: no job with this id.
        """
        return self._jobs.stream_logs(job_id, timeout=timeout)

    async def stream_logs_async(self, job_id: str, *, timeout: float = 3600.0) -> AsyncIterator[str]:
        """Like :meth:`stream_logs`, as an async iterator."""
        async for line in self._jobs.stream_logs_async(job_id, timeout=timeout):
            yield line
