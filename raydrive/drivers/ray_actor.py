"""``ray-actor`` (alias ``ray-task``): runs actions synchronously on one persistent Ray actor.

The actor is created on the first ``execute`` and reused by every later call, so module globals
and caches survive between calls and a warm call costs one actor round trip. Calls on one executor
run one at a time, in order. If the actor dies (killed, out of memory, ``os._exit``), the call in
flight raises ActorDiedError and the next call starts a fresh actor. ``shutdown()`` / ``close()``
kill it; the executor can be used again afterwards.

The actor's runtime env, environment (secrets included) and resources are fixed when it starts:
the resources hooks are asked with the first action's name. Call ``shutdown()`` to pick up
changed options, environment or working-dir files in a fresh actor.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import uuid
from typing import Any

from raydrive.core.status import JobState
from raydrive.drivers.ray_common.base import BaseRayExecutor
from raydrive.drivers.ray_common.errors import is_actor_death, ray_errors, to_raydrive_error
from raydrive.drivers.remote.workers import remote_action_actor
from raydrive.drivers.submission import Submission
from raydrive.drivers.wire import NAMESPACE, ActionCall

__all__ = ["RayActorExecutor", "RayTaskExecutor"]


class RayActorExecutor(BaseRayExecutor):
    """Executes actions on a persistent Ray actor: fast consecutive calls, state kept between them.

    Options are :class:`~raydrive.core.options.RayOptions` (``ray_address``, ``working_dir``,
    ``num_cpus``, ``num_gpus``, ``memory``, ``resources``, ``connect_timeout``...).
    """

    name = "ray-actor"

    def __init__(self, env: Any = None, /, **options: Any) -> None:
        super().__init__(env, **options)
        self._actor: Any = None
        self._actor_name: str | None = None
        self._call_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._ray: Any = None  # the ray module, once an actor started (importing us imports no Ray)
        # Call ids: a random prefix once, a counter per call (no urandom per call).
        self._id_prefix = uuid.uuid4().hex[:12]
        self._ids = itertools.count(1)

    @property
    def actor_name(self) -> str | None:
        """Name of the live actor (namespace ``raydrive``), for monitoring; None when none is up."""
        return self._actor_name if self._actor is not None else None

    def execute(self, action_cls: Any, params: dict[str, Any], **kwargs: Any) -> Any:
        """Run the action on the executor's actor and return its result.

        :param action_cls: a BaseAction subclass or an entrypoint string ``module.Class``.
        :param params: the action's params; validated here when the class is importable here,
            and in the actor in any case.
        :param kwargs: ``job_id`` names the call in lifecycle events; anything else is ignored.
        :raises ValidationError: the params do not fit the action's params model.
        :raises ExecutionError: the action raised (remote type, message and traceback kept);
            ActorDiedError when the actor died under the call.
        """
        with self._call_lock:
            job_id = kwargs.get("job_id") or self.options.job_id or f"{self._id_prefix}-{next(self._ids)}"
            actor = self._actor
            # A warm actor is already placed: only the action and the params are prepared.
            sub = self.prepare(
                action_cls, params, job_id=job_id, place=actor is None, runtime=self._actor_env
            )
            if actor is None:
                actor = self._start_actor(sub)
            try:
                ref = actor.run.remote(ActionCall(sub.target, sub.params, job_id).pack())
                self._emit_submitted(
                    job_id, sub.name
                )  # while the call is in flight: costs the caller nothing
                result = self._ray.get(ref)
            except Exception as exc:
                error = to_raydrive_error(exc, action=sub.name, job_id=job_id, address=self.address)
                if getattr(error, "error_type", None) == "RuntimeEnvSetupError":
                    self.forget_uploads()
                    self._forget(actor)
                elif is_actor_death(error):
                    self._forget(actor)
                self._emit_finished(job_id, JobState.FAILED, getattr(error, "message", str(error)))
                if error is exc:
                    raise
                raise error from exc
            self._emit_finished(job_id, JobState.SUCCEEDED)
            return result

    def _actor_env(self) -> Any:
        return self.runtime_env_for_actor()  # an actor start is rare: make sure of the package

    def _start_actor(self, sub: Submission) -> Any:
        import ray

        self._ray = ray
        assert sub.runtime is not None and sub.resources is not None
        options: dict[str, Any] = {
            **sub.resources.as_ray_options(),
            "name": f"raydrive-actor-{uuid.uuid4().hex[:16]}",
            "namespace": NAMESPACE,
            "max_concurrency": 1,  # one call at a time, in submission order
        }
        if sub.runtime.runtime_env:
            options["runtime_env"] = sub.runtime.runtime_env
        with ray_errors(action=sub.name, address=self.address):
            actor = remote_action_actor().options(**options).remote(sub.runtime.env)
        with self._state_lock:
            self._actor, self._actor_name = actor, options["name"]
        return actor

    def _forget(self, actor: Any) -> None:
        with self._state_lock:
            if self._actor is actor:
                self._actor = None
        _kill(actor)  # a half-dead actor (e.g. failed runtime env) must not linger

    def shutdown(self) -> None:
        """Kill the actor and release its resources; the next execute starts a new one."""
        with self._state_lock:
            actor, self._actor = self._actor, None
        if actor is not None:
            _kill(actor)

    def close(self) -> None:
        """Same as :meth:`shutdown`."""
        self.shutdown()


RayTaskExecutor = RayActorExecutor
"""Alias of :class:`RayActorExecutor` (the guide's older name; registered as ``ray-task``)."""


def _kill(actor: Any) -> None:
    import ray

    if ray.is_initialized():
        with contextlib.suppress(Exception):  # already gone
            ray.kill(actor, no_restart=True)
