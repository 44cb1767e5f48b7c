"""ray-pipeline's run watcher: a detached actor on the cluster that marks a run failed on the
service when its pipeline actor dies, whoever is (or is not) asking about the run.

A pipeline actor that dies (killed, its node lost, out of restarts) cannot report its own end, and
the submitter may be long gone; the page, ``raydrive pipeline list`` and ``watch`` read only the
service. So each submission registers its run here (:meth:`PipelineWatcher.watch`), and every
:data:`WATCH_S` seconds the watcher lists the cluster's live named actors (one GCS call for all
runs). A run whose actor is missing from two lists in a row is looked up on the service: ended,
it is forgotten; else it is marked ``failed`` with the cause. So a dead actor's run reads failed
within about ``2 * WATCH_S`` seconds plus the service's answer, as Kubernetes' node controller
marks a pod's node lost after missed heartbeats rather than when someone asks.

The watched runs (run id, service URL and token, as the pipeline actor's own spec holds them) are
kept in the GCS internal KV, so the watcher, restarted by Ray after its own death, picks them up
again. One watcher per cluster, named :data:`WATCHER_NAME` in namespace ``raydrive``; it holds no
CPU and lives on the head node.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from typing import Any

__all__ = ["WATCHER_NAME", "WATCH_S", "PipelineWatcher", "dead_actor_error", "remote_watcher"]

_log = logging.getLogger("raydrive.pipeline")

WATCHER_PROTOCOL = 1
WATCHER_NAME = f"raydrive-pipeline-watcher-v{WATCHER_PROTOCOL}"
"""The watcher's actor name (namespace ``raydrive``)."""

KV_NAMESPACE = f"raydrive-pipeline-watcher-v{WATCHER_PROTOCOL}"

WATCH_S = 2.0
"""Seconds between two looks at the cluster's live actors."""

MISSES = 2
"""Looks in a row a run's actor must be missing from before the run is checked on the service
(a single look may race an actor just created, or one Ray is restarting)."""

MAX_BACKOFF_S = 300.0
"""The longest wait between two tries to mark a run whose service does not answer. The run stays
watched (a service back from maintenance still learns the run failed), but it is tried less and
less often, and said less and less often in the log: at the 1st, 2nd, 4th, 8th... failed try."""


def dead_actor_error(status: str, attempt: int) -> str:
    """The error a run gets when its actor is gone before the run ended (``status``: the run's
    status on the service, ``running`` or ``pending``)."""
    if status == "running":
        return "the pipeline actor died before the run ended" + (
            f" (attempt {attempt}, no restart left)" if attempt > 1 else ""
        )
    return (
        "the pipeline actor is gone and the run never started (its runtime env may have failed to "
        "set up: see the Ray dashboard's actor page for the cause)"
    )


class PipelineWatcher:
    """Watches the runs registered with it (see the module doc); runs its loop on a thread."""

    def __init__(self) -> None:
        from raydrive.drivers.ray.compat import kv_get, kv_list

        self._lock = threading.Lock()
        self._runs: dict[str, dict[str, Any]] = {}
        for key in kv_list(b"", KV_NAMESPACE):
            data = kv_get(key, KV_NAMESPACE)
            with contextlib.suppress(ValueError, TypeError):
                self._runs[key.decode()] = {**json.loads(data or b"{}"), "misses": 0}
        self._thread = threading.Thread(target=self._loop, name="raydrive-watcher", daemon=True)
        self._thread.start()

    def watch(self, run_id: str, actor: str, service_url: str, token: str | None) -> None:
        """Watch ``run_id``, whose pipeline actor is named ``actor``, reported to ``service_url``."""
        from raydrive.drivers.ray.compat import kv_put

        record = {"actor": actor, "url": service_url, "token": token}
        kv_put(run_id.encode(), json.dumps(record).encode(), KV_NAMESPACE)
        with self._lock:
            self._runs[run_id] = {**record, "misses": 0}

    def watched(self) -> list[str]:
        """The runs watched now (for monitoring and tests)."""
        with self._lock:
            return sorted(self._runs)

    def _loop(self) -> None:
        while True:
            time.sleep(WATCH_S)
            try:
                self._look()
            except Exception as exc:  # a failed look (GCS busy, service down): the next one tries again
                _log.warning("raydrive pipeline watcher: %s: %s", type(exc).__name__, exc)

    def _look(self) -> None:
        import ray

        with self._lock:
            if not self._runs:
                return
        from raydrive.drivers.ray.wire import NAMESPACE

        named = ray.util.list_named_actors(all_namespaces=True)
        live = {a["name"] for a in named if a.get("namespace") == NAMESPACE}
        now = time.monotonic()
        with self._lock:
            missing = []
            for run_id, record in self._runs.items():
                if record["actor"] in live:
                    record["misses"] = 0
                    continue
                record["misses"] += 1
                if record["misses"] >= MISSES and record.get("retry_at", 0.0) <= now:
                    missing.append((run_id, dict(record)))
        for run_id, record in missing:
            # Each run on its own: one whose service is down (or gone for good) must not hold up
            # the runs after it; it is tried again later, backing off (MAX_BACKOFF_S).
            try:
                settled = self._settle(run_id, record)
            except Exception as exc:
                self._failed(run_id, now, exc)
                continue
            if settled:
                self._forget(run_id)

    def _failed(self, run_id: str, now: float, exc: Exception) -> None:
        with self._lock:
            record = self._runs.get(run_id)
            if record is None:
                return
            failures = record["failures"] = record.get("failures", 0) + 1
            record["retry_at"] = now + min(MAX_BACKOFF_S, WATCH_S * 2 ** (failures - 1))
        if failures & (failures - 1) == 0:  # 1, 2, 4, 8...: a service gone for good is not a flood
            _log.warning(
                "raydrive pipeline watcher: run %s (failed try %d): %s: %s",
                run_id,
                failures,
                type(exc).__name__,
                exc,
            )

    def _settle(self, run_id: str, record: dict[str, Any]) -> bool:
        """Mark the run failed unless it ended; True once the service knows it ended."""
        from raydrive.core.errors import JobNotFoundError, RaydriveError
        from raydrive.service.client import PipelineServiceClient

        with PipelineServiceClient(record["url"], token=record.get("token"), retries=1) as client:
            try:
                progress = client.get_progress(run_id)
            except JobNotFoundError:
                return True  # deleted from the service: nothing to mark
            if progress.status.is_terminal():
                return True
            error = dead_actor_error(progress.status.value, progress.attempt)
            try:
                client.update_run(run_id, status="failed", error=error)
            except RaydriveError:
                # It may have ended this very moment (409), or the service is down: look again.
                return client.get_progress(run_id).status.is_terminal()
            _log.warning("raydrive pipeline watcher: run %s marked failed: %s", run_id, error)
            return True

    def _forget(self, run_id: str) -> None:
        from raydrive.drivers.ray.compat import kv_del

        with self._lock:
            self._runs.pop(run_id, None)
        kv_del(run_id.encode(), KV_NAMESPACE)


def remote_watcher() -> Any:
    """``ray.remote(PipelineWatcher)``: holds no CPU, restarted by Ray when it dies."""
    from raydrive.drivers.ray.worker import ray_remote

    return ray_remote(PipelineWatcher, num_cpus=0, max_restarts=-1, max_task_retries=-1)
