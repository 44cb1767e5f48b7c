"""Connecting to a Ray cluster: one process-global connection, bounded in time, raydrive's errors.

The ``ray_address`` forms every Ray driver accepts:

``'auto'``
    Ray's meaning: ``RAY_ADDRESS`` when set, else this machine's current cluster (the one that
    ``ray start`` or ``raydrive cluster up`` recorded). When Ray is already initialized in this
    process, that connection is used. With no cluster to join it fails and says how to get one;
    it never starts a cluster silently. Unlike ``ray.init('auto')``, it does not fall back to
    any Ray process found running on the machine (on a shared machine, someone else's cluster):
    the error lists those instead.
``'host:port'``
    A cluster's GCS address. This process becomes a Ray driver, so it must run on a node of that
    cluster (for a remote cluster use ``ray://``).
``'ray://host:port'``
    Remote mode: the Ray client, talking to the cluster's client server (port 10001 by default).
``'local'``
    An embedded single-node cluster on 127.0.0.1 (:class:`LocalCluster`), started on first use,
    one per process and reused, stopped at interpreter exit. Its start is logged. Only in this
    case is ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` set in this process (see DESIGN.md).

Connecting never hangs: the address is first probed (a TCP connect, then a gRPC handshake), so
an unreachable cluster raises ClusterUnreachableError naming the address within ``timeout``
seconds; ``ray.init`` itself then runs in a helper thread under the same bound (it can block for
minutes, e.g. given the GCS address of a cluster this machine is not a node of). A ``ray.init``
that timed out cannot be stopped; it is never joined by a second one: a later ``connect`` waits
(within its own timeout) for it to end, and if it ends connected, it is disconnected at once, since
its caller was told that connecting failed.

Ray client (``ray://``): the cluster's client proxy starts a server process per client, and that
start sometimes fails ("Starting Ray client server failed"), which the proxy reports only after
about as long as ``connect_timeout``. That failure is retried on a budget of its own: up to
:data:`CLIENT_RETRIES` more tries, within another ``connect_timeout`` after the failure.

Ray's connection is process-global. Asking for the address Ray is already connected to reuses it;
asking for another one raises SubmissionError (call ``ray.shutdown()`` first, or use a separate
process). Ray is imported on first connect, never at import of this module.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any

from raydrive.core.errors import ClusterUnreachableError, SubmissionError
from raydrive.drivers.ray import compat
from raydrive.drivers.ray.cluster import LocalCluster, loopback_client_env

__all__ = [
    "RayConnection",
    "connect",
    "current_connection",
    "disconnect",
    "ensure_reachable",
    "local_cluster",
    "normalize_address",
    "resolve_auto_address",
]

_log = logging.getLogger("raydrive.ray")
_CLIENT_SERVER_FAILED = "Starting Ray client server failed"
CLIENT_RETRIES = 2
"""More tries after the Ray client server failed to start (each within the retry budget)."""
_lock = threading.RLock()
_connection: RayConnection | None = None
_local: LocalCluster | None = None

_HOW_TO_GET_ONE = (
    "Start one with `raydrive cluster up` (then 'auto' finds it), pass ray_address='local' for an "
    "embedded cluster in this process, or give the address of a running cluster "
    "('host:port', or 'ray://host:10001' for a remote one)."
)


@dataclass(frozen=True)
class RayConnection:
    """The connection raydrive is using: what was asked for and what it resolved to.

    :ivar requested: the ``ray_address`` as given (``'auto'``, ``'local'``, ``'host:port'``...).
    :ivar address: the address connected to: ``host:port`` (GCS) or ``ray://host:port``.
    :ivar client_mode: True for ``ray://`` (Ray client, remote mode).
    """

    requested: str
    address: str
    client_mode: bool


def _split(address: str) -> tuple[str, str, int]:
    scheme, sep, rest = address.partition("://")
    if not sep:
        scheme, rest = "", address
    rest = rest.rstrip("/")
    host, colon, port = rest.rpartition(":")
    if not colon or not host or not port.isdigit():
        raise SubmissionError(
            f"ray_address {address!r} is not 'auto', 'local', 'host:port' or 'ray://host:port'",
            address=address,
        )
    return scheme, host.strip("[]"), int(port)


def normalize_address(address: str) -> str:
    """``host:port`` or ``scheme://host:port`` with the host resolved to an IP, for comparisons."""
    scheme, host, port = _split(address)
    with contextlib.suppress(OSError):  # else compared as given; the probe will say it is unreachable
        host = socket.gethostbyname(host)
    return f"{scheme}://{host}:{port}" if scheme else f"{host}:{port}"


def _default_port(scheme: str) -> int:
    return {"http": 80, "https": 443}.get(scheme, 0)


def ensure_reachable(
    address: str, timeout: float, *, what: str = "Ray cluster", grpc_probe: bool = True
) -> None:
    """Raise ClusterUnreachableError unless ``address`` accepts a connection within ``timeout`` s.

    Accepts ``host:port``, ``ray://host:port`` and ``http(s)://host[:port]`` (a dashboard). With
    ``grpc_probe`` (GCS and Ray client addresses) a gRPC handshake must also complete, so a port
    that accepts TCP but is not Ray fails too instead of making ``ray.init`` hang.
    """
    deadline = time.monotonic() + timeout
    scheme, sep, rest = address.partition("://")
    if sep and scheme in ("http", "https"):
        hostport = rest.split("/", 1)[0]
        host, colon, port = hostport.rpartition(":")
        host, port_no = (host, int(port)) if colon and port.isdigit() else (hostport, _default_port(scheme))
        grpc_probe = False
    else:
        _, host, port_no = _split(address)
    try:
        with socket.create_connection((host.strip("[]"), port_no), timeout=max(timeout, 0.1)):
            pass
    except OSError as exc:
        raise ClusterUnreachableError(
            f"cannot reach the {what} at {address!r}: {exc.strerror or exc}. "
            f"Is it running, and is the address right? {_HOW_TO_GET_ONE}",
            address=address,
        ) from None
    if not grpc_probe:
        return
    import grpc

    target = f"{host}:{port_no}"
    try:
        channel = compat.init_grpc_channel(target)  # honours RAY_USE_TLS and token auth
    except Exception:
        channel = grpc.insecure_channel(target)
    try:
        grpc.channel_ready_future(channel).result(timeout=max(deadline - time.monotonic(), 0.1))
    except grpc.FutureTimeoutError:
        raise ClusterUnreachableError(
            f"the {what} at {address!r} accepts connections but did not answer as Ray within "
            f"{timeout:g} s (connect_timeout); is this the right port?",
            address=address,
        ) from None
    finally:
        channel.close()


def resolve_auto_address(environ: dict[str, str] | None = None) -> str:
    """What ``'auto'`` means here: ``RAY_ADDRESS``, else this machine's current cluster.

    :raises ClusterUnreachableError: there is neither; the message says how to get a cluster.
    """
    env = os.environ if environ is None else environ
    from_env = (env.get("RAY_ADDRESS") or "").strip()
    if from_env and from_env != "auto":
        return from_env
    path = compat.get_ray_address_file(None)
    try:
        with open(path) as fh:
            recorded = fh.read().strip()
    except OSError:
        recorded = ""
    if recorded:
        return recorded
    others = ""
    try:
        found = sorted(compat.find_gcs_addresses())
        if found:
            others = f" Ray clusters found running here (not joined, pass one explicitly): {found}."
    except Exception:  # detection is only a hint
        pass
    raise ClusterUnreachableError(
        "ray_address='auto' found no Ray cluster to join: RAY_ADDRESS is not set and this machine "
        f"has no current cluster ({path} does not exist).{others} {_HOW_TO_GET_ONE}",
        address="auto",
    )


def current_connection() -> RayConnection | None:
    """The connection in use, or None when Ray is not initialized in this process."""
    import ray

    if not ray.is_initialized():
        return None
    address, client = _initialized_address(ray)
    if _connection is not None and _connection.address == address:
        return _connection
    return RayConnection(requested=address, address=address, client_mode=client)


def _initialized_address(ray: Any) -> tuple[str, bool]:
    """The address Ray is connected to, however it was initialized (by us or the user)."""
    from ray.util.client import ray as client_ray

    if client_ray.is_connected():
        try:
            conn = client_ray.get_context().client_worker._conn_str
        except Exception:
            conn = "?:0"
        return f"ray://{conn}", True
    return ray.get_runtime_context().gcs_address, False


def _loopback_client() -> None:
    # Ray reads this variable once, when ray_constants is imported: set it in the environment
    # (for later imports and child processes) and, when Ray is already loaded, in the constant.
    loopback_client_env()
    constants = compat.loaded_ray_constants()
    if constants is not None:
        constants.ENABLE_RAY_CLUSTER = False


def local_cluster(timeout: float = 90.0) -> LocalCluster:
    """The embedded loopback cluster of this process (``ray_address='local'``), started if needed.

    One per process; stopped at interpreter exit (and on SIGTERM when raydrive installed the
    handler). Sets ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` in this process, as a loopback client
    must, only in this case (see DESIGN.md).
    """
    global _local
    with _lock:
        if _local is not None and _local.running:
            return _local
        _loopback_client()
        log = os.path.join(tempfile.gettempdir(), f"raydrive-local-{os.getpid()}.log")
        cluster = LocalCluster(log_file=log)
        cluster.start(timeout=max(timeout, 60.0))
        _local = cluster
        atexit.register(_stop_local)
        _install_sigterm_exit()
        _log.warning(
            "ray_address='local': started an embedded Ray cluster on %s (dashboard %s, log %s); "
            "it stops when this process exits",
            cluster.address,
            cluster.dashboard_url,
            log,
        )
        return cluster


def _install_sigterm_exit() -> None:
    # The cluster runs in its own process group: without this, SIGTERM would skip atexit and
    # leave it running. Only where nobody else handles SIGTERM.
    if threading.current_thread() is threading.main_thread():
        try:
            if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
                signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
        except (ValueError, OSError):
            pass


def _stop_local() -> None:
    global _local, _connection
    cluster, _local = _local, None
    if cluster is None:
        return
    try:
        import ray

        if _connection is not None and _connection.requested == "local" and ray.is_initialized():
            ray.shutdown()
            _connection = None
    finally:
        cluster.stop()
        if cluster.log_file:  # kept only while it may explain a failure
            with contextlib.suppress(OSError):
                os.remove(cluster.log_file)


def connect(address: str = "auto", *, timeout: float = 30.0) -> RayConnection:
    """Connect this process to Ray at ``address`` (see the module docstring), or reuse the connection.

    :param address: ``'auto'``, ``'local'``, ``'host:port'`` or ``'ray://host:port'``.
    :param timeout: seconds for reaching the cluster and for ``ray.init``.
    :raises ClusterUnreachableError: nothing answered at the address within ``timeout``.
    :raises SubmissionError: Ray is already connected to another cluster in this process.
    """
    global _connection
    address = (address or "auto").strip()
    with _lock:
        if address == "local" and "ray" not in sys.modules:
            loopback_client_env()  # before Ray's first import, which reads it
        import ray

        if address == "local":
            if ray.is_initialized() and _connection is not None and _connection.requested == "local":
                return _connection
            if ray.is_initialized():
                current, _ = _initialized_address(ray)
                raise _conflict("local", current)
            cluster = local_cluster(timeout)
            conn = RayConnection("local", cluster.address, client_mode=False)
            _init(ray, conn, timeout)
            return conn

        if ray.is_initialized():
            current, client = _initialized_address(ray)
            if address == "auto":
                if _connection is None or _connection.address != current:
                    _connection = RayConnection("auto", current, client)
                return _connection
            if normalize_address(address) == normalize_address(current):
                if _connection is None or _connection.address != current:
                    _connection = RayConnection(address, current, client)
                return _connection
            ensure_reachable(address, timeout)  # an unreachable address is the better error
            raise _conflict(address, current)

        target = resolve_auto_address() if address == "auto" else address
        client_mode = target.startswith("ray://")
        if "://" in target and not client_mode:
            raise SubmissionError(
                f"ray_address {target!r}: only 'ray://' addresses use a protocol (for a dashboard "
                "URL use the ray-jobs-api driver)",
                address=target,
            )
        deadline = time.monotonic() + timeout
        ensure_reachable(target, timeout)
        conn = RayConnection(address, target, client_mode)
        retries = 0
        while True:
            try:
                _init(ray, conn, max(1.0, deadline - time.monotonic()))
                return conn
            except ClusterUnreachableError as exc:
                # The Ray client proxy starts a server process per client; on a loaded head that
                # start can fail and succeed on the next try. The proxy says so only after about
                # `timeout`, so the retry gets a budget of its own, counted from the failure.
                transient = client_mode and _CLIENT_SERVER_FAILED in str(exc.__cause__)
                if not transient or retries >= CLIENT_RETRIES:
                    raise
                retries += 1
                _log.warning(
                    "the Ray client server at %s failed to start; trying again (%d/%d)",
                    target,
                    retries,
                    CLIENT_RETRIES,
                )
                with contextlib.suppress(Exception):
                    ray.shutdown()
                deadline = time.monotonic() + timeout


def _conflict(requested: str, current: str) -> SubmissionError:
    return SubmissionError(
        f"Ray is already connected to {current!r} in this process, so ray_address={requested!r} "
        "cannot be used here: Ray allows one cluster per process. Use the same address, call "
        "ray.shutdown() first, or run the other cluster's work in another process.",
        address=requested,
        connected_to=current,
    )


class _DropSigtermWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "SIGTERM handler is not set" not in record.getMessage()


class _InitAttempt:
    """One ``ray.init`` in its helper thread; ``abandoned`` once its caller stopped waiting."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.abandoned = False
        self.lock = threading.Lock()


_attempt: _InitAttempt | None = None


def _init(ray: Any, conn: RayConnection, timeout: float) -> None:
    """``ray.init`` bounded by ``timeout``: it runs in a helper thread, since it can block for
    minutes (e.g. a GCS address of a cluster this machine is not a node of). Never two at once."""
    global _connection, _attempt
    started = time.monotonic()
    previous = _attempt
    if previous is not None and not previous.done.wait(timeout):
        raise ClusterUnreachableError(
            f"an earlier attempt to connect to Ray (which timed out) is still running, so no second "
            f"one was started for {conn.address!r} within {timeout:g} s (connect_timeout); try "
            "again later",
            address=conn.address,
        )
    attempt = _attempt = _InitAttempt()

    def run() -> None:
        try:
            # The job's namespace stays Ray's default; raydrive names its actors in its own.
            ray.init(address=conn.address, log_to_driver=True)
        except BaseException as exc:
            attempt.error = exc
        with attempt.lock:
            if attempt.abandoned and attempt.error is None:
                # Its caller was told that connecting failed: do not stay connected behind its back.
                with contextlib.suppress(Exception):
                    ray.shutdown()
            attempt.done.set()

    worker_log = logging.getLogger(compat.WORKER_LOGGER_NAME)
    quiet = _DropSigtermWarning()
    worker_log.addFilter(quiet)
    try:
        thread = threading.Thread(target=run, name="raydrive-ray-init", daemon=True)
        thread.start()
        finished = attempt.done.wait(max(0.1, timeout - (time.monotonic() - started)))
    finally:
        worker_log.removeFilter(quiet)
    if not finished:
        with attempt.lock:
            finished = attempt.done.is_set()
            attempt.abandoned = not finished
    if not finished:
        hint = (
            ""
            if conn.client_mode
            else " (for a cluster this machine is not a node of, use 'ray://host:10001')"
        )
        raise ClusterUnreachableError(
            f"connecting to the Ray cluster at {conn.address!r} did not finish within {timeout:g} s "
            f"(connect_timeout){hint}",
            address=conn.address,
        )
    _attempt = None
    outcome = {"error": attempt.error}
    error = outcome.get("error")
    if error is not None:
        if isinstance(error, KeyboardInterrupt | SystemExit):
            raise error
        raise ClusterUnreachableError(
            f"could not connect to the Ray cluster at {conn.address!r}: {type(error).__name__}: {error}",
            address=conn.address,
        ) from error
    _connection = conn
    _log.info("connected to Ray at %s%s", conn.address, " (Ray client)" if conn.client_mode else "")


def disconnect() -> None:
    """``ray.shutdown()`` and forget the connection (the embedded 'local' cluster keeps running)."""
    global _connection
    with _lock:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        _connection = None
