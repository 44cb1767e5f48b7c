"""HTTP to one Ray dashboard: one async implementation (:class:`AsyncDashboard`), and the sync
API (:class:`Dashboard`) as a thin wrapper that runs it on a private event loop.

Every answer is checked here, so that callers only see raydrive errors naming the address (its
password redacted): 401/403 give :class:`AuthenticationError`; no connection, a connection that
never answers (bounded by ``connect_timeout`` until the dashboard has answered once), or a
gateway error give :class:`ClusterUnreachableError`; HTML or JSON of the wrong shape give
:class:`SubmissionError` ("does not answer like a Ray dashboard"). Job ids are validated and
URL-quoted before they become a path.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import AsyncIterator, Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

from raydrive.core.errors import (
    AuthenticationError,
    ClusterUnreachableError,
    JobNotFoundError,
    RaydriveError,
    SubmissionError,
)
from raydrive.core.redaction import redact_url
from raydrive.drivers.ray_jobs_api.wire import valid_job_id

if TYPE_CHECKING:
    import httpx
else:

    class _LazyModule:
        """httpx, imported on first use: listing drivers imports this module, and httpx (which
        pulls in rich for its CLI) would be most of `available_drivers()`'s time."""

        def __getattr__(self, name: str) -> Any:
            import httpx as module

            return getattr(module, name)

    httpx = _LazyModule()

__all__ = ["AUTH_TOKEN_ENV", "AUTH_TOKEN_PATH_ENV", "AsyncDashboard", "Dashboard", "JobInfo", "auth_headers"]

T = TypeVar("T")
AUTH_TOKEN_ENV = "RAY_AUTH_TOKEN"
AUTH_TOKEN_PATH_ENV = "RAY_AUTH_TOKEN_PATH"
AUTH_MODE_ENV = "RAY_AUTH_MODE"
JOB_STATES = frozenset({"PENDING", "RUNNING", "STOPPED", "SUCCEEDED", "FAILED"})
TERMINAL = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})
_GATEWAY = frozenset({502, 503, 504})
_RESOURCE_FIELDS = ("entrypoint_num_cpus", "entrypoint_num_gpus", "entrypoint_memory", "entrypoint_resources")


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


@dataclass(frozen=True)
class JobInfo:
    """The fields of Ray's ``JobDetails`` that raydrive reads, checked when parsed.

    ``entrypoint``, ``runtime_env``, ``metadata`` and the ``entrypoint_*`` resources are what a
    retry resubmits (from any process); ``start_time`` / ``end_time`` are Ray's, in seconds.
    """

    status: str
    message: str | None = None
    error_type: str | None = None
    driver_node_id: str | None = None
    driver_exit_code: int | None = None
    entrypoint: str | None = None
    runtime_env: Mapping[str, Any] = field(default_factory=dict)
    metadata: Mapping[str, str] = field(default_factory=dict)
    resources: Mapping[str, Any] = field(default_factory=dict)
    start_time: float | None = None
    end_time: float | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


@dataclass
class _Shared:
    """What the sync and async clients of one executor learn once: the dashboard answered, the
    head node's id."""

    reached: bool = False
    version: str | None = None
    head_node: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


def _opt_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) and value else None


def _seconds(ms: Any) -> float | None:
    return ms / 1000.0 if isinstance(ms, int | float) and ms > 0 else None


class AsyncDashboard:
    """The dashboard's HTTP API, async. Use it in one event loop (its connections belong there)."""

    def __init__(self, options: Any, shared: _Shared | None = None, *, stream: bool = False) -> None:
        self.address: str = options.dashboard_address
        self.shown = redact_url(self.address)
        self.connect_timeout: float = options.connect_timeout
        self.request_timeout: float = options.request_timeout
        auth = auth_headers()
        user = dict(options.headers or {})
        self.sent_token = bool(auth) or any(k.lower() == "authorization" for k in user)
        self.headers = {**auth, **user}
        self.verify = options.verify
        self.shared = shared or _Shared()
        # A followed log may stay quiet as long as the job does: no read timeout when streaming.
        read = None if stream else self.request_timeout
        self._timeout = httpx.Timeout(self.request_timeout, connect=self.connect_timeout, read=read)
        self._http: httpx.AsyncClient | None = None

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(
                base_url=self.address, headers=self.headers, verify=self.verify, timeout=self._timeout
            )
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            http, self._http = self._http, None
            await http.aclose()

    # --- errors -------------------------------------------------------------------------------
    def unreachable(self, exc: Exception, what: str, *, probing: bool = False) -> ClusterUnreachableError:
        if isinstance(exc, httpx.ConnectTimeout | httpx.ConnectError) or probing:
            detail = str(exc) or type(exc).__name__
            if probing and isinstance(exc, httpx.ReadTimeout):
                detail = "it accepted the connection but did not answer"
            message = (
                f"cannot reach the Ray dashboard at {self.shown} (waited up to {self.connect_timeout:g} s): "
                f"{detail}. Is the cluster up, and is dashboard_address its dashboard's HTTP address?"
            )
        elif isinstance(exc, httpx.TimeoutException):
            message = (
                f"the Ray dashboard at {self.shown} did not answer {what} within {self.request_timeout:g} s"
            )
        else:
            message = f"lost the connection to the Ray dashboard at {self.shown} during {what}: {exc}"
        return ClusterUnreachableError(message, address=self.shown)

    def check(self, response: httpx.Response, what: str) -> httpx.Response:
        """Raise for answers no caller can use: refused credentials, a gateway in trouble."""
        status = response.status_code
        if status in (401, 403):
            if self.sent_token:
                hint = (
                    f"the token in {AUTH_TOKEN_ENV} / {AUTH_TOKEN_PATH_ENV} (or the Authorization header) "
                    f"was refused: set {AUTH_TOKEN_ENV} to the cluster's token"
                )
            else:
                hint = (
                    "the cluster uses token authentication and no token was sent: set "
                    f"{AUTH_TOKEN_ENV} (or {AUTH_TOKEN_PATH_ENV}, a file holding it) to the cluster's token"
                )
            raise AuthenticationError(
                f"the Ray dashboard at {self.shown} answered {status} to {what}: {hint}",
                address=self.shown,
                status_code=status,
            )
        if status in _GATEWAY:
            raise ClusterUnreachableError(
                f"the Ray dashboard at {self.shown} is not available: {what} answered {status} "
                f"({response.reason_phrase}; a proxy in front of it?)",
                address=self.shown,
                status_code=status,
            )
        return response

    def not_dashboard(self, response: httpx.Response, what: str, why: str) -> SubmissionError:
        kind = response.headers.get("content-type", "no content type").split(";")[0]
        return SubmissionError(
            f"{self.shown} does not answer like a Ray dashboard: {what} answered {response.status_code} "
            f"({kind}) {why}. Is dashboard_address the dashboard's HTTP address (port 8265)?",
            address=self.shown,
            status_code=response.status_code,
        )

    def json(self, response: httpx.Response, what: str) -> dict[str, Any]:
        """The answer's JSON object, or :meth:`not_dashboard`."""
        try:
            data = response.json()
        except ValueError:
            raise self.not_dashboard(response, what, "with no JSON") from None
        if not isinstance(data, dict):
            raise self.not_dashboard(
                response, what, f"with JSON that is not an object ({type(data).__name__})"
            )
        return data

    # --- requests -----------------------------------------------------------------------------
    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request, after the dashboard has answered once within ``connect_timeout``."""
        if not self.shared.reached:
            await self.version()
        return await self._send(method, path, **kwargs)

    async def _send(self, method: str, path: str, *, probing: bool = False, **kwargs: Any) -> httpx.Response:
        what = f"{method} {path}"
        try:
            response = await self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise self.unreachable(exc, what, probing=probing) from exc
        return self.check(response, what)

    @contextlib.asynccontextmanager
    async def stream(self, method: str, path: str, **kwargs: Any) -> AsyncIterator[httpx.Response]:
        if not self.shared.reached:
            await self.version()
        async with self.http.stream(method, path, **kwargs) as response:
            yield self.check(response, f"{method} {path}")

    async def version(self) -> str:
        """The cluster's Ray version. The first request: a dashboard answers it at once, so the
        whole of it (connect and answer) is bounded by ``connect_timeout``."""
        if self.shared.version is not None:
            return self.shared.version
        what = "GET /api/version"
        response = await self._send("GET", "/api/version", probing=True, timeout=self.connect_timeout)
        if response.status_code != 200:
            raise self.not_dashboard(response, what, "instead of 200")
        version = self.json(response, what).get("ray_version")
        if not isinstance(version, str):
            raise self.not_dashboard(response, what, "with no ray_version")
        self.shared.version, self.shared.reached = version, True
        return version

    @staticmethod
    def job_path(job_id: str, suffix: str = "") -> str:
        if not valid_job_id(job_id):
            raise JobNotFoundError(
                f"no job {job_id!r}: a job id is letters, digits and '_.:-' (at most 256)", job_id=job_id
            )
        return f"/api/jobs/{quote(job_id, safe='')}{suffix}"

    async def job(self, job_id: str) -> JobInfo | None:
        """The job's info; None when the cluster has no such job."""
        path = self.job_path(job_id)
        response = await self.request("GET", path)
        what = f"GET {path}"
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self.not_dashboard(response, what, f"instead of job {job_id!r}: {response.text[:500]}")
        data = self.json(response, what)
        status = data.get("status")
        if status not in JOB_STATES:
            raise self.not_dashboard(response, what, f"with no job status (got {str(status)[:50]!r})")
        code = data.get("driver_exit_code")
        metadata = data.get("metadata")
        runtime_env = data.get("runtime_env")
        resources = {key: data[key] for key in _RESOURCE_FIELDS if data.get(key) not in (None, 0, {})}
        return JobInfo(
            status=status,
            message=_opt_str(data, "message"),
            error_type=_opt_str(data, "error_type"),
            driver_node_id=_opt_str(data, "driver_node_id"),
            driver_exit_code=code if isinstance(code, int) else None,
            entrypoint=_opt_str(data, "entrypoint"),
            runtime_env=runtime_env if isinstance(runtime_env, dict) else {},
            metadata={str(k): str(v) for k, v in metadata.items()} if isinstance(metadata, dict) else {},
            resources=resources,
            start_time=_seconds(data.get("start_time")),
            end_time=_seconds(data.get("end_time")),
        )

    async def submit(self, request: Mapping[str, Any]) -> bool:
        """POST a job (Ray's ``JobSubmitRequest`` as JSON, nothing to upload); False when a job
        with its submission id exists already (Ray refuses a second one: the id is the lock that
        makes a retry start once, whichever process submits it)."""
        what = "POST /api/jobs/"
        response = await self.request("POST", "/api/jobs/", json=dict(request))
        if response.status_code == 200:
            return True
        # Ray's job agent refuses a taken id with 400; the dashboard head passes that on as a 500
        # (Ray 2.60), the agent's text kept.
        if response.status_code in (400, 500) and "already exists" in response.text:
            return False
        raise SubmissionError(
            f"{what} on {self.shown} failed ({response.status_code}) for job "
            f"{request.get('submission_id')!r}: {response.text[-2000:]}",
            job_id=request.get("submission_id"),
            address=self.shown,
        )

    async def job_action(self, method: str, job_id: str, suffix: str, key: str) -> bool | None:
        """POST .../stop or DELETE: the answer's ``key``; None when there is no such job."""
        path = self.job_path(job_id, suffix)
        response = await self.request(method, path)
        if response.status_code == 404:
            return None
        what = f"{method} {path}"
        if response.status_code != 200:
            raise SubmissionError(
                f"{what} on {self.shown} failed ({response.status_code}): {response.text[:2000]}",
                job_id=job_id,
                address=self.shown,
            )
        return bool(self.json(response, what).get(key))

    async def job_logs(self, job_id: str) -> str:
        path = self.job_path(job_id, "/logs")
        response = await self.request("GET", path)
        if response.status_code != 200:
            return ""
        logs = self.json(response, f"GET {path}").get("logs")
        return logs if isinstance(logs, str) else ""

    async def nodes(self) -> list[dict[str, Any]]:
        """The alive nodes (Ray's state API); [] when this dashboard does not serve it."""
        what = "GET /api/v0/nodes"
        response = await self.request("GET", "/api/v0/nodes", params={"detail": "1", "limit": "10000"})
        if response.status_code != 200:
            return []
        try:
            rows = self.json(response, what)["data"]["result"]["result"]
            return [n for n in rows if isinstance(n, dict) and n.get("state") == "ALIVE"]
        except (KeyError, TypeError):
            raise self.not_dashboard(
                response, what, "with JSON of another shape than Ray's node list"
            ) from None

    async def head_node(self) -> str | None:
        if self.shared.head_node is None:
            for node in await self.nodes():
                if node.get("is_head_node") and isinstance(node.get("node_id"), str):
                    self.shared.head_node = node["node_id"]
        return self.shared.head_node

    async def read_file(self, node: str, filename: str, *, skip: int = 0) -> bytes | None:
        """A log file's bytes after the first ``skip``; None when the file is not there."""
        params = {"node_id": node, "filename": filename, "lines": "-1"}
        out = bytearray()
        try:
            async with self.stream("GET", "/api/v0/logs/file", params=params) as response:
                if response.status_code != 200:
                    return None
                async for chunk in response.aiter_bytes():
                    if skip >= len(chunk):
                        skip -= len(chunk)
                        continue
                    out += chunk[skip:]
                    skip = 0
        except httpx.TransportError as exc:
            raise self.unreachable(exc, f"GET {filename}") from exc
        return bytes(out)

    async def package_exists(self, uri: str) -> bool:
        """Whether the GCS has the package (a GET adds a reference that expires: Ray's pin)."""
        response = await self.request("GET", f"/api/packages/gcs/{quote(uri.removeprefix('gcs://'))}")
        return response.status_code == 200

    async def upload(self, uri: str, data: bytes) -> None:
        response = await self.request(
            "PUT", f"/api/packages/gcs/{quote(uri.removeprefix('gcs://'))}", content=data
        )
        if response.status_code != 200:
            raise SubmissionError(
                f"uploading {uri} ({len(data)} bytes) to {self.shown} failed "
                f"({response.status_code}): {response.text[:2000]}",
                address=self.shown,
            )


class Dashboard:
    """The sync API: each call runs :class:`AsyncDashboard`'s on a private event loop thread, so
    it works inside a running event loop too."""

    def __init__(self, options: Any) -> None:
        self.api = AsyncDashboard(options)
        self.ray_client: Any = None  # Ray's JobSubmissionClient over this one (see .sdk)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="raydrive-jobs-api", daemon=True)
        self._thread.start()

    @property
    def shared(self) -> _Shared:
        return self.api.shared

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        if threading.current_thread() is self._thread:
            coro.close()
            # E.g. a job_finished hook calling the executor's sync API: waiting here would deadlock.
            raise RaydriveError(
                "the ray-jobs-api executor's sync API was called from its own HTTP thread (a "
                "raydrive_job_finished hook?): call it from another thread"
            )
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.run(self.api.request(method, path, **kwargs))

    def close(self) -> None:
        if self._loop.is_closed():
            return
        with contextlib.suppress(Exception):
            self.run(self.api.aclose())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
