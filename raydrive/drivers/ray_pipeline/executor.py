"""``ray-pipeline``: several actions in a row on one Ray actor, with a checkpoint after each.

The run is registered with the pipeline service first (an unreachable service fails the submit
before anything starts on the cluster); then one detached actor runs the actions and reports
progress, logs, checkpoints and the outcome to the service (see :mod:`.runner`). The
submitting process may exit: status, progress and results are read back through the service,
from any process.

Retries and deadlines (enforced on the cluster, by the actor):

- ``retries`` (option, or the largest ``retries`` an action class declares) is the actor's Ray
  ``max_restarts``: when the actor dies (node lost, OOM kill, ``os._exit``) Ray builds it again,
  possibly on another node, and the run continues **in the same run id** after its latest
  checkpoint (:mod:`.actor`); the run's ``attempt`` says which attempt runs.
- an exception an action raises is retried in place per the action's policy
  (:meth:`RetryPolicy.resolve(options, action) <raydrive.core.retry.RetryPolicy.resolve>`:
  ``retry_on="infra"``, the default, does not retry it; ``"any"`` or a list of type names does),
  with ``retry_backoff`` between attempts.
- ``timeout_s`` (option or ``submit(..., timeout_s=)``) bounds the whole run, from its start;
  an action's own deadline is its class attribute ``timeout_s`` or ``action_timeouts[name]``
  (option, wins). Past it the action is interrupted and the run fails with ``deadline exceeded``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from pydantic import Field, field_validator

from raydrive.core.action import validate_params
from raydrive.core.calls import check_call
from raydrive.core.errors import (
    ExecutionError,
    ExecutionTimeoutError,
    JobNotFoundError,
    ServiceError,
    ServiceUnavailableError,
    SubmissionError,
)
from raydrive.core.options import RayOptions
from raydrive.core.pipeline import DEFAULT_SERVICE_URL, PipelineDefinition, PipelineProgress, RunStatus
from raydrive.core.retry import DEADLINE_EXCEEDED, Attempt, RetryPolicy
from raydrive.core.status import job_state
from raydrive.drivers.ray import compat
from raydrive.drivers.ray.base import BaseRayExecutor
from raydrive.drivers.ray.wire import NAMESPACE
from raydrive.drivers.ray_pipeline.actor import PipelineActor
from raydrive.drivers.ray_pipeline.payload import SecretMasker, secret_fields
from raydrive.drivers.ray_pipeline.resume import fingerprint, resume_point
from raydrive.drivers.ray_pipeline.runner import unique_names
from raydrive.drivers.ray_pipeline.watcher import WATCHER_NAME, dead_actor_error, remote_watcher
from raydrive.drivers.ray_pipeline.wire import PipelineSpec, pipeline_actor_name

__all__ = ["PipelineOptions", "RayPipelineExecutor"]

_log = logging.getLogger("raydrive.pipeline")
CONFLICT = 409  # the service's answer to a change of a finished run (see raydrive.service.rules)


class PipelineOptions(RayOptions):
    pipeline_service_url: str = Field(default=DEFAULT_SERVICE_URL, description="Service URL.")
    actor_pipeline_service_url: str | None = Field(
        default=None, description="Service URL as the Ray actor must reach it (default: the same)."
    )
    progress_interval: float = Field(
        default=0.25, ge=0, description="Least seconds between two progress reports of an action."
    )
    cancel_poll_interval: float = Field(
        default=0.5, gt=0, le=60, description="Seconds between two checks of the actor for a cancel."
    )
    cancel_grace: float = Field(
        default=5.0,
        ge=0,
        le=3600,
        description="Seconds cancel() waits for the actor to stop before killing it through Ray (the "
        "interrupted action itself gets wire.INTERRUPT_GRACE_S on the cluster).",
    )
    action_timeouts: dict[str, float] | None = Field(
        default=None,
        description="Deadline in seconds per action name (wins over the class attribute timeout_s).",
    )
    checkpoint_wait_s: float = Field(
        default=60.0,
        ge=0,
        le=3600,
        description="With retries: how long the next action waits for the last checkpoint to be stored.",
    )

    @field_validator("action_timeouts")
    @classmethod
    def _positive(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value and any(not (0 < seconds <= 10 * 365 * 86400) for seconds in value.values()):
            raise ValueError("every action timeout must be a number of seconds above 0")
        return value


class RayPipelineExecutor(BaseRayExecutor):
    """Runs multi-action pipelines with checkpoints, resume and progress streamed over SSE."""

    name = "ray-pipeline"
    Options = PipelineOptions
    options: PipelineOptions

    def __init__(self, env: Any = None, /, **options: Any) -> None:
        # ``env`` first and positional, as the guide's tables list for every executor.
        if env is not None:
            super().__init__(env, **options)
        else:
            super().__init__(**options)
        self._client: Any = None
        self._lock = threading.Lock()

    # -- the service -----------------------------------------------------------------------
    @property
    def client(self) -> Any:
        """The synchronous pipeline service client (token from ``RAYDRIVE_SERVICE_TOKEN``)."""
        if self._client is None:
            from raydrive.service.client import PipelineServiceClient

            self._client = PipelineServiceClient(self.options.pipeline_service_url)
        return self._client

    def _check_service(self) -> None:
        try:
            self.client.health()
        except ServiceUnavailableError as exc:
            raise ServiceUnavailableError(
                f"the pipeline service at {self.options.pipeline_service_url} cannot be reached "
                f"({exc.__cause__ or exc}); start one with `raydrive service` or point "
                "pipeline_service_url at a running one",
                url=self.options.pipeline_service_url,
            ) from exc

    # -- submit ----------------------------------------------------------------------------
    def submit(
        self,
        pipeline: PipelineDefinition | Sequence[Any],
        params: dict[str, Any],
        *,
        name: str | None = None,
        resume_from: str | None = None,
        force: bool = False,
        timeout_s: float | None = None,
    ) -> str:
        """Submit a pipeline (non-blocking) and return the run id.

        :param pipeline: a PipelineDefinition, or a list of action classes / ``module.Class``.
        :param params: initial params; each action's result is merged into them for the next.
            Secret params (``SecretStr`` fields, secret-looking names) reach the actor only; the
            service stores them as ``***``.
        :param name: the pipeline's name (required with a plain list).
        :param resume_from: a failed or cancelled run: actions up to its latest checkpoint are
            skipped and the params are restored from that checkpoint (secret ones from ``params``).
            Refused when the definition differs from that run's up to the checkpoint (entrypoints,
            order, params schemas), unless ``force``. The new run's ``resumed_from`` names it.
        :param force: resume although the definition differs.
        :param timeout_s: the run's deadline (overrides the ``timeout_s`` option).
        :raises InvalidOptionsError: ``timeout_s`` is not a number of seconds > 0 (at most ten
            years); a boolean or a string is refused (:mod:`raydrive.core.calls`).
        :raises ActionImportError: an action is a class that is not a BaseAction.
        :raises SubmissionError: a resume of a run that is not failed or cancelled, of another
            definition, or that misses secret params the service does not keep.
        """
        if not isinstance(pipeline, PipelineDefinition):
            if not name:
                raise SubmissionError("name= is required when the pipeline is a plain list")
            pipeline = PipelineDefinition(name=name, actions=list(pipeline))
        if not pipeline.actions:
            raise SubmissionError(f"pipeline {pipeline.name!r} has no actions")
        # The shared check first: a class that is not a BaseAction is refused before anything is
        # registered with the service or started on the cluster.
        actions = [self.action(a) for a in pipeline.actions]
        resolved = [a.cls for a in actions]
        names = unique_names([a.name for a in actions])
        masker = SecretMasker(secret_fields([getattr(c, "params_model", None) for c in resolved]))
        policies = [RetryPolicy.resolve(self.options, c) for c in resolved]
        deadlines = self._action_timeouts(names, resolved)
        given = check_call(self.name, timeout_s=timeout_s).timeout_s
        run_timeout = given if given is not None else self.options.timeout_s
        definition = fingerprint(names, actions, self.options.working_dir)

        self._check_service()
        start, run_params = 0, dict(params)
        if resume_from:
            start, run_params = resume_point(
                self.client, resume_from, names, definition, run_params, force=force
            )
        first = resolved[start] if start < len(names) else None
        if first is not None:
            validate_params(first, run_params)  # fail fast where we can; the actor checks all
        masker.learn(run_params)

        # Before every actor start: Ray deletes the working dir's package when the last detached
        # actor that used it ends, and the next run (a resume) would find it gone.
        built = self.runtime_env_for_actor(detached=True)
        request = self.resources(names[start] if start < len(names) else pipeline.name)
        stored = self.client.create_pipeline(
            pipeline.name,
            [{"name": n, "entrypoint": a.entrypoint} for n, a in zip(names, actions, strict=True)],
            description=pipeline.description,
        )
        work_dir = str(self.options.working_dir.resolve()) if self.options.working_dir else None
        restarts = max(p.retries for p in policies)
        run = self.client.create_run(
            stored.id,
            params=masker.data(run_params),
            work_dir=work_dir,
            fingerprint=definition,
            resumed_from=resume_from,
            max_attempts=restarts + 1,
        )
        spec = PipelineSpec(
            run_id=run.id,
            service_url=self.options.actor_pipeline_service_url or self.options.pipeline_service_url,
            entrypoints=[a.target for a in actions],
            names=names,
            params=run_params,
            start_index=start,
            env=built.env,
            progress_interval=self.options.progress_interval,
            token=os.environ.get("RAYDRIVE_SERVICE_TOKEN"),
            cancel_poll_interval=self.options.cancel_poll_interval,
            retry=[p.to_wire() for p in policies],
            max_restarts=restarts,
            restart_backoff=max(policies, key=lambda p: p.retries).backoff.model_dump(),
            action_timeouts=deadlines,
            timeout_s=run_timeout,
            checkpoint_wait_s=self.options.checkpoint_wait_s,
        )
        try:
            launcher = self.remote_class(PipelineActor).options(
                name=pipeline_actor_name(run.id),
                namespace=NAMESPACE,
                lifetime="detached",
                runtime_env=built.runtime_env,
                # Ray's restarts are the retries in place: the constructor continues the run.
                max_restarts=restarts,
                **request.as_ray_options(),
            )
            actor = self.bounded("actor creation", launcher.remote, built.secrets, spec)
            self._wait_creation_submitted(actor, run.id)
            self._watch(run.id, spec)
        except Exception as exc:
            error = masker.text(f"submission failed: {exc}")
            try:
                self.client.update_run(run.id, status=RunStatus.FAILED, error=error)
            except ServiceError as marking:  # the service's trouble must not hide the real error
                _log.warning("run %s: could not mark it failed on the service: %s", run.id, marking)
            raise self.map_error(exc, job_id=run.id) from exc
        self._emit_submitted(run.id, pipeline.name)
        return run.id

    def _watch(self, run_id: str, spec: PipelineSpec) -> None:
        """Register the run with the cluster's run watcher (:mod:`.watcher`), which marks it
        failed on the service if its actor dies, whoever asks. Bounded by ``connect_timeout``;
        a watcher that cannot be reached is logged, and the run goes on (a client reading its
        status through an executor still notices a dead actor)."""
        import ray

        options: dict[str, Any] = {
            "name": WATCHER_NAME,
            "namespace": NAMESPACE,
            "lifetime": "detached",
            "get_if_exists": True,  # atomic in the GCS: concurrent first users share one watcher
            "resources": {"node:__internal_head__": 0.001},  # the head lives as long as the cluster
        }
        if self.options.include_sdk:
            sdk = self.runtime_env().runtime_env.get("py_modules")
            if sdk:
                options["runtime_env"] = {"py_modules": sdk}
        try:
            watcher = self.bounded("watcher creation", remote_watcher().options(**options).remote)
            ref = watcher.watch.remote(run_id, pipeline_actor_name(run_id), spec.service_url, spec.token)
            ray.get(ref, timeout=self.options.connect_timeout)
        except Exception as exc:
            _log.warning("run %s: the cluster's run watcher could not be reached (%s)", run_id, exc)

    def _wait_creation_submitted(self, actor: Any, run_id: str) -> None:
        """Return once the GCS holds the actor's creation, so the submitter may exit at once.

        ``.remote()`` registers a named actor synchronously but sends its creation to the GCS in
        the background; a submitter that exits before that is sent takes the actor with it
        ("owner died", never started), detached or not. Through the Ray client the client server
        owns it and stays up, so there is nothing to wait for.
        """
        conn = self.connection
        if conn is not None and conn.client_mode:
            return
        deadline = time.monotonic() + max(self.options.connect_timeout, 5.0)
        while time.monotonic() < deadline:
            info = compat.actor_info(compat.actor_id_of(actor))
            if info and info.get("State") != "DEPENDENCIES_UNREADY":
                return
            time.sleep(0.005)
        _log.warning("run %s: the cluster has not taken the actor's creation yet; do not exit now", run_id)

    def _action_timeouts(self, names: list[str], classes: list[type | None]) -> list[float | None]:
        given = self.options.action_timeouts or {}
        unknown = sorted(set(given) - set(names))
        if unknown:
            raise SubmissionError(
                f"action_timeouts names {', '.join(unknown)}, not actions of this pipeline "
                f"({', '.join(names)})"
            )
        out: list[float | None] = []
        for name, cls in zip(names, classes, strict=True):
            seconds = given.get(name, getattr(cls, "timeout_s", None))
            valid = isinstance(seconds, int | float) and not isinstance(seconds, bool) and seconds > 0
            if seconds is not None and not valid:
                raise SubmissionError(
                    f"{name}.timeout_s must be a number of seconds above 0, not {seconds!r}"
                )
            out.append(float(seconds) if seconds is not None else None)
        return out

    # -- reading runs ----------------------------------------------------------------------
    def get_status(self, run_id: str) -> RunStatus:
        """The run's status (``RunStatus``: pending, running, completed, failed, cancelled)."""
        return self.get_progress(run_id).status

    def get_progress(self, run_id: str) -> PipelineProgress:
        """Detailed progress: current action, per-action progress, overall progress, error."""
        progress = self.client.get_progress(run_id)
        if not progress.status.is_terminal():
            progress = self._check_actor_alive(progress)
        return progress

    def _check_actor_alive(self, progress: PipelineProgress) -> PipelineProgress:
        """A run whose actor is gone without reporting is marked failed: a running one (node
        lost, OOM kill), or a pending one (its actor never started: a runtime env that failed to
        set up, a working-dir package deleted under it).

        An actor Ray is restarting (state ``RESTARTING``, with ``retries``) keeps its name and
        counts as alive: the run goes on in place. Best effort: a process that cannot reach the
        cluster (only the service) skips the check.
        """
        if self._actor_alive(progress.run_id):
            return progress
        time.sleep(0.5)  # the actor may have just finished and be flushing its last report
        progress = self.client.get_progress(progress.run_id)
        if progress.status.is_terminal() or self._actor_alive(progress.run_id):
            return progress
        error = dead_actor_error(progress.status.value, progress.attempt)
        try:
            self.client.update_run(progress.run_id, status=RunStatus.FAILED, error=error)
        except ServiceError as exc:
            if exc.status_code != CONFLICT:
                raise
            # 409: it ended this very moment (a finished run is immutable): its end stands.
        return self.client.get_progress(progress.run_id)

    def _actor_alive(self, run_id: str) -> bool:
        try:
            return self.actor_exists(pipeline_actor_name(run_id), NAMESPACE)
        except SubmissionError:  # cluster unreachable from here: trust the service
            return True

    def stream_progress(self, run_id: str, timeout: float = 3600.0) -> Iterator[PipelineProgress]:
        """Yield the run's progress on every change (SSE), ending after the terminal state."""
        for event in self.client.stream_events(run_id, timeout=timeout):
            yield event.progress

    async def stream_progress_async(
        self, run_id: str, timeout: float = 3600.0
    ) -> AsyncIterator[PipelineProgress]:
        """Async version of :meth:`stream_progress`."""
        from raydrive.service.client import AsyncPipelineServiceClient

        async with AsyncPipelineServiceClient(self.options.pipeline_service_url) as client:
            async for event in client.stream_events(run_id, timeout=timeout):
                yield event.progress

    def wait(
        self, run_id: str, timeout_seconds: float = 3600, poll_interval: float = 5.0
    ) -> PipelineProgress:
        """Wait for the run to end and return its final progress.

        :raises ExecutionError: the run failed or was cancelled (``ExecutionTimeoutError`` when
            it did not end within ``timeout_seconds``).
        """
        deadline = time.monotonic() + timeout_seconds
        progress = self.get_progress(run_id)
        while not progress.status.is_terminal():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ExecutionTimeoutError(
                    f"pipeline run {run_id!r} did not finish within {timeout_seconds} s "
                    f"(status {progress.status.value}, at {progress.current_action!r})",
                    job_id=run_id,
                )
            try:  # the stream wakes us at once on the end; polling is the fallback
                for progress in self.stream_progress(run_id, timeout=min(remaining, poll_interval)):
                    if progress.status.is_terminal():
                        break
            except ExecutionTimeoutError:
                pass
            progress = self.get_progress(run_id)
        return self._final(run_id, progress)

    def _final(self, run_id: str, progress: PipelineProgress) -> PipelineProgress:
        self._finished_once(run_id, progress.status, progress.error, attempt=progress.attempt)
        if progress.status is RunStatus.COMPLETED:
            return progress
        failed = next((a for a in progress.progress if a.status.value == "failed"), None)
        message = (
            f"pipeline run {run_id!r} {progress.status.value}"
            + (f" at action {failed.name!r}" if failed else "")
            + (f": {progress.error}" if progress.error else "")
        )
        if (progress.error or "").startswith(DEADLINE_EXCEEDED):
            raise ExecutionTimeoutError(
                message,
                job_id=run_id,
                reason=DEADLINE_EXCEEDED,
                error_type="ExecutionTimeoutError",
                error_message=progress.error,
            )
        raise ExecutionError(
            message, error_type=progress.status.value, error_message=progress.error, job_id=run_id
        )

    def get_attempts(self, run_id: str) -> list[Attempt]:
        """The run's attempts so far, oldest first: one per start of its pipeline actor (a restart
        by Ray after the actor died is the next attempt, in the same run id).

        :raises JobNotFoundError: no such run.
        """
        run = self.client.get_run(run_id)
        if run.attempts:
            return list(run.attempts)
        return [Attempt(number=1, state=job_state(run.status.value).value, error=run.error)]

    def get_result(self, run_id: str, timeout: float | None = None) -> Any:
        """Wait for the run and return its result (the last action's result, secrets as ``***``)."""
        self.wait(run_id, timeout_seconds=timeout if timeout is not None else float("inf"))
        return self.client.get_run(run_id).result

    def cancel(self, run_id: str) -> bool:
        """Cancel a run through the service; its actor stops the running action and exits.

        The service marks the run cancelled at once (later reports cannot change it); the actor
        sees it within ``cancel_poll_interval`` and stops. An actor still alive after
        ``cancel_grace`` s is killed through Ray. When the service cannot be reached, the actor
        is killed at once and the run is marked failed ("actor died") by the next status read
        once the service is back; :class:`ServiceUnavailableError` is raised only when the
        actor could not be killed either.

        :returns: True when the run was stopped by this call, False when it had ended already or the
            service knows no such run.
        """
        try:
            if self.client.get_progress(run_id).status.is_terminal():
                return False
            self._request_cancel(run_id)
            grace = self.options.cancel_grace
        except JobNotFoundError:  # the service knows no such run: nothing to stop, as on ray-job
            return False
        except ServiceUnavailableError as exc:
            _log.warning("pipeline service unreachable (%s): killing run %s's actor directly", exc, run_id)
            grace, unreachable = 0.0, exc
        else:
            unreachable = None
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and self._actor_alive(run_id):
            time.sleep(0.05)
        try:
            self.kill_actor(pipeline_actor_name(run_id), NAMESPACE)  # no-op when it is gone already
        except SubmissionError:
            if unreachable is not None:
                raise unreachable from None
        self._finished_once(run_id, RunStatus.CANCELLED, "cancelled")
        return True

    def _request_cancel(self, run_id: str) -> None:
        try:
            self.client.cancel_run(run_id)  # POST /api/v1/runs/{id}/cancel
        except ServiceUnavailableError:
            raise
        except ServiceError as exc:
            if exc.status_code != 409:  # 409: it ended meanwhile
                raise

    def _finished_once(
        self, run_id: str, status: RunStatus, error: str | None = None, *, attempt: int = 1
    ) -> None:
        # One status word per outcome, whichever call saw it (wait or cancel); once, by the
        # executor that submitted the run (the base class keeps the name given at submission).
        self._emit_finished(run_id, status, error, attempt=attempt)

    def close(self) -> None:
        """Close the service client (runs keep going on the cluster)."""
        client, self._client = self._client, None
        if client is not None:
            client.close()
        super().close()
