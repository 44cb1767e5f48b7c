"""``RayJobsApiExecutor``: actions as Ray Jobs, submitted over HTTP to the Ray dashboard.

The submitting process never joins the cluster (no ``ray.init``): everything goes through the
dashboard's HTTP address (:mod:`.client`), often the only port of a cluster users can reach.

How a job is put together
-------------------------
- **Entrypoint**: ``python -m raydrive.drivers.remote.jobs_api_entry --job-id <id> --payload <dir>``
  (:mod:`.entry`). Ray's submission id is the job id.
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
  (:mod:`.outcome`), never from the job's output; :meth:`delete` removes it.
- **Logs**: :mod:`.follow`.

Security notes: while the job runs, the payload package (like every runtime-env package) can be
read by anyone who can connect to the cluster as a Ray driver, and its unpacked copy by whoever
can read the driver node's ``runtime_resources`` directory until the entry deletes it, right after
reading. The entry also drops it from the runtime env that ``ray.init()`` in the action passes on.
Results live next to the job's logs, readable through the dashboard like the logs, until
:meth:`delete`.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import secrets as _secrets
import shlex
import threading
import time
import uuid
import zipfile
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from raydrive.core.errors import (
    DuplicateJobError,
    ExecutionTimeoutError,
    JobNotFoundError,
    RaydriveError,
    SubmissionError,
)
from raydrive.core.executor import BaseExecutor
from raydrive.core.packaging import DASHBOARD_UPLOAD_LIMIT, check_upload_size
from raydrive.core.plugins import PluginManager
from raydrive.core.policy_types import ResourceRequest
from raydrive.core.runtime_env import BuiltRuntimeEnv
from raydrive.drivers.jobs_api.client import AsyncDashboard, Dashboard, JobInfo
from raydrive.drivers.jobs_api.follow import DRIVER_LOG, follow, iterate_in_thread, poll_delay
from raydrive.drivers.jobs_api.options import JobsApiOptions
from raydrive.drivers.jobs_api.outcome import ENTRY_MODULE, read_outcome, result_of
from raydrive.drivers.jobs_api.sdk import submit_job
from raydrive.drivers.submission import Submitter
from raydrive.drivers.wire import (
    PAYLOAD_DIR_PREFIX,
    PAYLOAD_FILE,
    PAYLOAD_PREFIX,
    Payload,
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
        self, action_cls: type | str, params: Mapping[str, Any] | BaseModel, *, job_id: str | None = None
    ) -> str:
        """Submit the action as a Ray Job (non-blocking); return its job id (Ray's submission id).

        :param action_cls: a BaseAction subclass (one defined in ``__main__`` too) or ``module.Class``.
        :param params: the action's params; validated here when the class is importable here.
        :param job_id: the submission id (letters, digits and ``_.:-``); a new one when None.
        :raises ActionImportError: ``action_cls`` is a class but not a BaseAction subclass.
        :raises ValidationError: the params do not fit the action's params model.
        :raises DuplicateJobError: a job with this id exists on the cluster.
        :raises InfeasibleResourcesError: no node of the cluster can ever hold the request.
        :raises WorkingDirError: the zipped working dir is over the dashboard's 100 MiB limit.
        :raises ClusterUnreachableError: the dashboard did not answer within ``connect_timeout``.
        :raises AuthenticationError: the dashboard refused the credentials.
        """
        job_id = job_id or f"raydrive_{uuid.uuid4().hex[:20]}"
        if not valid_job_id(job_id):
            raise SubmissionError(
                f"job id {job_id!r} must be letters, digits and '_.:-' (at most 256), starting with a "
                "letter, digit or '_'",
                job_id=job_id,
            )
        # The shared submission step (the payload is JSON: params as JSON data; a Jobs API
        # entrypoint reserves nothing unless asked, so an empty request needs no cluster check).
        dashboard = self._dashboard()
        sub = self.submitter.prepare(
            action_cls,
            params,
            job_id=job_id,
            nodes=self._node_totals,
            runtime=self._build_runtime_env,
            json_params=True,
            resources_required=False,
        )
        name, request, built = sub.name, sub.resources, sub.runtime
        assert built is not None
        if self._run(dashboard.api.job(job_id)) is not None:
            raise DuplicateJobError(f"a job with id {job_id!r} already exists on the cluster", job_id=job_id)
        if built.package is not None:
            check_upload_size(built.package)  # before anything is uploaded
            self._run(self._upload(dashboard.api, built.package.uri, built.package.data, pin=True))
        payload = Payload.for_target(
            sub.target, sub.params, built.runtime_env.get("env_vars", {}), built.secrets
        )
        package_dir = f"{PAYLOAD_DIR_PREFIX}{_secrets.token_hex(12)}"
        payload_uri = self._run(self._upload_payload(dashboard.api, package_dir, payload))
        runtime_env = dict(built.runtime_env)
        runtime_env["py_modules"] = [*runtime_env.get("py_modules", []), payload_uri]
        self._last_env = {k: v for k, v in built.runtime_env.items() if k in ("py_modules", "env_vars")}
        args = ["--job-id", job_id, "--payload", package_dir, "--action", payload.action]
        try:
            self._submit_job(
                job_id,
                args,
                runtime_env,
                metadata={
                    **(self.options.metadata or {}),
                    "raydrive_driver": self.name,
                    "raydrive_action": payload.action,
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

    def _submit_job(
        self,
        job_id: str,
        args: list[str],
        runtime_env: dict[str, Any],
        *,
        metadata: dict[str, str],
        resources: ResourceRequest | None = None,
    ) -> None:
        python = shlex.join(shlex.split(self.options.python_executable))
        submit_job(
            self._dashboard(),
            entrypoint=f"{python} {shlex.join(['-m', ENTRY_MODULE, *args])}",
            submission_id=job_id,
            runtime_env=runtime_env,
            metadata=metadata,
            resources=resources,
        )

    def _node_totals(self) -> list[dict[str, float]]:
        nodes = self._run(self._dashboard().api.nodes())
        return [dict(node.get("resources_total") or {}) for node in nodes]

    def _build_runtime_env(self) -> BuiltRuntimeEnv:
        return self.submitter.build_runtime_env()

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

    # --- status -------------------------------------------------------------------------------
    async def _job(self, job_id: str, api: AsyncDashboard | None = None) -> JobInfo:
        info = await (api or self._dashboard().api).job(job_id)
        if info is None:
            raise JobNotFoundError(
                f"no job {job_id!r} on the cluster at {(api or self._dashboard().api).shown}", job_id=job_id
            )
        self._observe(job_id, info)
        return info

    def _observe(self, job_id: str, info: JobInfo) -> None:
        """Report ``job_finished`` once, the first time this executor sees its job ended."""
        if not info.terminal:
            return
        error = None if info.status == "SUCCEEDED" else (info.message or info.status)
        self._emit_finished(job_id, info.status, error)

    def get_status(self, job_id: str) -> JobStatus:
        """The job's status: Ray's ``JobStatus`` (PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED).

        :raises JobNotFoundError: no job with this id.
        """
        from ray.job_submission import JobStatus

        return JobStatus(self._run(self._job(job_id)).status)

    async def _ended(self, job_id: str, timeout: float | None, cap: float) -> JobInfo:
        start = time.monotonic()
        while True:
            info = await self._job(job_id)
            if info.terminal:
                return info
            delay = poll_delay(time.monotonic() - start, cap)
            if timeout is not None:
                left = start + timeout - time.monotonic()
                if left <= 0:
                    raise ExecutionTimeoutError(
                        f"job {job_id!r} did not finish within {timeout:g} s (it is {info.status})",
                        job_id=job_id,
                    )
                delay = min(delay, left)
            await asyncio.sleep(delay)

    async def _result(self, job_id: str, timeout: float | None, cap: float) -> tuple[JobInfo, Any]:
        info = await self._ended(job_id, timeout, cap)
        outcome = await read_outcome(self._dashboard().api, job_id, info)
        return info, outcome

    def wait(self, job_id: str, timeout_seconds: float = 300, poll_interval: float = 1.0) -> str:
        """Wait for the job to end; return ``'SUCCEEDED'``.

        Polls quickly at first, then every ``poll_interval`` seconds.

        :raises ExecutionError: the job failed or was stopped (same errors as :meth:`get_result`).
        :raises ExecutionTimeoutError: it did not end within ``timeout_seconds``.
        """
        info = self._run(self._ended(job_id, timeout_seconds, poll_interval))
        if info.status != "SUCCEEDED":
            result_of(job_id, info, self._run(read_outcome(self._dashboard().api, job_id, info)), self.name)
        return info.status

    def get_result(self, job_id: str, timeout: float | None = None) -> Any:
        """Wait for the job and return the action's result (JSON data; models come back as dicts).

        :raises ExecutionError: the action raised (``error_type``, ``error_message`` and
            ``remote_traceback`` describe it), the runtime env could not be set up, or the job
            was stopped; ActorDiedError when the job's process died without a word.
        :raises ValidationError / ActionImportError: the job could not validate the params or
            import the action.
        :raises JobNotFoundError: no job with this id.
        :raises ExecutionTimeoutError: it did not end within ``timeout`` seconds.
        """
        info, outcome = self._run(self._result(job_id, timeout, self.options.poll_interval))
        return result_of(job_id, info, outcome, self.name)

    # --- cancel / stop / delete ---------------------------------------------------------------
    def cancel(self, job_id: str) -> bool:
        """Stop a job that has not ended (SIGTERM, then SIGKILL after Ray's grace period); its
        status becomes STOPPED shortly after. False when it had already ended or is unknown, as
        on ``ray-job``."""
        try:
            return self.stop(job_id)
        except JobNotFoundError:
            return False

    def stop(self, job_id: str) -> bool:
        """The guide's name for :meth:`cancel`; raises JobNotFoundError for an unknown id."""
        stopped = self._run(self._dashboard().api.job_action("POST", job_id, "/stop", "stopped"))
        if stopped is None:
            raise JobNotFoundError(
                f"no job {job_id!r} on the cluster at {self._dashboard().api.shown}", job_id=job_id
            )
        return stopped

    def delete(self, job_id: str) -> bool:
        """Delete an ended job: its outcome file on the driver's node, then its record.

        The outcome file goes through a short clean-up job on that node (Ray has no API to delete
        a file); Ray's own log files of the job stay on disk.

        :raises RaydriveError: the job has not ended yet (stop it first).
        :raises JobNotFoundError: no job with this id.
        """
        from raydrive.drivers.jobs_api.cleanup import delete_outcome

        info = self._run(self._job(job_id))
        if not info.terminal:
            raise RaydriveError(
                f"job {job_id!r} is {info.status}: only an ended job can be deleted; stop it first "
                f"(executor.stop({job_id!r})) and delete it once its status is STOPPED",
                job_id=job_id,
                status=info.status,
            )
        if info.driver_node_id:
            delete_outcome(self, job_id, info.driver_node_id)
        deleted = self._run(self._dashboard().api.job_action("DELETE", job_id, "", "deleted"))
        if deleted is None:
            raise JobNotFoundError(f"no job {job_id!r} on the cluster", job_id=job_id)
        self._untrack_job(job_id)
        return deleted

    def _cleanup_env(self) -> dict[str, Any]:
        if self._last_env is None:
            with self._lock:
                built: BuiltRuntimeEnv = self.submitter.builder.build(package=False)
            self._last_env = {k: v for k, v in built.runtime_env.items() if k == "env_vars"}
        return dict(self._last_env)

    # --- logs ---------------------------------------------------------------------------------
    def get_logs(self, job_id: str) -> str:
        """All of the job's log so far (with Ray's setup messages, and its error when the job
        never started).

        :raises JobNotFoundError: no job with this id.
        """
        return self._run(self._logs(job_id))

    async def _logs(self, job_id: str) -> str:
        api = self._dashboard().api
        info = await self._job(job_id)
        logs = ""
        if info.driver_node_id:
            logs = await api.job_logs(job_id)
        else:
            # Not started (or never will): what Ray wrote on the head node, as stream_logs shows.
            head = await api.head_node()
            if head:
                data = await api.read_file(head, DRIVER_LOG.format(submission_id=job_id))
                logs = (data or b"").decode("utf-8", errors="replace")
        if not logs and info.terminal and info.status != "SUCCEEDED":
            logs = info.message or ""
        return logs

    def stream_logs(self, job_id: str, *, timeout: float = 3600.0) -> Iterator[str]:
        """Follow the job's log: yield each line (with its newline) as it is written.

        Ends when the job has ended and every line is out, or after ``timeout`` seconds. Safe to
        call from inside an event loop (the HTTP work runs on a private thread).

        :raises JobNotFoundError: no job with this id.
        """
        return iterate_in_thread(lambda: self._follow(job_id, timeout))

    async def stream_logs_async(self, job_id: str, *, timeout: float = 3600.0) -> AsyncIterator[str]:
        """Like :meth:`stream_logs`, as an async iterator."""
        async for line in self._follow(job_id, timeout):
            yield line

    async def _follow(self, job_id: str, timeout: float) -> AsyncIterator[str]:
        # This event loop's own connections (the sync client's belong to its private loop).
        api = AsyncDashboard(self.options, self._dashboard().shared, stream=True)
        try:
            lines = follow(
                api,
                job_id,
                lambda j: self._job(j, api),
                timeout=timeout,
                interval=self.options.log_poll_interval,
            )
            async for line in lines:
                yield line
        finally:
            await api.aclose()
