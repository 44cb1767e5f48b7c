"""``ray-pipeline``: several actions in a row on one Ray actor, with a checkpoint after each.

The run is registered with the pipeline service first (an unreachable service fails the submit
before anything starts on the cluster); then one detached actor runs the actions and reports
progress, logs, checkpoints and the outcome to the service (see :mod:`.pipeline_runner`). The
submitting process may exit: status, progress and results are read back through the service,
from any process.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

from pydantic import Field

from raydrive.core.action import action_entrypoint, action_name, try_resolve_action, validate_params
from raydrive.core.errors import (
    ExecutionError,
    ExecutionTimeoutError,
    ServiceUnavailableError,
    SubmissionError,
)
from raydrive.core.options import RayOptions
from raydrive.core.pipeline import PipelineDefinition, PipelineProgress, RunStatus
from raydrive.drivers.pipeline_runner import PipelineSpec, unique_names
from raydrive.drivers.ray_common.base import BaseRayExecutor

__all__ = ["PipelineOptions", "RayPipelineExecutor"]

NAMESPACE = "raydrive"


def actor_name(run_id: str) -> str:
    return f"raydrive-pipeline-{run_id}"


class PipelineOptions(RayOptions):
    pipeline_service_url: str = Field(default="http://localhost:8100", description="Service URL.")
    actor_pipeline_service_url: str | None = Field(
        default=None, description="Service URL as the Ray actor must reach it (default: the same)."
    )
    progress_interval: float = Field(
        default=0.25, ge=0, description="Least seconds between two progress reports of an action."
    )


class _PipelineActor:
    """Runs one pipeline run; created detached, it exits when the run ends."""

    def __init__(self, secrets: dict[str, str]) -> None:
        os.environ.update(secrets)  # credentials arrive as an argument, never in the runtime env

    def run(self, spec: PipelineSpec) -> dict[str, Any]:
        import ray

        from raydrive.drivers.pipeline_runner import run_pipeline
        from raydrive.service.client import PipelineServiceClient

        client = PipelineServiceClient(spec.service_url, token=spec.token, retries=0)
        try:
            return run_pipeline(spec, client)
        finally:
            client.close()
            ray.actor.exit_actor()


class RayPipelineExecutor(BaseRayExecutor):
    """Runs multi-action pipelines with checkpoints, resume and progress streamed over SSE."""

    name = "ray-pipeline"
    Options = PipelineOptions
    options: PipelineOptions

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._client: Any = None
        self._lock = threading.Lock()
        self._reported: set[str] = set()

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
    ) -> str:
        """Submit a pipeline (non-blocking) and return the run id.

        :param pipeline: a PipelineDefinition, or a list of action classes / ``module.Class``.
        :param params: initial params; each action's result is merged into them for the next.
        :param name: the pipeline's name (required with a plain list).
        :param resume_from: a failed or cancelled run: actions up to its latest checkpoint are
            skipped and the params are restored from that checkpoint.
        """
        if not isinstance(pipeline, PipelineDefinition):
            if not name:
                raise SubmissionError("name= is required when the pipeline is a plain list")
            pipeline = PipelineDefinition(name=name, actions=list(pipeline))
        if not pipeline.actions:
            raise SubmissionError(f"pipeline {pipeline.name!r} has no actions")
        entrypoints = [action_entrypoint(a) for a in pipeline.actions]
        names = unique_names([action_name(a) for a in pipeline.actions])

        self._check_service()
        start, run_params = 0, dict(params)
        if resume_from:
            start, run_params = self._resume_point(resume_from, names, run_params)
        first = try_resolve_action(pipeline.actions[start]) if start < len(names) else None
        if first is not None:
            validate_params(first, run_params)  # fail fast where we can; the actor checks all

        built = self.runtime_env()  # packages and uploads the working dir once per executor
        request = self.resources(names[start] if start < len(names) else pipeline.name)
        stored = self.client.create_pipeline(
            pipeline.name,
            [{"name": n, "entrypoint": e} for n, e in zip(names, entrypoints, strict=True)],
            description=pipeline.description,
        )
        work_dir = str(Path(self.options.working_dir).resolve()) if self.options.working_dir else None
        run = self.client.create_run(stored.id, params=run_params, work_dir=work_dir)
        spec = PipelineSpec(
            run_id=run.id,
            service_url=self.options.actor_pipeline_service_url or self.options.pipeline_service_url,
            entrypoints=entrypoints,
            names=names,
            params=run_params,
            start_index=start,
            env=built.env,
            progress_interval=self.options.progress_interval,
            token=os.environ.get("RAYDRIVE_SERVICE_TOKEN"),
        )
        try:
            actor = (
                self.remote_class(_PipelineActor)
                .options(
                    name=actor_name(run.id),
                    namespace=NAMESPACE,
                    lifetime="detached",
                    runtime_env=built.runtime_env,
                    max_restarts=0,
                    **request.as_ray_options(),
                )
                .remote(built.secrets)
            )
            actor.run.remote(spec)
        except Exception as exc:
            self.client.update_run(run.id, status=RunStatus.FAILED, error=f"submission failed: {exc}")
            raise self.map_error(exc, job_id=run.id) from exc
        self._emit_submitted(run.id, pipeline.name)
        return run.id

    def _resume_point(
        self, run_id: str, names: list[str], params: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        previous = self.client.get_run(run_id)  # JobNotFoundError for an unknown id
        if previous.status in (RunStatus.PENDING, RunStatus.RUNNING):
            raise SubmissionError(
                f"run {run_id!r} is {previous.status.value}; only a failed or cancelled run can be "
                "resumed (cancel it first)"
            )
        checkpoint = self.client.get_latest_checkpoint(run_id)
        if checkpoint is None:
            return 0, {**previous.params, **params}
        if checkpoint.action_index >= len(names) or names[checkpoint.action_index] != checkpoint.action_name:
            raise SubmissionError(
                f"run {run_id!r} was checkpointed after action {checkpoint.action_name!r} "
                f"(#{checkpoint.action_index}), which this pipeline does not have at that place"
            )
        return checkpoint.action_index + 1, dict(checkpoint.params_snapshot)

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
        """A running run whose actor died without reporting (node lost, OOM kill) is marked failed.

        Best effort: a process that cannot reach the cluster (only the service) skips the check.
        """
        if progress.status is not RunStatus.RUNNING or self._actor_alive(progress.run_id):
            return progress
        time.sleep(0.5)  # the actor may have just finished and be flushing its last report
        progress = self.client.get_progress(progress.run_id)
        if progress.status.is_terminal() or self._actor_alive(progress.run_id):
            return progress
        with contextlib.suppress(ExecutionError):  # it may have ended this very moment
            self.client.update_run(
                progress.run_id, status=RunStatus.FAILED, error="the pipeline actor died before the run ended"
            )
        return self.client.get_progress(progress.run_id)

    def _actor_alive(self, run_id: str) -> bool:
        try:
            return self.actor_exists(actor_name(run_id), NAMESPACE)
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
        if progress.status is RunStatus.COMPLETED:
            self._finished_once(run_id, "SUCCEEDED")
            return progress
        self._finished_once(run_id, progress.status.value.upper(), progress.error)
        failed = next((a for a in progress.progress if a.status.value == "failed"), None)
        raise ExecutionError(
            f"pipeline run {run_id!r} {progress.status.value}"
            + (f" at action {failed.name!r}" if failed else "")
            + (f": {progress.error}" if progress.error else ""),
            error_type=progress.status.value,
            error_message=progress.error,
            job_id=run_id,
        )

    def get_result(self, run_id: str, timeout: float | None = None) -> Any:
        """Wait for the run and return its result (the last action's result)."""
        self.wait(run_id, timeout_seconds=timeout if timeout is not None else float("inf"))
        return self.client.get_run(run_id).result

    def cancel(self, run_id: str) -> None:
        """Cancel a run: it is marked cancelled first (later reports cannot change it), then its
        actor is killed, stopping the running action."""
        progress = self.client.get_progress(run_id)
        if progress.status.is_terminal():
            return
        self.client.update_run(run_id, status=RunStatus.CANCELLED, error="cancelled by the user")
        self.kill_actor(actor_name(run_id), NAMESPACE)
        self._finished_once(run_id, "STOPPED", "cancelled")

    def _finished_once(self, run_id: str, status: str, error: str | None = None) -> None:
        with self._lock:
            if run_id in self._reported:
                return
            self._reported.add(run_id)
        self._emit_finished(run_id, "pipeline", status, error)

    def close(self) -> None:
        """Close the service client (runs keep going on the cluster)."""
        client, self._client = self._client, None
        if client is not None:
            client.close()
        super().close()
