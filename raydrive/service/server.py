"""Run the pipeline service: blocking for the CLI (:func:`serve`), or in a background thread of
this process for tests and demos (:class:`ServiceServer`, :func:`start_service`)."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

import uvicorn
from fastapi import FastAPI

from raydrive.service.app import create_app, resolve_token
from raydrive.service.auth import extra_allowed_hosts
from raydrive.service.config import ServiceConfigError, check_retain_days, check_token
from raydrive.service.connections import GuardedH11Protocol, raise_open_files_limit
from raydrive.service.db import default_database, describe_database
from raydrive.service.store import PipelineStore

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "ServiceServer", "serve", "start_service"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8100
_log = logging.getLogger("uvicorn.error")


class _Server(uvicorn.Server):
    """uvicorn, ending the app's progress streams first when it shuts down.

    uvicorn waits for open responses before it stops; a progress stream only ends with its run,
    so without this a shutdown would wait out the graceful timeout. Ended streams are resumed by
    clients with ``Last-Event-ID`` once the service is back.
    """

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self._app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._app.state.broker.close()
        await super().shutdown(sockets=sockets)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # Name the protocol: asyncio only sets TCP_NODELAY on accepted sockets whose proto is
    # IPPROTO_TCP, and without it every response waits ~40 ms on Nagle plus delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    # A restarted service must get its port back while old connections sit in TIME_WAIT.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _config(
    app: FastAPI, host: str, port: int, log_level: str, access_log: bool, *, configure_logging: bool
) -> uvicorn.Config:
    # In-process, log_config=None leaves the host program's logging configuration alone
    # (uvicorn's default would replace every handler of the process).
    extra = {} if configure_logging else {"log_config": None}
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=access_log,
        lifespan="on",
        timeout_graceful_shutdown=5,
        # A header-read timeout and a connection bound (raydrive.service.connections).
        http=GuardedH11Protocol,
        **extra,
    )


def serve(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    db: str | os.PathLike[str] | None = None,
    token: str | None = None,
    *,
    log_level: str = "info",
    access_log: bool = False,
    workers: int = 1,
    retain_days: float | None = None,
    max_streams: int | None = None,
    ready: Callable[[], None] | None = None,
) -> None:
    """Run the pipeline service in the foreground until interrupted (``raydrive service``).

    Everything that can be wrong is checked before the service starts listening (the token's
    length, the retention, the port, the database: opened, migrated or refused), and ``ready``
    is called only then, so nothing is announced for a service that never started.

    Returns after Ctrl+C once the service has shut down gracefully (as ``uvicorn.run`` does);
    SIGTERM ends the process after the same graceful shutdown.

    :param host: interface to bind; loopback by default. Binding another interface without a
        token lets anyone who reaches the port read and change runs.
    :param port: TCP port.
    :param db: the database: a SQLite file path (its directory is created), ``sqlite:///path``
        or ``postgresql://user@host/db``; defaults to ``$RAYDRIVE_SERVICE_DB`` or
        ``~/.raydrive/pipelines.db``.
    :param token: bearer token clients must send; defaults to ``$RAYDRIVE_SERVICE_TOKEN``.
    :param log_level: uvicorn's log level.
    :param access_log: log every request (off by default: progress reports are frequent).
    :param workers: service processes sharing the port and the database.
    :param retain_days: prune runs that finished more than this many days ago (None keeps all).
    :param max_streams: open progress streams of the whole service (default 10,000 per
        process); with ``workers`` processes each admits ``max_streams // workers``.
    :param ready: called once the service is about to serve (the CLI prints the page's URL).
    :raises ServiceConfigError: a wrong option; nothing was started.
    """
    db_path = os.fspath(db) if db is not None else default_database()
    check_token(resolve_token(token))
    raise_open_files_limit()  # the connection bound decides, not EMFILE (as Go's runtime does)
    if not 0 < port < 65536:
        raise ServiceConfigError(f"--port must be 1 to 65535, got {port}")
    options: dict[str, object] = {
        "allowed_hosts": extra_allowed_hosts(host),
        "retain_days": check_retain_days(retain_days),
    }
    if max_streams is not None:
        # The cap is the service's total: each of the processes admits its share, so together
        # they never hold more (a process counts its own at admission, atomically).
        options["max_streams"] = max(1, max_streams // workers)
    server = None
    sock = None
    if workers == 1:
        try:
            sock = _bind(host, port)
        except OSError as exc:
            raise ServiceConfigError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --port or --host"
            ) from None
        try:
            app = create_app(db_path=db_path, token=token, **options)  # type: ignore[arg-type]
        except BaseException:
            sock.close()
            raise
        # (Building the uvicorn config also sets up logging for the lines below.)
        server = _Server(_config(app, host, port, log_level, access_log, configure_logging=True), app)
    else:
        import logging.config

        logging.config.dictConfig(uvicorn.config.LOGGING_CONFIG)
    has_token = resolve_token(token) is not None
    _log.info(
        "raydrive pipeline service: database %s, %d process(es), %s",
        describe_database(db_path),
        workers,
        "bearer token required" if has_token else "no auth",
    )
    if not has_token and not _is_loopback(host):
        _log.warning(
            "serving on %s without a token: anyone who can reach this port can read "
            "and change runs; set RAYDRIVE_SERVICE_TOKEN",
            host,
        )
    if server is None:
        from raydrive.service.workers import serve_workers

        serve_workers(
            host,
            port,
            workers=workers,
            db=db_path,
            token=token,
            app_options=options,
            log_level=log_level,
            access_log=access_log,
            ready=ready,
        )
        return
    # (uvicorn names no address for a socket it is given: say where the service listens.)
    where = f"[{host}]" if ":" in host else host
    _log.info("raydrive pipeline service running on http://%s:%d (Ctrl+C to stop)", where, port)
    if ready is not None:
        ready()
    # uvicorn shuts down gracefully on Ctrl+C, then re-raises it; stopping is what was asked.
    with contextlib.suppress(KeyboardInterrupt):
        server.run(sockets=[sock])


class ServiceServer:
    """The pipeline service running in a background thread of this process.

    ``port=0`` picks a free port; :attr:`url` reports the real one once started. Use it as a
    context manager, or call :meth:`start` and :meth:`stop`::

        with ServiceServer(db=tmp_path / "runs.db") as service:
            client = PipelineServiceClient(service.url)

    :param db: SQLite database file for the default store (ignored when ``store`` is given).
    :param store: a store to serve instead; it stays the caller's to close.
    :param token: bearer token clients must send; defaults to ``$RAYDRIVE_SERVICE_TOKEN``.
    :param ping_interval: seconds of quiet after which a progress stream sends ``: ping``.
    :param app_options: more keyword arguments of :func:`~raydrive.service.app.create_app`
        (e.g. ``max_body_bytes``, ``max_json_depth``, ``max_log_entries``).
    """

    def __init__(
        self,
        host: str = DEFAULT_HOST,
        port: int = 0,
        *,
        db: str | os.PathLike[str] | None = None,
        store: PipelineStore | None = None,
        token: str | None = None,
        ping_interval: float = 15.0,
        log_level: str = "warning",
        access_log: bool = False,
        app_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.host = host
        self._app_options = dict(app_options or {})
        self.port = port
        self._db = db
        self._store = store
        self._token = token
        self._ping_interval = ping_interval
        self._log_level = log_level
        self._access_log = access_log
        self.app: FastAPI | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"ServiceServer({self.url!r}, {state})"

    @property
    def url(self) -> str:
        """Base URL of the service, e.g. ``http://127.0.0.1:54321``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def running(self) -> bool:
        """True between a successful :meth:`start` and :meth:`stop`."""
        return self._thread is not None and self._thread.is_alive()

    def start(self, timeout: float = 10.0) -> ServiceServer:
        """Start serving in a daemon thread and wait until the service accepts connections."""
        if self._thread is not None:
            raise RuntimeError("this ServiceServer was started already; create a new one")
        sock = _bind(self.host, self.port)
        self.port = sock.getsockname()[1]
        self.app = create_app(
            self._store,
            db_path=self._db,
            token=self._token,
            ping_interval=self._ping_interval,
            allowed_hosts=extra_allowed_hosts(self.host),
            **self._app_options,
        )
        config = _config(
            self.app, self.host, self.port, self._log_level, self._access_log, configure_logging=False
        )
        self._server = _Server(config, self.app)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [sock]},
            name=f"raydrive-service-{self.port}",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self._server.should_exit = True
                sock.close()
                raise RuntimeError(f"the pipeline service did not start on {self.url}")
            time.sleep(0.005)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving: open progress streams end, and the default store is closed."""
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(timeout)

    def __enter__(self) -> ServiceServer:
        return self if self._thread is not None else self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def start_service(
    host: str = DEFAULT_HOST,
    port: int = 0,
    *,
    db: str | os.PathLike[str] | None = None,
    store: PipelineStore | None = None,
    token: str | None = None,
    ping_interval: float = 15.0,
    log_level: str = "warning",
) -> ServiceServer:
    """Start the pipeline service in a background thread and return the running
    :class:`ServiceServer` (call ``.stop()``, or use it in a ``with`` block)."""
    return ServiceServer(
        host, port, db=db, store=store, token=token, ping_interval=ping_interval, log_level=log_level
    ).start()
