"""``ray-jobs-api``: actions as Ray Jobs, submitted over HTTP to the Ray dashboard.

The submitting process never joins the cluster (no ``ray.init``): everything goes through the
dashboard's HTTP address, which is often the only port of a cluster that users can reach.

How a job is put together
-------------------------
- **Entrypoint**: ``python -m raydrive.drivers.jobs_api_entry --job-id <id> --payload <dir>``
  (:mod:`raydrive.drivers.jobs_api_entry`). Ray's submission id is the job id.
- **Params and secrets** travel in a one-off ``py_modules`` package: a zip holding
  ``<dir>/payload.json``, uploaded to the cluster's GCS through the dashboard under a
  content-addressed ``gcs://_raydrive_payload_<sha256>.zip`` URI. Nothing of it is in the
  entrypoint, the runtime env's ``env_vars`` or the metadata, so ``get_job_info()`` and the
  dashboard show none of it, and params of any size fit. Each submission gets its own package
  (the payload holds a random nonce), so concurrent submissions never share anything, and the
  user's working directory is never written to. The package is not pinned: Ray deletes it from
  the GCS as soon as the job ends (a submission that fails after the upload pins it, so that it
  expires). The job's entry deletes the unpacked ``payload.json`` right after reading it.
- **Working dir**: zipped here (content-addressed, cached between submissions) and uploaded once
  per content through the same package API.
- **Result**: the entry writes the outcome (result, or error type, message and traceback) as
  ``raydrive/<id>.json`` in Ray's log directory of the driver's node, and :meth:`get_result`
  reads it through the dashboard's log API (``/api/v0/logs/file``). It never scrapes the job's
  output, so a job printing anything, however much, still returns the right result.
- **Logs** are followed through ``/api/v0/logs/stream`` (Ray's websocket tail sleeps a second
  at every end of file, and some versions drop the last lines: ray#46413, ray#48701). When the
  job ends, whatever the stream had not delivered yet is fetched by byte offset, so no line is
  lost, and a job that never started (runtime env setup failed) yields Ray's error message.

Security notes: while the job runs, the payload package (like every runtime-env package) can be
read by anyone who can connect to the cluster as a Ray driver (it is a GCS key-value entry; the
dashboard's package API only says whether it exists), and its unpacked copy by whoever can read the
driver node's ``runtime_resources`` directory until the entry deletes it, right after reading.
The entry also drops it from the runtime env that ``ray.init()`` in the action passes on, so the
job's own tasks and actors never fetch it. Results live next to the job's logs and are readable
through the dashboard like the logs are.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import io
import json
import logging
import os
import queue
import re
import secrets as _secrets
import shlex
import threading
import time
import uuid
import zipfile
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, field_validator

from raydrive.core.action import action_entrypoint, action_name, try_resolve_action, validate_params
from raydrive.core.errors import (
    ActionImportError,
    ActorDiedError,
    ClusterUnreachableError,
    DuplicateJobError,
    ExecutionError,
    ExecutionTimeoutError,
    JobNotFoundError,
    RaydriveError,
    SubmissionError,
    ValidationError,
)
from raydrive.core.executor import BaseExecutor
from raydrive.core.options import RayOptions
from raydrive.core.plugins import PluginManager
from raydrive.core.policy_types import ResourceRequest
from raydrive.core.runtime_env import RuntimeEnvBuilder
from raydrive.drivers.jobs_api_entry import PAYLOAD_FILE, PAYLOAD_PREFIX, PROTOCOL, result_filename
from raydrive.drivers.ray_common.resources import check_feasible, resource_request

if TYPE_CHECKING:
    import httpx
    from ray.job_submission import JobStatus
else:

    class _LazyModule:
        """httpx, imported on first use: listing drivers imports this module, and httpx (which
        pulls in rich for its CLI) would be most of `available_drivers()`'s time."""

        def __getattr__(self, name: str) -> Any:
            import httpx as module

            return getattr(module, name)

    httpx = _LazyModule()

__all__ = ["AUTH_TOKEN_ENV", "AUTH_TOKEN_PATH_ENV", "JobsApiOptions", "RayJobsApiExecutor", "auth_headers"]

_log = logging.getLogger("raydrive.jobs_api")

AUTH_TOKEN_ENV = "RAY_AUTH_TOKEN"
AUTH_TOKEN_PATH_ENV = "RAY_AUTH_TOKEN_PATH"
AUTH_MODE_ENV = "RAY_AUTH_MODE"
ENTRY_MODULE = "raydrive.drivers.jobs_api_entry"
# Ray's name for a job's driver log, relative to the node's log directory (JOB_LOGS_PATH_TEMPLATE).
DRIVER_LOG = "job-driver-{submission_id}.log"
TERMINAL = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})
_BAD_JOB_ID = re.compile(r"[/\\\s\x00]")


class JobsApiOptions(RayOptions):
    """Options of ``ray-jobs-api`` (``ray_address`` is not used: the dashboard address is)."""

    dashboard_address: str = Field(
        default="http://localhost:8265", description="HTTP(S) address of the Ray dashboard."
    )
    python_executable: str = Field(
        default="python",
        description="Command that starts the cluster's Python in the job (shell words allowed).",
    )
    log_poll_interval: float = Field(
        default=0.1, gt=0, le=10, description="Seconds between reads of a followed log at the end."
    )
    poll_interval: float = Field(
        default=0.5, gt=0, description="Longest wait between status polls in get_result()."
    )
    request_timeout: float = Field(default=120.0, gt=0, description="Seconds for one HTTP request.")
    headers: dict[str, str] | None = Field(default=None, description="Extra HTTP headers (proxies).")
    verify: bool | str = Field(default=True, description="TLS: verify, or a CA bundle path.")
    metadata: dict[str, str] | None = Field(default=None, description="Extra job metadata (shown).")

    @field_validator("dashboard_address")
    @classmethod
    def _http_address(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if value.startswith("ray://"):
            raise ValueError("the Jobs API needs the dashboard's HTTP address (http://host:8265), not ray://")
        if "://" not in value:
            value = f"http://{value}"
        if not value.startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// address")
        return value

    def __repr__(self) -> str:
        # Header values may be credentials (Authorization, cookies): keys only.
        from raydrive.core.redaction import redact  # dashboard_address may hold user:password@

        shown = redact(self.model_dump(exclude={"env", "headers"}))
        headers = None if self.headers is None else sorted(self.headers)
        env = None if self.env is None else sorted(self.env)
        args = ", ".join(f"{k}={v!r}" for k, v in shown.items())
        return f"{type(self).__name__}({args}, header_keys={headers!r}, env_keys={env!r})"

    __str__ = __repr__


def auth_headers(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The ``Authorization`` header for a Ray cluster with token authentication, or ``{}``.

    The token is ``$RAY_AUTH_TOKEN``, else the contents of ``$RAY_AUTH_TOKEN_PATH``, else (only
    when ``RAY_AUTH_MODE=token``) of ``~/.ray/auth_token``: where Ray's own clients look.
    """
    environ = os.environ if environ is None else environ
    token = environ.get(AUTH_TOKEN_ENV, "").strip()
    paths = [environ.get(AUTH_TOKEN_PATH_ENV, "")]
    if environ.get(AUTH_MODE_ENV, "").strip().lower() == "token":
        paths.append(str(Path.home() / ".ray" / "auth_token"))
    for path in paths:
        if token:
            break
        if path and Path(path).expanduser().is_file():
            token = Path(path).expanduser().read_text(encoding="utf-8").strip()
    return {"Authorization": f"Bearer {token}"} if token else {}


def _auth_failure(address: str, status: int, sent_token: bool) -> SubmissionError:
    if sent_token:
        hint = (
            f"the token in {AUTH_TOKEN_ENV} / {AUTH_TOKEN_PATH_ENV} was refused: set {AUTH_TOKEN_ENV} "
            "to the cluster's token"
        )
    else:
        hint = (
            "the cluster uses token authentication and no token was sent: set "
            f"{AUTH_TOKEN_ENV} (or {AUTH_TOKEN_PATH_ENV}, a file holding it) to the cluster's token"
        )
    return SubmissionError(
        f"the Ray dashboard at {address} answered {status}: {hint}", address=address, status_code=status
    )


class _Dashboard:
    """HTTP to one dashboard: timeouts, auth header and error mapping in one place."""

    def __init__(self, options: JobsApiOptions) -> None:
        self.address = options.dashboard_address
        self.connect_timeout = options.connect_timeout
        self.request_timeout = options.request_timeout
        auth = auth_headers()
        user = dict(options.headers or {})
        self.sent_token = bool(auth) or any(k.lower() == "authorization" for k in user)
        self.headers = {**auth, **user}
        self.verify = options.verify
        self.http = httpx.Client(
            base_url=self.address,
            headers=self.headers,
            verify=self.verify,
            timeout=httpx.Timeout(self.request_timeout, connect=self.connect_timeout),
        )
        self.head_node: str | None = None  # cached node id

    def async_client(self) -> httpx.AsyncClient:
        # No read timeout: a followed log may stay quiet for as long as the job does.
        return httpx.AsyncClient(
            base_url=self.address,
            headers=self.headers,
            verify=self.verify,
            timeout=httpx.Timeout(self.request_timeout, connect=self.connect_timeout, read=None),
        )

    def unreachable(self, exc: Exception, what: str) -> ClusterUnreachableError:
        if isinstance(exc, httpx.ConnectTimeout | httpx.ConnectError):
            message = (
                f"cannot reach the Ray dashboard at {self.address} (waited up to "
                f"{self.connect_timeout:g} s): {exc or type(exc).__name__}. Is the cluster up, and is "
                "dashboard_address its dashboard's HTTP address?"
            )
        elif isinstance(exc, httpx.TimeoutException):
            message = (
                f"the Ray dashboard at {self.address} did not answer {what} within {self.request_timeout:g} s"
            )
        else:
            message = f"lost the connection to the Ray dashboard at {self.address} during {what}: {exc}"
        return ClusterUnreachableError(message, address=self.address)

    def check(self, response: httpx.Response) -> httpx.Response:
        if response.status_code in (401, 403):
            raise _auth_failure(self.address, response.status_code, self.sent_token)
        return response

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise self.unreachable(exc, f"{method} {path}") from exc
        return self.check(response)

    async def arequest(
        self, http: httpx.AsyncClient, method: str, path: str, **kwargs: Any
    ) -> httpx.Response:
        try:
            response = await http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise self.unreachable(exc, f"{method} {path}") from exc
        return self.check(response)

    def close(self) -> None:
        self.http.close()


@functools.cache
def _client_class() -> type:
    """Ray's JobSubmissionClient, routed through :class:`_Dashboard` (Ray is imported here)."""
    import ray
    from ray.dashboard.modules.dashboard_sdk import SubmissionClient
    from ray.job_submission import JobSubmissionClient

    class DashboardJobClient(JobSubmissionClient):
        """Submission, uploads and runtime-env validation from Ray; HTTP from raydrive."""

        def __init__(self, dashboard: _Dashboard, server_version: str) -> None:
            # Not JobSubmissionClient.__init__: it replaces the address with $RAY_ADDRESS or
            # $RAY_API_SERVER_ADDRESS when either is set, and the explicit address must win.
            self._client_ray_version = ray.__version__
            self._dashboard = dashboard
            SubmissionClient.__init__(
                self, address=dashboard.address, headers=dict(dashboard.headers), verify=dashboard.verify
            )
            self._server_ray_version = server_version

        def _check_connection_and_version(
            self, min_version: str = "1.9", version_error_message: str | None = None
        ) -> None:
            # Ray calls this before every submission that names resources; the version is known.
            from packaging.version import parse

            if parse(self._server_ray_version or "0") < parse(min_version):
                raise SubmissionError(
                    version_error_message
                    or f"the cluster runs Ray {self._server_ray_version}, older than {min_version}",
                    address=self._dashboard.address,
                )

        def _do_request(
            self,
            method: str,
            endpoint: str,
            *,
            data: bytes | None = None,
            json_data: dict[str, Any] | None = None,
            **kwargs: Any,
        ) -> httpx.Response:
            # Ray's callers use status_code, text, json() and raise_for_status(): httpx has them.
            return self._dashboard.request(method, endpoint, content=data, json=json_data)

    return DashboardJobClient


def _poll_delay(elapsed: float, cap: float, first: float = 0.05) -> float:
    """Seconds to the next status poll: 5% of the time waited so far, within [first, cap].

    The end of a job is then noticed at most ~5% (or ``first``) late: short jobs return fast, long
    ones cost the dashboard one cheap request per ``cap`` seconds.
    """
    return max(first, min(cap, elapsed / 20))


def _lines(buf: bytearray) -> list[str]:
    """Take the complete lines out of ``buf`` (bytes), each decoded with its newline."""
    end = buf.rfind(b"\n")
    if end < 0:
        return []
    head = bytes(buf[: end + 1])
    del buf[: end + 1]
    return [line.decode("utf-8", errors="replace") + "\n" for line in head.split(b"\n")[:-1]]


def _text_lines(text: str) -> list[str]:
    return [line if line.endswith("\n") else line + "\n" for line in text.splitlines(keepends=True)]


class RayJobsApiExecutor(BaseExecutor):
    """Runs actions as Ray Jobs through the dashboard's Jobs API, with log streaming.

    ::

        executor = RayJobsApiExecutor(dashboard_address="http://ray-head:8265", working_dir="plugin")
        job_id = executor.submit(TrainAction, {"epochs": 100})
        for line in executor.stream_logs(job_id):
            print(line, end="")
        result = executor.get_result(job_id)

    Constructor options: see :class:`JobsApiOptions` (the guide's ``env``, ``dashboard_address``,
    ``runtime_env``, ``working_dir``, ``requirements_file``, ``package_manager``,
    ``package_manager_options``, ``wheels_dir``, ``num_cpus``, ``num_gpus``, ``memory``,
    ``include_sdk``, and more). ``num_cpus``, ``num_gpus``, ``memory`` and ``resources`` reserve
    resources for the job's entrypoint (Ray's ``entrypoint_*``), after the resources hooks.
    """

    name = "ray-jobs-api"
    Options = JobsApiOptions
    options: JobsApiOptions

    def __init__(self, *, plugins: PluginManager | None = None, **options: Any) -> None:
        super().__init__(plugins=plugins, **options)
        self._builder = RuntimeEnvBuilder(self.options, plugins)
        self._lock = threading.RLock()
        self._dashboard_: _Dashboard | None = None
        self._client_: Any = None
        self._server_version: str | None = None
        self._feasible: set[tuple[Any, ...]] = set()
        self._submitted: dict[str, str] = {}  # job id -> action name, for the lifecycle events
        self._reported: set[str] = set()

    # --- connection ---------------------------------------------------------------------------
    @property
    def dashboard_address(self) -> str:
        return self.options.dashboard_address

    def _dashboard(self) -> _Dashboard:
        with self._lock:
            if self._dashboard_ is None:
                self._dashboard_ = _Dashboard(self.options)
            return self._dashboard_

    def _client(self) -> Any:
        """Ray's JobSubmissionClient for this dashboard, after one version check."""
        dashboard = self._dashboard()
        with self._lock:
            if self._client_ is None:
                if self._server_version is None:
                    self._server_version = self._version(dashboard)
                self._client_ = _client_class()(dashboard, self._server_version)
            return self._client_

    @staticmethod
    def _version(dashboard: _Dashboard) -> str:
        response = dashboard.request("GET", "/api/version")
        if response.status_code != 200:
            raise SubmissionError(
                f"{dashboard.address} does not look like a Ray dashboard: GET /api/version answered "
                f"{response.status_code}",
                address=dashboard.address,
            )
        return str(response.json().get("ray_version", "0"))

    def close(self) -> None:
        """Close the HTTP connections. The executor may be used again afterwards."""
        with self._lock:
            dashboard, self._dashboard_, self._client_ = self._dashboard_, None, None
        if dashboard is not None:
            dashboard.close()

    # --- submission ---------------------------------------------------------------------------
    def submit(
        self, action_cls: type | str, params: Mapping[str, Any] | BaseModel, *, job_id: str | None = None
    ) -> str:
        """Submit the action as a Ray Job (non-blocking); return its job id (Ray's submission id).

        :param action_cls: a BaseAction subclass or an entrypoint string ``module.Class``.
        :param params: the action's params; validated here when the class is importable here.
        :param job_id: the submission id; a new one when None.
        :raises ValidationError: the params do not fit the action's params model.
        :raises DuplicateJobError: a job with this id exists on the cluster.
        :raises InfeasibleResourcesError: no node of the cluster can ever hold the request.
        :raises ClusterUnreachableError: the dashboard did not answer within ``connect_timeout``.
        """
        cls = try_resolve_action(action_cls)
        if cls is not None:
            validate_params(cls, params)
        name = action_name(cls or action_cls)
        entrypoint = action_entrypoint(cls or action_cls)
        wire = _wire_params(params, cls)
        job_id = job_id or f"raydrive_{uuid.uuid4().hex[:20]}"
        if _BAD_JOB_ID.search(job_id) or job_id in {".", ".."}:
            raise SubmissionError(
                f"job id {job_id!r} must not contain '/', '\\' or whitespace", job_id=job_id
            )

        request = resource_request(self.options, name, self.plugins)
        dashboard = self._dashboard()
        client = self._client()
        self._check_feasible(request, name)
        if self._job_info(job_id, missing_ok=True) is not None:
            raise DuplicateJobError(f"a job with id {job_id!r} already exists on the cluster", job_id=job_id)

        with self._lock:  # one build at a time: the builder caches the working-dir zip
            built = self._builder.build(package=True)
        if built.package is not None:
            self._upload(built.package.uri, built.package.data, pin=True)
        package_dir = f"_rdp_{_secrets.token_hex(12)}"
        payload = {
            "protocol": PROTOCOL,
            "action": entrypoint,
            "params": wire,
            "env": built.runtime_env.get("env_vars", {}),
            "secrets": built.secrets,
        }
        payload_uri = self._upload_payload(package_dir, payload)
        runtime_env = dict(built.runtime_env)
        runtime_env["py_modules"] = [*runtime_env.get("py_modules", []), payload_uri]

        python = shlex.join(shlex.split(self.options.python_executable))
        command = shlex.join(
            ["-m", ENTRY_MODULE, "--job-id", job_id, "--payload", package_dir, "--action", entrypoint]
        )
        try:
            client.submit_job(
                entrypoint=f"{python} {command}",
                submission_id=job_id,
                runtime_env=runtime_env,
                metadata={
                    **(self.options.metadata or {}),
                    "raydrive_driver": self.name,
                    "raydrive_action": entrypoint,
                },
                entrypoint_num_cpus=request.num_cpus,
                entrypoint_num_gpus=request.num_gpus,
                entrypoint_memory=request.memory,
                entrypoint_resources=request.resources or None,
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
                f"job {job_id!r} was not submitted to {dashboard.address}: {type(exc).__name__}: {exc}",
                job_id=job_id,
            ) from exc
        with self._lock:
            self._submitted[job_id] = name
        self._emit_submitted(job_id, name)
        return job_id

    def _check_feasible(self, request: ResourceRequest, action: str) -> None:
        if not (request.num_cpus or request.num_gpus or request.memory or request.resources):
            return  # a Jobs API entrypoint reserves nothing by default: always feasible
        key = (request.num_cpus, request.num_gpus, request.memory, tuple(sorted(request.resources.items())))
        if key in self._feasible:
            return
        check_feasible(request, self._node_totals(), default_cpus=0.0, action=action)
        self._feasible.add(key)

    def _nodes(self) -> list[dict[str, Any]]:
        response = self._dashboard().request("GET", "/api/v0/nodes", params={"detail": "1", "limit": "10000"})
        if response.status_code != 200:
            return []
        return [n for n in response.json()["data"]["result"]["result"] if n.get("state") == "ALIVE"]

    def _node_totals(self) -> list[dict[str, float]]:
        return [dict(node.get("resources_total") or {}) for node in self._nodes()]

    def _head_node(self) -> str | None:
        dashboard = self._dashboard()
        if dashboard.head_node is None:
            dashboard.head_node = next((n["node_id"] for n in self._nodes() if n.get("is_head_node")), None)
        return dashboard.head_node

    def _pin(self, uri: str) -> None:
        # GET on a package adds a reference that expires (Ray's RAY_RUNTIME_ENV_TEMPORARY_
        # REFERENCE_EXPIRATION_S, 10 min): the package is deleted once the last one is gone.
        try:
            self._dashboard().request("GET", f"/api/packages/gcs/{uri.removeprefix('gcs://')}")
        except RaydriveError:
            _log.warning("could not pin %s so that it expires; it stays until the cluster stops", uri)

    def _upload(self, uri: str, data: bytes, *, pin: bool) -> None:
        dashboard = self._dashboard()
        path = f"/api/packages/gcs/{uri.removeprefix('gcs://')}"
        # The working dir is pinned (a job queued right now keeps it) and uploaded when missing.
        if pin and dashboard.request("GET", path).status_code == 200:
            return
        response = dashboard.request("PUT", path, content=data)
        if response.status_code != 200:
            raise SubmissionError(
                f"uploading {uri} ({len(data)} bytes) to {dashboard.address} failed "
                f"({response.status_code}): {response.text[:2000]}",
                address=dashboard.address,
            )

    def _upload_payload(self, package_dir: str, payload: Mapping[str, Any]) -> str:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(f"{package_dir}/{PAYLOAD_FILE}", json.dumps(payload))
        data = buf.getvalue()
        uri = f"gcs://{PAYLOAD_PREFIX}{hashlib.sha256(data).hexdigest()[:32]}.zip"
        # Not pinned: the job's reference alone keeps it, so Ray deletes it when the job ends.
        self._upload(uri, data, pin=False)
        return uri

    # --- status -------------------------------------------------------------------------------
    def _job_info(self, job_id: str, *, missing_ok: bool = False) -> dict[str, Any] | None:
        response = self._dashboard().request("GET", f"/api/jobs/{job_id}")
        if response.status_code == 404:
            if missing_ok:
                return None
            raise self._not_found(job_id)
        if response.status_code != 200:
            raise ExecutionError(
                f"the Ray dashboard could not report job {job_id!r} ({response.status_code}): "
                f"{response.text[:2000]}",
                job_id=job_id,
            )
        info = response.json()
        self._observe(job_id, info)
        return info

    def _not_found(self, job_id: str) -> JobNotFoundError:
        return JobNotFoundError(
            f"no job {job_id!r} on the cluster at {self.dashboard_address}", job_id=job_id
        )

    def _observe(self, job_id: str, info: Mapping[str, Any]) -> None:
        """Report ``job_finished`` once, the first time this executor sees its job ended."""
        status = info.get("status")
        if status not in TERMINAL:
            return
        with self._lock:
            name = self._submitted.get(job_id)
            if name is None or job_id in self._reported:
                return
            self._reported.add(job_id)
        error = None if status == "SUCCEEDED" else (info.get("message") or status)
        self._emit_finished(job_id, name, status, error)

    def get_status(self, job_id: str) -> JobStatus:
        """The job's status: Ray's ``JobStatus`` (PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED).

        :raises JobNotFoundError: no job with this id.
        """
        from ray.job_submission import JobStatus

        info = self._job_info(job_id)
        assert info is not None
        return JobStatus(info["status"])

    def _wait_terminal(self, job_id: str, timeout: float | None, cap: float) -> dict[str, Any]:
        start = time.monotonic()
        deadline = None if timeout is None else start + timeout
        while True:
            info = self._job_info(job_id)
            assert info is not None
            if info["status"] in TERMINAL:
                return info
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ExecutionTimeoutError(
                        f"job {job_id!r} did not finish within {timeout:g} s (it is {info['status']})",
                        job_id=job_id,
                    )
                time.sleep(min(_poll_delay(time.monotonic() - start, cap), left))
            else:
                time.sleep(_poll_delay(time.monotonic() - start, cap))

    def wait(self, job_id: str, timeout_seconds: float = 300, poll_interval: float = 1.0) -> str:
        """Wait for the job to end; return ``'SUCCEEDED'``.

        Polls quickly at first, then every ``poll_interval`` seconds.

        :raises ExecutionError: the job failed or was stopped (same errors as :meth:`get_result`).
        :raises ExecutionTimeoutError: it did not end within ``timeout_seconds``.
        """
        info = self._wait_terminal(job_id, timeout_seconds, poll_interval)
        if info["status"] != "SUCCEEDED":
            self._outcome(job_id, info)  # raises what went wrong
        return str(info["status"])

    def get_result(self, job_id: str, timeout: float | None = None) -> Any:
        """Wait for the job and return the action's result (JSON data; models come back as dicts).

        The result comes from the file the job's entry wrote, never from the job's output.

        :raises ExecutionError: the action raised (``error_type``, ``error_message`` and
            ``remote_traceback`` describe it), the runtime env could not be set up, or the job
            was stopped; ActorDiedError when the job's process died without a word.
        :raises ValidationError / ActionImportError: the job could not validate the params or
            import the action.
        :raises JobNotFoundError: no job with this id.
        :raises ExecutionTimeoutError: it did not end within ``timeout`` seconds.
        """
        info = self._wait_terminal(job_id, timeout, self.options.poll_interval)
        return self._outcome(job_id, info)

    def _read_outcome(self, job_id: str, info: Mapping[str, Any]) -> dict[str, Any] | None:
        node = info.get("driver_node_id")
        if not node:
            return None
        response = self._dashboard().request(
            "GET",
            "/api/v0/logs/file",
            params={"node_id": node, "filename": result_filename(job_id), "lines": "-1"},
        )
        if response.status_code != 200:
            return None  # no outcome file: the entry never got that far
        try:
            outcome = json.loads(response.content)
        except ValueError:
            return None
        return outcome if isinstance(outcome, dict) and "ok" in outcome else None

    def _outcome(self, job_id: str, info: Mapping[str, Any]) -> Any:
        status = info["status"]
        outcome = self._read_outcome(job_id, info)
        if outcome is not None and outcome["ok"]:
            if status == "SUCCEEDED":
                return outcome.get("result")
        elif outcome is not None:
            raise _remote_error(job_id, outcome.get("error") or {})
        if status == "SUCCEEDED":
            raise ExecutionError(
                f"job {job_id!r} succeeded but left no result: was it submitted by raydrive's "
                f"{self.name} driver?",
                job_id=job_id,
            )
        if status == "STOPPED":
            raise ExecutionError(
                f"job {job_id!r} was stopped before it finished", error_type="STOPPED", job_id=job_id
            )
        raise _job_failure(job_id, info)

    # --- stop / delete ------------------------------------------------------------------------
    def stop(self, job_id: str) -> bool:
        """Ask Ray to stop the job (SIGTERM, then SIGKILL after a grace period); its status becomes
        STOPPED shortly after. Returns False when it had already ended.

        :raises JobNotFoundError: no job with this id.
        """
        response = self._dashboard().request("POST", f"/api/jobs/{job_id}/stop")
        if response.status_code == 404:
            raise self._not_found(job_id)
        if response.status_code != 200:
            raise ExecutionError(
                f"stopping job {job_id!r} failed ({response.status_code}): {response.text[:2000]}",
                job_id=job_id,
            )
        return bool(response.json().get("stopped"))

    def delete(self, job_id: str) -> bool:
        """Delete the record of an ended job from the cluster (its log files stay on disk).

        :raises RaydriveError: the job has not ended yet (stop it first).
        :raises JobNotFoundError: no job with this id.
        """
        info = self._job_info(job_id)
        assert info is not None
        if info["status"] not in TERMINAL:
            raise RaydriveError(
                f"job {job_id!r} is {info['status']}: only an ended job can be deleted; stop it first "
                f"(executor.stop({job_id!r})) and delete it once its status is STOPPED",
                job_id=job_id,
                status=info["status"],
            )
        response = self._dashboard().request("DELETE", f"/api/jobs/{job_id}")
        if response.status_code == 404:
            raise self._not_found(job_id)
        if response.status_code != 200:
            raise ExecutionError(
                f"deleting job {job_id!r} failed ({response.status_code}): {response.text[:2000]}",
                job_id=job_id,
            )
        return bool(response.json().get("deleted"))

    # --- logs ---------------------------------------------------------------------------------
    def get_logs(self, job_id: str) -> str:
        """All of the job's log so far (with Ray's setup messages, and its error when the job
        never started).

        :raises JobNotFoundError: no job with this id.
        """
        info = self._job_info(job_id)
        assert info is not None
        logs = ""
        dashboard = self._dashboard()
        if info.get("driver_node_id"):
            response = dashboard.request("GET", f"/api/jobs/{job_id}/logs")
            if response.status_code == 200:
                logs = response.json().get("logs") or ""
        else:
            # Not started (or never will): what Ray wrote on the head node, as stream_logs shows.
            head = self._head_node()
            if head:
                response = dashboard.request(
                    "GET",
                    "/api/v0/logs/file",
                    params={
                        "node_id": head,
                        "filename": DRIVER_LOG.format(submission_id=job_id),
                        "lines": "-1",
                    },
                )
                if response.status_code == 200:
                    logs = response.content.decode("utf-8", errors="replace")
        if not logs and info["status"] in TERMINAL and info["status"] != "SUCCEEDED":
            logs = info.get("message") or ""
        return logs

    def stream_logs(self, job_id: str, *, timeout: float = 3600.0) -> Iterator[str]:
        """Follow the job's log: yield each line (with its newline) as it is written.

        Ends when the job has ended and every line is out, or after ``timeout`` seconds. Safe to
        call from inside an event loop (the HTTP work runs on a private thread).

        :raises JobNotFoundError: no job with this id.
        """
        return _iterate_in_thread(lambda: self._follow(job_id, timeout))

    async def stream_logs_async(self, job_id: str, *, timeout: float = 3600.0) -> AsyncIterator[str]:
        """Like :meth:`stream_logs`, as an async iterator."""
        async for line in self._follow(job_id, timeout):
            yield line

    async def _follow(self, job_id: str, timeout: float) -> AsyncIterator[str]:
        dashboard = self._dashboard()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        filename = DRIVER_LOG.format(submission_id=job_id)
        interval = self.options.log_poll_interval
        async with dashboard.async_client() as http:
            api = _AsyncApi(self, dashboard, http)
            info = await api.job(job_id)
            # Until the driver runs, Ray writes the job's log on the head node (the job manager's):
            # "Runtime env is setting up.", the setup output when the cluster streams it there,
            # and the error when the setup fails.
            node = info.get("driver_node_id") or await api.head_node()
            tail: _Tail | None = None
            buf = bytearray()
            started = next_check = loop.time()
            try:
                while True:
                    if loop.time() >= next_check:
                        next_check = loop.time() + _poll_delay(loop.time() - started, 1.0, 0.1)
                        info = await api.job(job_id)
                        driver = info.get("driver_node_id")
                        if driver and driver != node:
                            # The driver runs on another node than the one followed: its own file.
                            if tail is not None:
                                await tail.close()
                                buf += tail.drain()
                                for line in _lines(buf):
                                    yield line
                                if buf:
                                    yield buf.decode("utf-8", errors="replace") + "\n"
                                    buf.clear()
                                tail = None
                            node = driver
                        if info["status"] in TERMINAL:
                            break
                        if node and tail is None:
                            tail = _Tail(api, node, filename, interval)
                    now = loop.time()
                    if now >= deadline:
                        return
                    wait = min(next_check, deadline) - now
                    chunk = await tail.get(wait) if tail is not None else await asyncio.sleep(wait)
                    if chunk:
                        buf += chunk
                        for line in _lines(buf):
                            yield line
            finally:
                if tail is not None:
                    await tail.close()
            # Ended: whatever the stream had not delivered yet, by byte offset.
            rest = None
            if node:
                if tail is not None:
                    buf += tail.drain()
                rest = await api.read_file(node, filename, skip=tail.offset if tail is not None else 0)
                buf += rest or b""
            for line in _lines(buf):
                yield line
            if buf:
                yield buf.decode("utf-8", errors="replace") + "\n"
            seen = rest is not None or (tail is not None and tail.found)
            if not seen and info["status"] != "SUCCEEDED" and info.get("message"):
                # No log file at all (never started, e.g. stopped while pending): Ray's reason.
                for line in _text_lines(info["message"]):
                    yield line


class _AsyncApi:
    def __init__(self, executor: RayJobsApiExecutor, dashboard: _Dashboard, http: httpx.AsyncClient) -> None:
        self.executor = executor
        self.dashboard = dashboard
        self.http = http

    async def job(self, job_id: str) -> dict[str, Any]:
        response = await self.dashboard.arequest(self.http, "GET", f"/api/jobs/{job_id}")
        if response.status_code == 404:
            raise self.executor._not_found(job_id)
        if response.status_code != 200:
            raise ExecutionError(
                f"the Ray dashboard could not report job {job_id!r} ({response.status_code})", job_id=job_id
            )
        info = response.json()
        self.executor._observe(job_id, info)
        return info

    async def head_node(self) -> str | None:
        if self.dashboard.head_node is None:
            response = await self.dashboard.arequest(
                self.http, "GET", "/api/v0/nodes", params={"detail": "1", "limit": "10000"}
            )
            if response.status_code == 200:
                for node in response.json()["data"]["result"]["result"]:
                    if node.get("is_head_node") and node.get("state") == "ALIVE":
                        self.dashboard.head_node = node["node_id"]
        return self.dashboard.head_node

    async def read_file(self, node: str, filename: str, *, skip: int = 0) -> bytes | None:
        """A log file's bytes after the first ``skip``; None when the file is not there."""
        params = {"node_id": node, "filename": filename, "lines": "-1"}
        out = bytearray()
        try:
            async with self.http.stream("GET", "/api/v0/logs/file", params=params) as response:
                self.dashboard.check(response)
                if response.status_code != 200:
                    return None
                async for chunk in response.aiter_bytes():
                    if skip >= len(chunk):
                        skip -= len(chunk)
                        continue
                    out += chunk[skip:]
                    skip = 0
        except httpx.TransportError as exc:
            raise self.dashboard.unreachable(exc, f"GET {filename}") from exc
        return bytes(out)


class _Tail:
    """Follows one log file on one node (``/api/v0/logs/stream``), reconnecting where it broke off.

    ``offset`` counts the bytes handed out; a new connection starts at the top of the file and
    skips them, so a reconnect neither repeats nor loses anything (log files only grow).
    """

    def __init__(self, api: _AsyncApi, node: str, filename: str, interval: float) -> None:
        self.api = api
        self.node = node
        self.filename = filename
        self.interval = interval
        self.offset = 0
        self.found = False
        self._chunks: asyncio.Queue[bytes] = asyncio.Queue()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        params = {
            "node_id": self.node,
            "filename": self.filename,
            "lines": "-1",
            "interval": str(self.interval),
            "timeout": "86400",
        }
        while True:
            try:
                async with self.api.http.stream("GET", "/api/v0/logs/stream", params=params) as response:
                    self.api.dashboard.check(response)
                    if response.status_code == 200:
                        self.found = True
                        skip = self.offset
                        async for chunk in response.aiter_bytes():
                            if skip >= len(chunk):
                                skip -= len(chunk)
                                continue
                            chunk = chunk[skip:]
                            skip = 0
                            self.offset += len(chunk)
                            self._chunks.put_nowait(chunk)
                    else:
                        await response.aread()  # not there yet (the job has not started)
            except httpx.TransportError:
                pass  # the stream broke off: reconnect below
            await asyncio.sleep(self.interval)

    async def get(self, timeout: float) -> bytes:
        """The next bytes, or b"" after ``timeout`` seconds; everything queued at once."""
        if self._task.done() and not self._task.cancelled() and self._task.exception() is not None:
            raise self._task.exception()  # type: ignore[misc]
        try:
            first = await asyncio.wait_for(self._chunks.get(), timeout=max(0.0, timeout))
        except asyncio.TimeoutError:
            return b""
        return first + self.drain()

    def drain(self) -> bytes:
        out = bytearray()
        while not self._chunks.empty():
            out += self._chunks.get_nowait()
        return bytes(out)

    async def close(self) -> None:
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        except RaydriveError:
            raise
        except Exception:  # the follow is over; a late transport error changes nothing
            pass


def _iterate_in_thread(make: Callable[[], AsyncIterator[str]]) -> Iterator[str]:
    """Run an async iterator on a private thread and event loop; yield its items here.

    A private loop (not ``asyncio.run`` here) keeps the sync API usable inside a running loop.
    The thread starts with the first ``next()``; leaving the loop early cancels the producer.
    """
    items: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=1024)
    closed = threading.Event()

    def put(item: tuple[str, Any]) -> bool:
        while not closed.is_set():
            try:
                items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    async def pump() -> None:
        try:
            async for line in make():
                if not put(("line", line)):
                    return
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            put(("error", exc))
            return
        put(("end", None))

    loop = asyncio.new_event_loop()
    task = loop.create_task(pump())

    def run() -> None:
        try:
            loop.run_until_complete(task)
        except BaseException:  # cancelled by the consumer, or reported through the queue
            pass
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    thread = threading.Thread(target=run, name="raydrive-jobs-api-logs", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = items.get()
            if kind == "line":
                yield value
            elif kind == "error":
                raise value
            else:
                return
    finally:
        closed.set()
        if thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop has just closed
                loop.call_soon_threadsafe(task.cancel)
            thread.join(timeout=10)


def _wire_params(params: Mapping[str, Any] | BaseModel, cls: type | None) -> Any:
    """Params as JSON data for the payload; the job validates them again."""
    if isinstance(params, BaseModel):
        return params.model_dump(mode="json", by_alias=True)
    try:
        json.dumps(params)
        return params
    except (TypeError, ValueError):
        if cls is None:
            raise ValidationError(
                "params must be JSON-serializable when the action cannot be imported here "
                "(dates, paths... are turned into JSON by its params model when it can be)",
            ) from None
    validated = validate_params(cls, params)
    return validated.model_dump(mode="json", by_alias=True)


def _remote_error(job_id: str, error: Mapping[str, Any]) -> RaydriveError:
    """The error the job's entry reported, as the raydrive error it was there."""
    kind = error.get("kind")
    summary = error.get("summary") or error.get("message") or "the job failed"
    if kind == "validation":
        return ValidationError(summary, action=error.get("action"), errors=error.get("errors") or [])
    if kind == "import":
        return ActionImportError(str(error.get("entrypoint")), str(error.get("reason")))
    return ExecutionError(
        f"{summary} (job {job_id!r})" if kind == "execution" else f"job {job_id!r}: {summary}",
        error_type=error.get("type"),
        error_message=error.get("message"),
        remote_traceback=error.get("traceback"),
        job_id=job_id,
    )


def _job_failure(job_id: str, info: Mapping[str, Any]) -> ExecutionError:
    """A failed job that left no outcome: Ray's own error type and message say why."""
    error_type = info.get("error_type") or "FAILED"
    message = (info.get("message") or "").strip()
    if error_type.upper() == "RUNTIME_ENV_SETUP_FAILURE" or "runtime_env setup failed" in message:
        return ExecutionError(
            f"job {job_id!r}: setting up the runtime environment (packages, working dir) failed, so "
            f"the action did not run. Ray said: {message}",
            error_type="RuntimeEnvSetupError",
            error_message=message,
            job_id=job_id,
        )
    if info.get("driver_exit_code") is not None:
        hint = ""
        if f"No module named '{ENTRY_MODULE.split('.')[0]}" in message:
            hint = (
                " raydrive is not importable by the job's Python: install it on the cluster, pass "
                "include_sdk=True, or point python_executable at the Python that has it."
            )
        return ActorDiedError(
            f"job {job_id!r}: the job's process exited with code {info['driver_exit_code']} before "
            f"reporting an outcome (killed, out of memory, os._exit, or the entry could not start).{hint} "
            f"Ray said: {message}",
            error_type=error_type,
            error_message=message,
            job_id=job_id,
        )
    return ExecutionError(
        f"job {job_id!r} failed ({error_type}): {message}",
        error_type=error_type,
        error_message=message,
        job_id=job_id,
    )
