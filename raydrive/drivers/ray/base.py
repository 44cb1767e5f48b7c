"""``BaseRayExecutor``: what every Ray driver shares.

- **Connection**: :meth:`BaseRayExecutor.connect` joins the cluster named by ``ray_address``
  (see :mod:`~raydrive.drivers.ray.connection`), bounded by ``connect_timeout``.
- **Runtime env**: one :class:`~raydrive.core.runtime_env.RuntimeEnvBuilder` per executor. The
  working dir is zipped here (content-addressed, re-zipped only when a file changed) and uploaded
  to the cluster's GCS once per executor under its ``gcs://_ray_pkg_<sha1>.zip`` URI, skipped
  when the cluster has it already. This works the same through the Ray client (``ray://``): the
  GCS key-value calls behind ``package_exists`` / ``upload_package_to_gcs`` are forwarded by the
  client, so remote mode needs no fallback to Ray's own upload of a local path.
  Packages are not pinned for tasks: a pin expires (10 minutes by default) and Ray then deletes the package,
  so a job queued longer would find its code gone. They stay until the cluster stops (one package
  per distinct working-dir content), except that Ray deletes a package when a Ray job or detached
  actor that referenced it ends. Hence presence is re-checked (and, for a detached actor, the
  package pinned for the start) before each actor start (:meth:`BaseRayExecutor.runtime_env_for_actor`), every
  :attr:`BaseRayExecutor.upload_recheck_s` seconds for submissions, and at once after a job
  failed to set up its runtime env (:meth:`BaseRayExecutor.forget_uploads`).
- **Secrets** (:attr:`BuiltRuntimeEnv.secrets`) never go into the runtime env that Ray's state API
  and dashboard show; drivers pass ``BuiltRuntimeEnv.env`` as an argument of the actor
  constructor or task, and the worker sets it in ``os.environ`` (see ``worker.py``).
- **The submission step** (action, params, resources after the hooks and the feasibility check,
  runtime env) is :class:`~raydrive.drivers.ray.submission.Submitter`'s, shared with ray-jobs-api:
  :meth:`BaseRayExecutor.prepare` gives a typed :class:`~raydrive.drivers.ray.submission.Submission`
  that each driver then sends its own way.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel

from raydrive.core.errors import ClusterUnreachableError
from raydrive.core.executor import BaseExecutor
from raydrive.core.options import RayOptions
from raydrive.core.plugins import PluginManager
from raydrive.core.policy_types import ResourceRequest
from raydrive.core.runtime_env import BuiltRuntimeEnv
from raydrive.drivers.ray import compat
from raydrive.drivers.ray.connection import RayConnection, connect
from raydrive.drivers.ray.errors import ray_errors, to_raydrive_error
from raydrive.drivers.ray.submission import PreparedAction, Submission, Submitter
from raydrive.drivers.ray.wire import NAMESPACE
from raydrive.drivers.ray.worker import ray_remote

__all__ = ["BaseRayExecutor"]

_log = logging.getLogger("raydrive.ray")


class BaseRayExecutor(BaseExecutor):
    """Base class of the Ray drivers: connection, runtime env, upload, resources and secrets.

    :cvar default_cpus: the CPUs Ray reserves when ``num_cpus`` is not given, for the feasibility
        check (1 for tasks; 1 to place an actor, which then holds none).
    :cvar upload_recheck_s: how often an uploaded working dir's presence in the GCS is re-checked.
    """

    Options: ClassVar[type[RayOptions]] = RayOptions
    options: RayOptions
    default_cpus: ClassVar[float] = 1.0
    upload_recheck_s: ClassVar[float] = 60.0

    def __init__(self, env: Any = None, /, *, plugins: PluginManager | None = None, **options: Any) -> None:
        super().__init__(env, plugins=plugins, **options)
        self.submitter = Submitter(self.name, self.options, plugins, default_cpus=self.default_cpus)
        self._connection: RayConnection | None = None
        self._uploaded: dict[str, float] = {}  # package URI -> when its presence was last checked
        self._py_modules: dict[tuple[str, ...], tuple[float, list[Any]]] = {}
        self._last_runtime_env: dict[str, Any] | None = None
        self._last_build: tuple[float, dict[str, str], BuiltRuntimeEnv] | None = None
        self._code_paths: list[str] | None = None
        self._upload_lock = threading.Lock()

    # --- connection -----------------------------------------------------------------------------
    def connect(self) -> RayConnection:
        """Connect to the cluster (or reuse this process's connection); bounded by connect_timeout."""
        conn = self._connection
        if conn is not None and _ray_initialized():
            return conn
        conn = connect(self.options.ray_address, timeout=self.options.connect_timeout)
        if conn != self._connection:
            # Another cluster (or the same one restarted): what was uploaded and checked may be gone.
            self._uploaded.clear()
            self._py_modules.clear()
            self.submitter.forget_cluster()
            self._last_build = None
            self._code_paths = None
        self._connection = conn
        return conn

    @property
    def connection(self) -> RayConnection | None:
        """The connection in use, None before the first submission."""
        return self._connection

    @property
    def address(self) -> str:
        conn = self._connection
        return conn.address if conn is not None else self.options.ray_address

    # --- the submission step --------------------------------------------------------------------
    def prepare(
        self,
        action: Any,
        params: Mapping[str, Any] | BaseModel,
        *,
        job_id: str,
        place: bool = True,
        runtime: Any = None,
    ) -> Submission:
        """The typed :class:`~raydrive.drivers.ray.submission.Submission` for one job.

        :param place: a process is placed for this job: resources (after the hooks, checked
            feasible) and the runtime env are part of it. False for a call to a running actor.
        :param runtime: builds the runtime env (default :meth:`runtime_env`).
        :raises ActionImportError: the action is not a BaseAction subclass or ``module.Class``.
        :raises ValidationError: the params do not fit the action's params model.
        :raises InfeasibleResourcesError: no alive node can hold the request.
        """
        return self.submitter.prepare(
            action,
            params,
            job_id=job_id,
            nodes=self.nodes if place else None,
            runtime=(runtime or self.runtime_env) if place else None,
        )

    def action(self, action: Any) -> PreparedAction:
        """The prepared action (resolved here when importable; cached per executor)."""
        return self.submitter.action(action)

    def nodes(self) -> list[dict[str, float]]:
        """The alive nodes' resource totals (connects first when needed)."""
        self.connect()
        import ray

        with ray_errors(address=self.address):
            nodes = self.bounded("ray.nodes", ray.nodes)
        return [node.get("Resources", {}) for node in nodes if node.get("Alive")]

    def bounded(self, what: str, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``call(*args, **kwargs)``, bounded by ``connect_timeout`` over the Ray client.

        A call through Ray's client (``ray://``) waits as long as the client server takes to
        answer, forever for one it never answers or a half-dead server; here it runs on a helper
        thread and the caller gets ClusterUnreachableError naming ``what`` at the bound. (The
        thread cannot be stopped: it ends when Ray gives up on the call.) Direct connections call
        straight through: their calls are bounded by Ray's own gRPC deadlines.
        """
        conn = self._connection
        if conn is None or not conn.client_mode:
            return call(*args, **kwargs)
        return bounded_call(what, call, args, kwargs, self.options.connect_timeout, self.address)

    @property
    def code_paths(self) -> list[str]:
        """The submitter's code paths, as Ray gives a driver's own workers (script dir and cwd).

        For work that a detached actor submits on this process's behalf (ray-job): that actor's
        job is not this process's, so the paths travel with the job. Empty in remote mode and
        with a working dir, as in Ray.
        """
        if self._code_paths is not None:
            return self._code_paths
        conn = self._connection
        if (conn is not None and conn.client_mode) or self.options.working_dir is not None:
            self._code_paths = []
            return self._code_paths
        paths = []
        script = sys.argv[0] if sys.argv and sys.argv[0] not in ("", "-c", "-m") else None
        if script:
            script_dir = os.path.dirname(os.path.realpath(script))
            if script_dir in sys.path:
                paths.append(script_dir)
        paths.append(os.path.abspath(os.curdir))
        self._code_paths = paths
        return paths

    # --- runtime env ----------------------------------------------------------------------------
    def runtime_env(self, *, reuse_s: float = 0.0, recheck_s: float | None = None) -> BuiltRuntimeEnv:
        """Build the runtime env and make sure the cluster has the working dir (uploaded once).

        ``runtime_env`` of the result is what Ray gets; ``env`` (variables and secrets) is what the
        driver passes to the worker by argument. Connects first when needed.

        :param reuse_s: return the previous build when it is younger than this and ``os.environ``
            has not changed since: a burst of submissions then costs one build (the hooks and the
            working-dir walk), not one each. Files changed within that window are picked up by the
            next build after it.
        :param recheck_s: re-check that the cluster still has an uploaded package when the last
            check is older than this (default :attr:`upload_recheck_s`; 0: check now).
        """
        if reuse_s > 0:
            cached = self._last_build
            if cached is not None and time.monotonic() - cached[0] < reuse_s and cached[1] == os.environ:
                return cached[2]
        self.connect()
        environ = dict(os.environ)
        built = self.submitter.build_runtime_env(environ)
        if built.package is not None:
            self._ensure_uploaded(built, self.upload_recheck_s if recheck_s is None else recheck_s)
        runtime_env = built.runtime_env
        if _has_local_py_modules(runtime_env):
            runtime_env = self._upload_py_modules(runtime_env)
            built = dataclasses.replace(built, runtime_env=runtime_env)
        self._last_runtime_env = runtime_env
        self._last_build = (time.monotonic(), environ, built)
        return built

    def runtime_env_for_actor(self, *, detached: bool = False) -> BuiltRuntimeEnv:
        """:meth:`runtime_env` for an actor about to start: call it before EVERY actor start.

        Ray deletes a working-dir package as soon as the last detached actor (or Ray job) that
        referenced it ends, within about a second; on another node the next actor then dies with
        "runtime_env package prematurely deleted" (on one node an unpacked copy hides this). So
        the package's presence is checked now, not every :attr:`upload_recheck_s`, and for a
        detached actor it is first pinned for :data:`ACTOR_START_PIN_S` seconds, which covers the
        moment between this check and the new actor taking its own reference, then checked (and
        uploaded again if gone) once more.
        """
        built = self.runtime_env(recheck_s=0)
        if detached and built.package is not None:
            conn = self._connection
            with ray_errors(address=self.address):
                if conn is not None and conn.client_mode:
                    # Ray's client server never answers a client's pin: a worker pins instead.
                    compat.pin_runtime_env_uri_on_cluster(
                        built.package.uri, ACTOR_START_PIN_S, self.options.connect_timeout
                    )
                else:
                    compat.pin_runtime_env_uri(built.package.uri, expiration_s=ACTOR_START_PIN_S)
            self._ensure_uploaded(built, 0)
        return built

    def forget_uploads(self) -> None:
        """Check the cluster for every package again at the next build (after a runtime-env setup
        failure: Ray may have deleted one, when a job or detached actor that used it ended)."""
        self._uploaded.clear()
        self._py_modules.clear()
        self._last_build = None

    @property
    def last_runtime_env(self) -> dict[str, Any] | None:
        """The runtime env of the last submission, as Ray saw it (never holds a secret)."""
        return self._last_runtime_env

    def _ensure_uploaded(self, built: BuiltRuntimeEnv, recheck_s: float) -> None:
        package = built.package
        assert package is not None
        checked = self._uploaded.get(package.uri)
        if checked is not None and time.monotonic() - checked < recheck_s:
            return
        with self._upload_lock, ray_errors(address=self.address):
            if not self.bounded("package_exists", compat.package_exists, package.uri):
                _log.info(
                    "uploading working dir (%d files, %.1f KiB zipped) to the cluster as %s",
                    package.file_count,
                    len(package.data) / 1024,
                    package.uri,
                )
                self.bounded("upload_package_to_gcs", compat.upload_package_to_gcs, package.uri, package.data)
            self._uploaded[package.uri] = time.monotonic()

    def _upload_py_modules(self, runtime_env: dict[str, Any]) -> dict[str, Any]:
        # Local py_modules (include_sdk, or the user's runtime_env) become gcs:// URIs here, so
        # that work submitted by a registry actor on another node does not depend on local paths.
        key = tuple(str(m) for m in runtime_env["py_modules"])
        cached = self._py_modules.get(key)
        if cached is not None and time.monotonic() - cached[0] < self.upload_recheck_s:
            return {**runtime_env, "py_modules": list(cached[1])}
        import tempfile

        with self._upload_lock, ray_errors(address=self.address), tempfile.TemporaryDirectory() as scratch:
            converted = self.bounded(
                "upload_py_modules",
                compat.upload_py_modules_if_needed,
                dict(runtime_env),
                include_gitignore=False,
                scratch_dir=scratch,
            )
        self._py_modules[key] = (time.monotonic(), list(converted["py_modules"]))
        return converted

    def resources(self, action: str) -> ResourceRequest:
        """The resource request for ``action`` after the hooks, checked feasible on the cluster.

        :raises InfeasibleResourcesError: no alive node's totals can hold the request.
        :raises ResourceVetoError: a resources hook refused the request.
        """
        return self.submitter.resources(action, self.nodes)

    # --- small Ray helpers for drivers ----------------------------------------------------------
    @staticmethod
    def remote_class(cls: type, **defaults: Any) -> Any:
        """``ray.remote(**defaults)(cls)``, made once per class and defaults (see
        :func:`~raydrive.drivers.ray.worker.ray_remote`)."""
        return ray_remote(cls, **defaults)

    def map_error(
        self, exc: BaseException, *, action: str | None = None, job_id: str | None = None
    ) -> BaseException:
        """raydrive's error for ``exc`` (see :func:`.errors.to_raydrive_error`), naming the address."""
        return to_raydrive_error(exc, action=action, job_id=job_id, address=self.address)

    def actor_exists(self, name: str, namespace: str = NAMESPACE) -> bool:
        """Whether a live actor has this name in ``namespace``."""
        self.connect()
        import ray

        try:
            ray.get_actor(name, namespace=namespace)
        except ValueError:
            return False
        return True

    def kill_actor(self, name: str, namespace: str = NAMESPACE) -> bool:
        """Kill the named actor (no restart); False when there is none."""
        self.connect()
        import ray

        try:
            ray.kill(ray.get_actor(name, namespace=namespace), no_restart=True)
        except ValueError:
            return False
        return True


T = TypeVar("T")


def bounded_call(
    what: str,
    call: Callable[..., T],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    timeout: float,
    address: str,
) -> T:
    """``call(*args, **kwargs)`` on a helper thread; ClusterUnreachableError after ``timeout`` s."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append((True, call(*args, **kwargs)))
        except BaseException as exc:  # handed to the caller's thread
            outcome.append((False, exc))

    worker = threading.Thread(target=run, name=f"raydrive-{what}", daemon=True)
    worker.start()
    worker.join(timeout)
    if not outcome:
        raise ClusterUnreachableError(
            f"the Ray client call {what} to {address} did not answer within {timeout:g} s "
            "(connect_timeout): the cluster's client server is silent or half-working",
            address=address,
        )
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


ACTOR_START_PIN_S = 120
"""Seconds a working-dir package is pinned when a detached actor that uses it starts."""


def _ray_initialized() -> bool:
    ray = sys.modules.get("ray")
    return bool(ray is not None and ray.is_initialized())


def _has_local_py_modules(runtime_env: Mapping[str, Any]) -> bool:
    return any(not (isinstance(m, str) and "://" in m) for m in runtime_env.get("py_modules", []) or [])
