"""``ray-actor`` (alias ``ray-task``): runs actions synchronously on one persistent Ray actor.

The actor is created on the first ``execute`` and reused by every later call, so module globals
and caches survive between calls and a warm call costs one actor round trip. Calls on one executor
run one at a time, in order. If the actor dies (killed, out of memory, ``os._exit``), the call in
flight raises ActorDiedError and the next call starts a fresh actor. ``shutdown()`` / ``close()``
kill it; the executor can be used again afterwards.

The actor's runtime env, environment (secrets included) and resources are fixed when it starts:
the resources hooks are asked with the first action's name. Call ``shutdown()`` to pick up
changed options, environment or working-dir files in a fresh actor.

**Retries** (``retries``, ``retry_on``, ``retry_backoff``; options win over the action class's
attributes, see :mod:`raydrive.core.retry`): a call whose actor died under it (or whose runtime env
could not be set up) is run again on a fresh actor after the backoff; an exception raised by the
action is retried only with ``retry_on="any"`` or a list naming its type, on the same (live)
actor. The loop is raydrive's, in ``execute``, not Ray's actor ``max_restarts`` /
``max_task_retries``: Ray restarts an actor at once (no backoff), re-runs the call on the
restarted actor without telling the caller which attempt it is on, knows nothing of ``retry_on``
by type name, and does not cover a failed runtime-env setup; so the actor is made with
``max_restarts=0`` and a failed attempt kills it for good. A call is one job: submitted once,
finished once with the attempt that ended it; the error raised is the last attempt's, with
``error.attempts`` listing every :class:`~raydrive.core.retry.Attempt`; :meth:`get_attempts`
gives the attempts of the recent calls.

**Deadlines** (``timeout_s`` option, or ``execute(..., timeout_s=)`` for one call) bound each
attempt of the action: from its submission to a running actor (a fresh actor's start is waited
for first, for at most ``timeout_s`` as well: an actor Ray cannot place raises
ExecutionTimeoutError saying it did not start) to its result: at the deadline the caller
stops waiting, the actor is killed (``ray.kill``, so the action really stops), and
:class:`~raydrive.core.errors.ExecutionTimeoutError` is raised with reason ``"deadline exceeded"``;
it is not retried unless ``retry_on`` names ``"ExecutionTimeoutError"``, and the next call gets a
fresh actor. The actor is owned by the submitting process (not detached), so if that process
exits, Ray ends the actor and the call with it: there is no call left to bound.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
import uuid
from collections import OrderedDict
from typing import Any

from raydrive.core.calls import check_call
from raydrive.core.errors import ExecutionTimeoutError, JobNotFoundError
from raydrive.core.retry import DEADLINE_EXCEEDED, Attempt, RetryPolicy, deadline_error
from raydrive.core.status import JobState
from raydrive.drivers.ray.base import BaseRayExecutor
from raydrive.drivers.ray.errors import is_actor_death, ray_errors, to_raydrive_error
from raydrive.drivers.ray.submission import Submission
from raydrive.drivers.ray.wire import NAMESPACE, ActionCall, unpack_result
from raydrive.drivers.ray.worker import remote_action_actor

__all__ = ["RayActorExecutor", "RayTaskExecutor"]

KEPT_ATTEMPTS = 1024
"""How many recent calls :meth:`RayActorExecutor.get_attempts` remembers (oldest forgotten first)."""


class RayActorExecutor(BaseRayExecutor):
    """Executes actions on a persistent Ray actor: fast consecutive calls, state kept between them.

    Options are :class:`~raydrive.core.options.RayOptions` (``ray_address``, ``working_dir``,
    ``num_cpus``, ``num_gpus``, ``memory``, ``resources``, ``connect_timeout``, ``retries``,
    ``retry_on``, ``retry_backoff``, ``timeout_s``, ``setup_timeout_s``...).
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
        self._policies: dict[str, RetryPolicy] = {}  # per action entrypoint: resolved once
        self._attempts: OrderedDict[str, list[Attempt]] = OrderedDict()

    @property
    def actor_name(self) -> str | None:
        """Name of the live actor (namespace ``raydrive``), for monitoring; None when none is up."""
        return self._actor_name if self._actor is not None else None

    def execute(self, action_cls: Any, params: dict[str, Any], **kwargs: Any) -> Any:
        """Run the action on the executor's actor and return its result, retrying per the policy.

        :param action_cls: a BaseAction subclass or an entrypoint string ``module.Class``.
        :param params: the action's params; validated here when the class is importable here,
            and in the actor in any case.
        :param kwargs: ``job_id`` names the call in lifecycle events; ``timeout_s`` is this call's
            deadline per attempt (overrides the option); anything else is ignored.
        :raises ValidationError: the params do not fit the action's params model.
        :raises InvalidOptionsError: ``timeout_s`` is not a number of seconds > 0 (at most ten
            years); a boolean or a string is refused (:mod:`raydrive.core.calls`).
        :raises ExecutionError: the last attempt's error (remote type, message and traceback
            kept), with ``attempts`` (the :class:`~raydrive.core.retry.Attempt` records);
            ActorDiedError when the actor died under the call; ExecutionTimeoutError (reason
            ``"deadline exceeded"``) when the call passed its deadline.
        """
        given = check_call(self.name, timeout_s=kwargs.get("timeout_s")).timeout_s
        timeout_s = given if given is not None else self.options.timeout_s
        with self._call_lock:
            job_id = kwargs.get("job_id") or self.options.job_id or f"{self._id_prefix}-{next(self._ids)}"
            attempts: list[Attempt] = []
            # Resolved before anything runs: a policy the action class declares wrongly (say
            # retries=10**9) is refused here, as the other drivers refuse it at submission.
            policy = self._policy(action_cls)
            while True:
                number = len(attempts) + 1
                started = time.time()
                sent: list[str] = []
                try:
                    _, result = self._attempt(action_cls, params, job_id, timeout_s, sent, number == 1)
                except Exception as error:
                    if not sent and not attempts:
                        raise  # nothing reached the cluster: no job, no attempt
                    message = getattr(error, "message", None) or str(error)
                    attempts.append(
                        Attempt(
                            number=number,
                            state=JobState.FAILED.value,
                            started_at=started,
                            ended_at=time.time(),
                            error_type=getattr(error, "error_type", None) or type(error).__name__,
                            error=message,
                        )
                    )
                    if policy.should_retry(error, number):
                        time.sleep(policy.backoff.delay(number))
                        continue
                    self._remember(job_id, attempts)
                    self._emit_finished(job_id, JobState.FAILED, message, attempt=number)
                    with contextlib.suppress(AttributeError):  # a type with __slots__
                        error.attempts = list(attempts)  # type: ignore[attr-defined]
                    raise
                if attempts or policy.retries:
                    # Attempts are recorded only where retries are possible: the warm path of a
                    # plain call costs no record.
                    attempts.append(
                        Attempt(
                            number=number,
                            state=JobState.SUCCEEDED.value,
                            started_at=started,
                            ended_at=time.time(),
                        )
                    )
                    self._remember(job_id, attempts)
                self._emit_finished(job_id, JobState.SUCCEEDED, attempt=number)
                return result

    def get_attempts(self, job_id: str) -> list[Attempt]:
        """The attempts of a recent call (one of the last :data:`KEPT_ATTEMPTS`), oldest first.

        A call under no retry policy (``retries`` 0) that succeeded keeps no record.

        :raises JobNotFoundError: no such call is remembered.
        """
        with self._state_lock:
            found = self._attempts.get(job_id)
        if found is None:
            raise JobNotFoundError(f"no attempts recorded for job {job_id!r} on this executor", job_id=job_id)
        return list(found)

    def _attempt(
        self,
        action_cls: Any,
        params: dict[str, Any],
        job_id: str,
        timeout_s: float | None,
        sent: list[str],
        first: bool,
    ) -> tuple[Submission, Any]:
        """One attempt: prepare, start an actor if none is up, call it, wait (bounded)."""
        actor = self._actor
        # A warm actor is already placed: only the action and the params are prepared.
        sub = self.prepare(action_cls, params, job_id=job_id, place=actor is None, runtime=self._actor_env)
        fresh = actor is None
        if actor is None:
            actor = self._start_actor(sub)
        try:
            if fresh and timeout_s is not None:
                # The deadline bounds the action, not the actor's start: wait for the actor to be
                # up before the clock starts, for at most timeout_s too (Ray may never place it).
                self._sent(sent, sub, first)
                try:
                    self._ray.get(actor.pid.remote(), timeout=timeout_s)
                except self._ray.exceptions.GetTimeoutError:
                    self._forget(actor)
                    raise ExecutionTimeoutError(
                        f"the actor for action {sub.name!r} (job {job_id!r}) did not start within "
                        f"{timeout_s:g} s (timeout_s): Ray could not place it (its resources are "
                        "held by other work?) or its runtime env is still being set up",
                        job_id=job_id,
                        reason=DEADLINE_EXCEEDED,
                        error_type="ExecutionTimeoutError",
                        error_message=DEADLINE_EXCEEDED,
                    ) from None
            ref = actor.run.remote(ActionCall(sub.target, sub.params, job_id).pack())
            self._sent(sent, sub, first)  # while the call is in flight: costs the caller nothing
            return sub, unpack_result(self._ray.get(ref, timeout=timeout_s))
        except Exception as exc:
            if timeout_s is not None and isinstance(exc, self._ray.exceptions.GetTimeoutError):
                self._forget(actor)  # kills it: the action must not run on past its deadline
                raise deadline_error(job_id, timeout_s, sub.name) from None
            error = to_raydrive_error(exc, action=sub.name, job_id=job_id, address=self.address)
            if getattr(error, "error_type", None) == "RuntimeEnvSetupError":
                self.forget_uploads()
                self._forget(actor)
            elif is_actor_death(error):
                self._forget(actor)
            if error is exc:
                raise
            raise error from exc

    def _sent(self, sent: list[str], sub: Submission, first: bool) -> None:
        if not sent:
            sent.append(sub.name)
            if first:
                self._emit_submitted(sub.job_id, sub.name)

    def _policy(self, action_cls: Any, sub: Submission | None = None) -> RetryPolicy:
        prepared = sub.action if sub is not None else self.action(action_cls)
        policy = self._policies.get(prepared.entrypoint)
        if policy is None:
            # Class attributes count only where the class imports here; options win over them.
            policy = self._policies[prepared.entrypoint] = RetryPolicy.resolve(self.options, prepared.cls)
        return policy

    def _remember(self, job_id: str, attempts: list[Attempt]) -> None:
        with self._state_lock:
            self._attempts[job_id] = list(attempts)
            self._attempts.move_to_end(job_id)
            while len(self._attempts) > KEPT_ATTEMPTS:
                self._attempts.popitem(last=False)

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
            launcher = remote_action_actor().options(**options)
            actor = self.bounded("actor creation", launcher.remote, sub.runtime.env)
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
