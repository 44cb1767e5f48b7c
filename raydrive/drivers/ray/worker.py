"""The action actor: what runs inside the Ray cluster for ray-actor (and, subclassed, ray-job's
fresh actor per job, :mod:`raydrive.drivers.ray_job.worker`).

A plain class; the driver turns it into a Ray actor on first use (:func:`remote_action_actor`), so
importing this module imports no Ray. Ray imports it in the workers by module path, so the
cluster needs raydrive installed (or ``include_sdk=True``).

What it receives is packed by :mod:`raydrive.drivers.ray.wire`: an
:class:`~raydrive.drivers.ray.wire.ActionCall` for :meth:`ActionActor.run`. Secrets travel only
in these arguments and in the constructor's ``env`` (never in a runtime env, which Ray's state
API and dashboard show), and are put in ``os.environ`` for the life of the actor's process.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from raydrive.core.action import resolve_action, run_action
from raydrive.drivers.ray.wire import ActionCall, pack_result

__all__ = ["ActionActor", "kill_actor", "ray_remote", "remote_action_actor", "resolve_cached"]

_classes: dict[str, type] = {}


def resolve_cached(target: Any) -> Any:
    """The action class of ``target`` (an entrypoint string, or the class itself).

    Per-process cache: a warm actor or pooled worker imports an action once.
    """
    if isinstance(target, str):
        cls = _classes.get(target)
        if cls is None:
            cls = _classes[target] = resolve_action(target)
        return cls
    return target


class ActionActor:
    """Runs actions in a process of its own: the persistent actor of ray-actor (and the base of
    ray-job's fresh actor per job). Module globals survive between calls, as users expect."""

    def __init__(self, env: Mapping[str, str], code_paths: Sequence[str] = ()) -> None:
        # The process is this actor's alone, so the environment (secrets included) is set once.
        os.environ.update(env)
        self._env = dict(env)
        sys.path[:0] = [p for p in code_paths if p and p not in sys.path]

    def run(self, packed: bytes | list[Any]) -> bytes | list[Any]:
        """Run one packed :class:`~raydrive.drivers.ray.wire.ActionCall`; return the result packed."""
        return self.perform(ActionCall.unpack(packed))

    def perform(self, call: ActionCall) -> bytes | list[Any]:
        """Run one unpacked call; return the result packed."""
        action = resolve_cached(call.target)
        return pack_result(run_action(action, call.params, job_id=call.job_id, env=self._env))

    def pid(self) -> int:
        return os.getpid()


def kill_actor(actor: Any) -> None:
    """``ray.kill`` without restart; an actor already gone is not an error."""
    import ray

    with contextlib.suppress(Exception):
        ray.kill(actor, no_restart=True)


_remote: dict[Any, Any] = {}  # made on first use, so that importing a module imports no Ray


def ray_remote(target: Any, **defaults: Any) -> Any:
    """``ray.remote(**defaults)(target)`` (a class or function), made once per target and defaults
    (Ray imported here): every Ray wrapper of raydrive is made through this."""
    key = (target, repr(sorted(defaults.items())))
    remote = _remote.get(key)
    if remote is None:
        import ray

        remote = _remote[key] = ray.remote(**defaults)(target) if defaults else ray.remote(target)
    return remote


def remote_action_actor() -> Any:
    """``ray.remote(ActionActor)``; callers add ``.options(...)`` (resources, runtime env, name)."""
    return ray_remote(ActionActor, max_restarts=0, max_task_retries=0)
