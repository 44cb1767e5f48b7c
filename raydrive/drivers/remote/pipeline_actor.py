"""The pipeline actor of ``ray-pipeline``: one detached actor per run, exits when the run ends.

What it runs is :func:`~raydrive.drivers.remote.pipeline_runner.run_pipeline`; what it receives is
a :class:`~raydrive.drivers.wire.PipelineSpec` and the secrets (by argument, never in the runtime
env, which Ray's state API and the dashboard show). Ray is imported only inside the actor.
"""

from __future__ import annotations

import logging
import os
import threading

from raydrive.drivers.wire import PipelineSpec

__all__ = ["PipelineActor"]

_log = logging.getLogger("raydrive.pipeline")


class PipelineActor:
    """Runs one pipeline run; created detached, it exits when the run ends.

    The run starts in the constructor (in a thread), not in a method call: Ray keeps a detached
    actor's creation whatever its creator does next, while a method call still queued in a
    submitter that exits is lost (the run would stay ``pending`` for ever).
    """

    def __init__(self, secrets: dict[str, str], spec: PipelineSpec) -> None:
        os.environ.update(secrets)  # credentials arrive as an argument, never in the runtime env
        self._thread = threading.Thread(
            target=self._main, args=(spec,), name="raydrive-pipeline", daemon=True
        )
        self._thread.start()

    def alive(self) -> bool:
        return self._thread.is_alive()

    @staticmethod
    def _main(spec: PipelineSpec) -> None:
        from raydrive.drivers.remote.pipeline_cancel import CancelWatcher
        from raydrive.drivers.remote.pipeline_runner import run_pipeline
        from raydrive.service.client import PipelineServiceClient

        client = PipelineServiceClient(spec.service_url, token=spec.token, retries=0)
        watcher = CancelWatcher(
            client, spec.run_id, interval=spec.cancel_poll_interval, grace=spec.cancel_grace,
            on_stuck=_exit_process,
        )  # fmt: skip
        try:
            run_pipeline(spec, client, watcher=watcher)
        except BaseException:  # the runner reports failures itself; this is a last resort
            _log.exception("pipeline run %s ended abnormally", spec.run_id)
        finally:
            client.close()
            _exit_actor()


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
