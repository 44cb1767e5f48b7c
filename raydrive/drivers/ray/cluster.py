"""A local Ray cluster bound to loopback: for ``ray_address='local'``, ``raydrive cluster up``, the
demo and the tests.

Every process of the cluster gets ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (without it Ray binds to
the machine's network address instead of ``127.0.0.1``); clients of it must have it too, which
:func:`loopback_client_env` sets. Never set it for a cluster someone else started: it would break
a multi-node cluster.

The head runs as ``ray start --head --block`` in its own process group, so stopping it stops
exactly this cluster and leaves any other Ray on the machine alone.

The cluster starts with a minimal environment (:func:`cluster_environment`), not the whole shell:
every worker inherits the raylet's environment, so a shell's ``AWS_SECRET_ACCESS_KEY`` or
``GITHUB_TOKEN`` would otherwise reach every action, whatever the environment policy says.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raydrive.core.errors import ClusterUnreachableError

__all__ = ["LOOPBACK", "LocalCluster", "cluster_environment", "free_port", "loopback_client_env"]

LOOPBACK = "127.0.0.1"
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
_log = logging.getLogger("raydrive.cluster")

# What Ray, Python, pip/uv and the GPU stack need from the environment, and nothing else.
CLUSTER_ENV_KEYS = frozenset(
    {
        "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ",
        "TMPDIR", "TEMP", "TMP", "PYTHONPATH", "VIRTUAL_ENV", "CONDA_PREFIX", "CONDA_DEFAULT_ENV",
        "LD_LIBRARY_PATH", "CUDA_VISIBLE_DEVICES", "CUDA_HOME", "NVIDIA_VISIBLE_DEVICES",
        "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
        "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "XDG_CACHE_HOME",
    }
)  # fmt: skip
CLUSTER_ENV_PREFIXES = ("LC_", "RAY_", "PIP_", "UV_")
# How the starting process reaches some other cluster: not this cluster's business.
_NOT_FOR_THE_CLUSTER = frozenset(
    {"RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_JOB_HEADERS", "RAY_CLIENT_MODE"}
)


def cluster_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a local cluster starts with: what Ray needs from ``environ``, no secrets.

    Kept: ``PATH``, ``HOME``, locale (``LANG``, ``LC_*``), temp dirs, ``PYTHONPATH``,
    ``VIRTUAL_ENV`` / conda, CUDA and proxy settings, and ``RAY_*`` / ``PIP_*`` / ``UV_*``
    configuration, minus any variable whose name or value looks secret
    (:mod:`raydrive.core.redaction`) and minus ``RAY_ADDRESS`` and the other client settings.
    Ray's token authentication (``RAY_AUTH_*``) is kept when ``RAY_AUTH_MODE`` is set: it is this
    cluster's own configuration then. ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` is always set.
    """
    from raydrive.core.redaction import is_secret_key, looks_secret_value

    environ = os.environ if environ is None else environ
    token_auth = bool(environ.get("RAY_AUTH_MODE"))
    env: dict[str, str] = {}
    for key, value in environ.items():
        wanted = key in CLUSTER_ENV_KEYS or key.startswith(CLUSTER_ENV_PREFIXES)
        if not wanted or key in _NOT_FOR_THE_CLUSTER:
            continue
        own_auth = token_auth and key.startswith("RAY_AUTH_")
        if own_auth or not (is_secret_key(key) or looks_secret_value(value)):
            env[key] = value
    env.update(LOOPBACK_ENV)
    # `python` in a job (a Jobs API entrypoint) is then this interpreter, with raydrive in it.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", os.defpath)])
    return env


def loopback_client_env() -> None:
    """Make this process a loopback client of a cluster raydrive started (see module docstring)."""
    os.environ.update(LOOPBACK_ENV)


def free_port(taken: set[int | None] | None = None) -> int:
    """A port nothing listens on now, outside ``taken`` (to which it is added): the OS may hand
    the same free port out twice in a row, and Ray refuses to start with two components on one."""
    while True:
        port = _free_port()
        if taken is None:
            return port
        if port not in taken:
            taken.add(port)
            return port


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((LOOPBACK, port)) == 0


def _ray_executable() -> str:
    candidate = Path(sys.executable).with_name("ray")
    return str(candidate) if candidate.exists() else (shutil.which("ray") or "ray")


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return True
    return False


def stop_cluster_process(pid: int, timeout: float = 30.0, *, wait: Callable[..., Any] | None = None) -> None:
    """Stop the cluster whose ``ray start --block`` runs as ``pid`` (a process group leader).

    ``wait`` is the Popen's own wait where this process started it (it also reaps the child);
    a cluster started by another process (``raydrive cluster up``) is polled until it is gone.
    """
    try:
        # SIGINT: `ray start --block` then stops its processes cleanly (SIGTERM is slow).
        os.killpg(pid, signal.SIGINT)
        if wait is not None:
            wait(timeout=timeout)
        else:
            deadline = time.monotonic() + timeout
            while not _gone(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    if wait is not None:
        wait()


@dataclass
class LocalCluster:
    """A single-node Ray cluster on loopback, started and stopped by this object.

    Ports left as None are chosen free at start. ``temp_dir`` None gives the cluster a private
    temp dir (so it never becomes the machine's "current" cluster); ``default_temp=True`` uses
    Ray's default, so ``ray_address='auto'`` finds it (``raydrive cluster up``). The cluster's
    processes get :func:`cluster_environment` of this process plus ``env`` (variables you mean
    every worker to see).
    """

    num_cpus: int | None = None
    resources: dict[str, float] = field(default_factory=dict)
    gcs_port: int | None = None
    dashboard_port: int | None = None
    client_port: int | None = None
    temp_dir: str | None = None
    default_temp: bool = False
    log_file: str | None = None
    env: dict[str, str] = field(default_factory=dict, repr=False)
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _owned_temp: str | None = field(default=None, init=False, repr=False)

    @property
    def address(self) -> str:
        """GCS address for ``ray.init`` / ``ray_address``."""
        return f"{LOOPBACK}:{self.gcs_port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://{LOOPBACK}:{self.dashboard_port}"

    @property
    def client_address(self) -> str:
        """Ray client address (``ray://``) for remote mode."""
        return f"ray://{LOOPBACK}:{self.client_port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The pid of ``ray start --block`` (its process group holds the whole cluster), while running."""
        return self._proc.pid if self.running and self._proc else None

    def _command(self) -> list[str]:
        # Worker ports get a private window so two clusters on one machine never collide; no
        # other port of this cluster may fall inside it (Ray refuses to start if one does).
        chosen = {self.gcs_port, self.dashboard_port, self.client_port}
        base = random.randrange(20000, 60000, 500)
        while any(p is not None and base <= p < base + 500 for p in chosen):
            base = random.randrange(20000, 60000, 500)

        def pick() -> int:
            while True:
                port = free_port(chosen)
                if not base <= port < base + 500:
                    return port

        cmd = [
            _ray_executable(), "start", "--head", "--block", "--disable-usage-stats",
            f"--node-ip-address={LOOPBACK}", f"--port={self.gcs_port}",
            f"--dashboard-host={LOOPBACK}", f"--dashboard-port={self.dashboard_port}",
            f"--ray-client-server-port={self.client_port}",
            f"--dashboard-agent-listen-port={pick()}",
            f"--dashboard-agent-grpc-port={pick()}",
            f"--runtime-env-agent-port={pick()}",
            f"--metrics-export-port={pick()}",
            f"--node-manager-port={pick()}",
            f"--object-manager-port={pick()}",
            f"--min-worker-port={base}", f"--max-worker-port={base + 499}",
            "--include-dashboard=true",
        ]  # fmt: skip
        if self.num_cpus is not None:
            cmd.append(f"--num-cpus={self.num_cpus}")
        if self.resources:
            cmd.append(f"--resources={json.dumps(self.resources)}")
        if not self.default_temp:
            cmd.append(f"--temp-dir={self.temp_dir}")
        return cmd

    def start(self, timeout: float = 90.0) -> LocalCluster:
        """Start the head and wait until its GCS, dashboard and client server answer and its raylet
        has registered (the head node is ALIVE)."""
        if self.running:
            return self
        taken: set[int | None] = {self.gcs_port, self.dashboard_port, self.client_port}
        self.gcs_port = self.gcs_port or free_port(taken)
        self.dashboard_port = self.dashboard_port or free_port(taken)
        self.client_port = self.client_port or free_port(taken)
        if not self.default_temp and self.temp_dir is None:
            # Short path: Ray's unix sockets live under it and have a ~107 character limit.
            self._owned_temp = self.temp_dir = tempfile.mkdtemp(prefix="rd", dir="/tmp")
        env = {**cluster_environment(), **self.env}
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        _log.info("starting a local Ray cluster on %s (dashboard %s)", self.address, self.dashboard_url)
        self._proc = subprocess.Popen(
            self._command(),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise ClusterUnreachableError(
                    f"local Ray cluster exited during start (code {self._proc.returncode})"
                    + (f"; see {self.log_file}" if self.log_file else ""),
                    address=self.address,
                )
            if self._ready():
                return self
            time.sleep(0.25)
        self.stop()
        raise ClusterUnreachableError(
            f"local Ray cluster on {self.address} did not come up within {timeout:.0f} s",
            address=self.address,
        )

    def _ready(self) -> bool:
        if not (_port_open(self.gcs_port or 0) and _port_open(self.client_port or 0)):
            return False
        try:
            with urllib.request.urlopen(f"{self.dashboard_url}/api/version", timeout=2) as resp:
                if resp.status != 200:
                    return False
            # The GCS and dashboard answer seconds before the head's raylet has registered; a
            # first call made then finds no node to run on. Ready means the head node is ALIVE.
            with urllib.request.urlopen(f"{self.dashboard_url}/api/v0/nodes", timeout=5) as resp:
                nodes = json.load(resp)["data"]["result"]["result"]
            return any(node.get("state") == "ALIVE" for node in nodes)
        except (OSError, ValueError, KeyError, TypeError):
            return False

    def stop(self, timeout: float = 30.0) -> None:
        """Stop every process of this cluster (and only this cluster)."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            stop_cluster_process(proc.pid, timeout, wait=proc.wait)
        if self._owned_temp:
            shutil.rmtree(self._owned_temp, ignore_errors=True)
            self._owned_temp = self.temp_dir = None

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
