"""The pipeline actor of ``ray-pipeline``: one detached actor per run, exits when the run ends.

What it runs is :func:`~raydrive.drivers.ray_pipeline.runner.run_pipeline`; what it receives is
a :class:`~raydrive.drivers.ray_pipeline.wire.PipelineSpec` and the secrets (by argument, never in the runtime
env, which Ray's state API and the dashboard show). Ray is imported only inside the actor.

Retries in place use Ray's own actor restarts (``max_restarts``: the actor dies with its node, to
the OOM killer or an ``os._exit``, and the GCS builds it again, possibly on another node, with the
same constructor arguments). A restarted actor therefore starts here again: it reads the run
from the service (:func:`continue_run`), does nothing if the run ended meanwhile (cancelled, or
marked failed), else records the attempt that died, waits the restart backoff, and continues
after the run's latest checkpoint with the params of that checkpoint, the secret ones (which the
service keeps masked) taken from the constructor's own spec.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
import time
import warnings
from typing import Any

from raydrive.drivers.ray_pipeline.wire import PipelineSpec

__all__ = ["PipelineActor", "continue_run"]

_log = logging.getLogger("raydrive.pipeline")

ACTOR_DIED = "the pipeline actor died (its node was lost, it was killed, or its process exited)"


class PipelineActor:
    """Runs one pipeline run; created detached, it exits when the run ends.

    The run starts in the constructor (in a thread), not in a method call: Ray keeps a detached
    actor's creation whatever its creator does next, while a method call still queued in a
    submitter that exits is lost (the run would stay ``pending`` for ever). For the same reason a
    restart by Ray continues the run: the constructor is what Ray runs again.
    """

    def __init__(self, secrets: dict[str, str], spec: PipelineSpec) -> None:
        os.environ.update(secrets)  # credentials arrive as an argument, never in the runtime env
        self._thread = threading.Thread(
            target=self._main, args=(spec, _attempt()), name="raydrive-pipeline", daemon=True
        )
        self._thread.start()

    def alive(self) -> bool:
        return self._thread.is_alive()

    @staticmethod
    def _main(spec: PipelineSpec, attempt: int) -> None:
        from raydrive.drivers.ray_pipeline.cancel import CancelWatcher
        from raydrive.drivers.ray_pipeline.runner import run_pipeline
        from raydrive.service.client import PipelineServiceClient

        client = PipelineServiceClient(spec.service_url, token=spec.token, retries=0)
        try:
            todo = spec if attempt == 1 else continue_run(spec, client, attempt)
            if todo is not None:
                watcher = CancelWatcher(
                    client, spec.run_id, interval=spec.cancel_poll_interval, grace=spec.interrupt_grace,
                    on_stuck=_exit_process,
                )  # fmt: skip
                run_pipeline(todo, client, watcher=watcher, attempt=attempt)
        except BaseException as exc:  # the runner reports failures itself; this is a last resort
            _log.exception("pipeline run %s ended abnormally", spec.run_id)
            # Ray does not restart an actor that ends itself: mark the run failed, or it would stay
            # running for ever (the service refuses the change if the run already ended).
            with contextlib.suppress(Exception):
                client.update_run(
                    spec.run_id, status="failed", error=f"the pipeline actor failed: {type(exc).__name__}"
                )
        finally:
            client.close()
            _exit_actor()


def _attempt() -> int:
    """This actor's attempt: 1, or 1 + the restarts Ray made of it (from the GCS's actor table)."""
    import ray

    context = ray.get_runtime_context()
    with warnings.catch_warnings():
        # Ray's own property reads its deprecated ``actor_id`` (Ray 2.60): the warning would
        # land on the user's console from every pipeline actor, about code that is not theirs.
        warnings.simplefilter("ignore", DeprecationWarning)
        reconstructed = context.was_current_actor_reconstructed
    if not reconstructed:
        return 1
    try:
        from raydrive.drivers.ray import compat

        return int(compat.actor_info(context.get_actor_id()).get("NumRestarts", 0)) + 1
    except Exception:  # the table could not be read: at least "a restart"
        return 2


def _retrying(call: Any, *args: Any, **kwargs: Any) -> Any:
    # The restarted actor must learn where the run stands before anything else: keep asking
    # while the service is away (it may be restarting too), as the reporter does.
    from raydrive.core.errors import ServiceUnavailableError

    delay = 0.2
    for _ in range(600):
        try:
            return call(*args, **kwargs)
        except ServiceUnavailableError:
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
    return call(*args, **kwargs)


def continue_run(spec: PipelineSpec, client: Any, attempt: int) -> PipelineSpec | None:
    """The spec a restarted actor (attempt ``attempt``) runs: from after the run's latest
    checkpoint, with that checkpoint's params; None when there is nothing left to do (the run
    ended, or every action had completed: the run is then completed here).
    """
    from raydrive.core.pipeline import ActionProgress, ActionStatus, RunStatus
    from raydrive.core.redaction import MASK
    from raydrive.core.retry import Attempt, RetryBackoff
    from raydrive.core.status import JobState
    from raydrive.drivers.ray_pipeline.payload import restore_secrets

    run = _retrying(client.get_run, spec.run_id)
    if run.status.is_terminal():
        _log.warning("run %s is %s already: the restarted actor ends", spec.run_id, run.status.value)
        return None
    known = {a.number: a for a in run.attempts}
    for number in range(1, attempt):  # the attempts that died without a word
        old = known.get(number)
        if old is None or old.state == JobState.RUNNING.value:
            died = Attempt(
                number=number, state=JobState.FAILED.value, started_at=old.started_at if old else None,
                ended_at=time.time(), error_type="ActorDiedError", error=ACTOR_DIED,
            )  # fmt: skip
            _retrying(client.report_progress, spec.run_id, attempt=died.model_dump(mode="json"))
    delay = RetryBackoff.model_validate(spec.restart_backoff or {}).delay(attempt - 1)
    _log.warning("run %s: pipeline actor attempt %d, continuing in %.2f s", spec.run_id, attempt, delay)
    time.sleep(delay)
    checkpoint = _retrying(client.get_latest_checkpoint, spec.run_id)
    start, params = spec.start_index, spec.params
    if checkpoint is not None and checkpoint.action_index + 1 > start:
        start = checkpoint.action_index + 1
        params, missing = restore_secrets(dict(checkpoint.params_snapshot), spec.params)
        if missing:
            error = (
                f"the pipeline actor was restarted (attempt {attempt}) but cannot continue: the "
                f"params {', '.join(missing)} after action {checkpoint.action_name!r} are secret "
                f"and the service keeps them only as {MASK}"
            )
            _retrying(client.update_run, spec.run_id, status=RunStatus.FAILED.value, error=error)
            return None
    for index, name in enumerate(spec.names[:start]):
        entry = next((e for e in run.progress if e.name == name), None)
        if entry is not None and entry.status is ActionStatus.PENDING:  # lost with the old actor
            done = ActionStatus.COMPLETED if index >= spec.start_index else ActionStatus.SKIPPED
            report = ActionProgress(name=name, status=done, progress=1.0)
            _retrying(client.report_progress, spec.run_id, action_progress=report.model_dump(mode="json"))
    if start >= len(spec.entrypoints):  # it died after its last checkpoint: the run is done
        result = checkpoint.result if checkpoint is not None else None
        _retrying(client.update_run, spec.run_id, status=RunStatus.COMPLETED.value, result=result)
        return None
    started = run.started_at.timestamp() if run.started_at is not None else spec.started_at
    return dataclasses.replace(spec, start_index=start, params=params, started_at=started)


def _exit_actor() -> None:
    # exit_actor() only works in an actor method's thread: ask the actor to end itself.
    import ray

    try:
        ray.get_runtime_context().current_actor.__ray_terminate__.remote()
    except Exception:
        _exit_process()


def _exit_process() -> None:
    # An action that does not stop when cancelled (blocked in C code): end the process. The run is
    # already cancelled on the service, which refuses any later change to it.
    logging.shutdown()
    os._exit(0)
