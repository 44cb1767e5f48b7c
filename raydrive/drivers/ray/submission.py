"""The one submission step of every Ray driver: ``(action, params, options, hooks)`` -> :class:`Submission`.

Each driver owns a :class:`Submitter` and calls :meth:`Submitter.prepare` (or its parts, for
work that has no job of its own), then only *sends* the :class:`Submission` its own way: an
actor call (ray-actor), a pooled task or a fresh actor through the job registry (ray-job), a
Ray Job (ray-jobs-api), the pipeline actor (ray-pipeline). A third-party driver does the same.

What the step does, once per submission and in this order:

1. **Action**: checked to be a BaseAction subclass or a ``module.Class`` string
   (:func:`~raydrive.core.action.require_action`), resolved here when importable (cached per
   executor), and turned into its wire target (:func:`wire_target`): the entrypoint string, or
   the class itself when it cannot be imported by name (defined in ``__main__`` or a function).
2. **Params**: validated here when the class is importable (the worker validates again either
   way) and wired as plain data (JSON data for drivers whose payload is JSON).
3. **Resources**: the options, then the resources hooks, once; then a feasibility check against
   the cluster's alive nodes, so a request no node can ever hold fails at once with
   InfeasibleResourcesError instead of pending for ever (cached per distinct request).
4. **Runtime env**: built by the executor's one :class:`~raydrive.core.runtime_env.RuntimeEnvBuilder`
   (working dir zipped and uploaded once); its ``env`` (variables and secrets) stays apart from the
   ``runtime_env`` that Ray and its dashboard show.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from raydrive.core.action import (
    action_entrypoint,
    action_name,
    require_action,
    resolve_action,
    try_resolve_action,
    validate_params,
)
from raydrive.core.errors import ValidationError
from raydrive.core.options import DriverOptions
from raydrive.core.plugins import PluginManager
from raydrive.core.policy_types import ResourceRequest
from raydrive.core.runtime_env import BuiltRuntimeEnv, RuntimeEnvBuilder
from raydrive.drivers.ray.resources import check_feasible, resource_request

__all__ = ["PreparedAction", "Submission", "Submitter", "wire_params", "wire_target"]

_MAX_CACHED_ACTIONS = 1024


def wire_target(action: Any, resolved: type | None) -> Any:
    """What to send a worker for ``action``: ``module.Class`` when importable by name, else the class.

    A string makes the worker's import error an ActionImportError naming the entrypoint; a class
    from ``__main__``, a function body or a module that was never imported (code run by ``exec``,
    such as the documentation's examples) cannot be imported by name, so it travels by value.
    """
    if isinstance(action, str):
        return action
    cls = resolved or action
    module = cls.__module__
    if module == "__main__" or "<locals>" in cls.__qualname__ or sys.modules.get(module) is None:
        return cls
    return action_entrypoint(cls)


def wire_params(params: Mapping[str, Any] | BaseModel) -> Any:
    """Params as plain data for the worker (a pydantic model is dumped; the worker re-validates)."""
    if isinstance(params, BaseModel):
        return params.model_dump()
    return params


@dataclass(frozen=True, slots=True)
class PreparedAction:
    """An action as one executor resolved it: made once per action, reused by every submission.

    :ivar cls: the class when importable here, else None (it may import only on the cluster).
    :ivar name: the display name (lifecycle events, logs, resources hooks).
    :ivar target: what travels to the worker (:func:`wire_target`).
    :ivar entrypoint: ``module.Class``, for records and messages.
    """

    cls: type | None
    name: str
    target: Any
    entrypoint: str
    validator: Callable[[Any], Any] | None = None

    def wire(self, params: Mapping[str, Any] | BaseModel, *, json_data: bool = False) -> Any:
        """Validate ``params`` (when the class is known here) and return them as wire data.

        :param json_data: return JSON data (the params model's JSON mode), for JSON payloads.
        :raises ValidationError: the params do not fit the action's params model, or (with
            ``json_data``) they are not JSON data and no model here can make them so.
        """
        if json_data:
            return self._json_params(params)
        if self.validator is not None:
            try:
                self.validator(params)  # pydantic-core directly: the common, valid case
            except Exception:
                validate_params(self.cls, params)  # type: ignore[arg-type]  # raises, naming fields
        elif self.cls is not None:
            validate_params(self.cls, params)
        return params if type(params) is dict else wire_params(params)

    def _json_params(self, params: Mapping[str, Any] | BaseModel) -> Any:
        if self.cls is not None:
            validated = validate_params(self.cls, params)
            if isinstance(params, BaseModel) or not _is_json(params):
                return validated.model_dump(mode="json", by_alias=True)
            return params
        if isinstance(params, BaseModel):
            return params.model_dump(mode="json", by_alias=True)
        if not _is_json(params):
            raise ValidationError(
                "params must be JSON-serializable when the action cannot be imported here "
                "(dates, paths... are turned into JSON by its params model when it can be)",
            )
        return params


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


@dataclass(frozen=True, slots=True)
class Submission:
    """One job, ready to send: typed and immutable.

    :ivar job_id: the id the user holds.
    :ivar action: the prepared action (name, target, class).
    :ivar params: the wired params (plain data; secrets included: never log them).
    :ivar resources: the request after the hooks and the feasibility check; None when the job
        goes to a process that is already placed (ray-actor's warm actor).
    :ivar runtime: the built runtime env (``runtime_env`` for Ray, ``env`` with the secrets to
        pass by argument); None when no process starts for the job.
    """

    job_id: str
    action: PreparedAction
    params: Any
    resources: ResourceRequest | None = None
    runtime: BuiltRuntimeEnv | None = None

    @property
    def name(self) -> str:
        return self.action.name

    @property
    def target(self) -> Any:
        return self.action.target

    def __repr__(self) -> str:  # params and the runtime's env may hold secrets
        return f"Submission(job_id={self.job_id!r}, action={self.action.name!r})"


NodesFn = Callable[[], Sequence[Mapping[str, float]]]
"""Returns the alive nodes' resource totals (``{"CPU": 4.0, "GPU": 1.0, ...}``)."""


class Submitter:
    """The submission step of one executor; see the module docstring for what it does.

    :param driver: the driver's name (errors name it).
    :param options: the executor's options (resources, runtime env fields).
    :param plugins: the plugin manager whose hooks apply (resources, runtime env, secrets).
    :param default_cpus: the CPUs Ray reserves when ``num_cpus`` is not given, for the feasibility
        check (1 for a task, 0 for a Jobs API entrypoint, which reserves nothing by default).
    """

    def __init__(
        self,
        driver: str,
        options: DriverOptions,
        plugins: PluginManager | None,
        *,
        default_cpus: float = 1.0,
    ) -> None:
        self.driver = driver
        self.options = options
        self._plugins = plugins
        self.default_cpus = default_cpus
        self.builder = RuntimeEnvBuilder(options, plugins)  # type: ignore[arg-type]
        self._actions: dict[Any, PreparedAction] = {}
        self._feasible: set[tuple[Any, ...]] = set()
        self._lock = threading.Lock()

    @property
    def plugins(self) -> PluginManager:
        from raydrive.core.plugins import get_plugin_manager

        return self._plugins or get_plugin_manager()

    # --- the parts ----------------------------------------------------------------------------
    def action(self, action: Any) -> PreparedAction:
        """The prepared action (cached per executor: the warm path is one dict lookup).

        :raises ActionImportError: a class that is not a BaseAction subclass, or neither a class
            nor a well-formed entrypoint string.
        """
        try:
            return self._actions[action]
        except (KeyError, TypeError):  # TypeError: an unhashable value, refused just below
            pass
        require_action(action)
        cls = resolve_action(action) if not isinstance(action, str) else try_resolve_action(action)
        model = getattr(cls, "params_model", None)
        core = getattr(model, "__pydantic_validator__", None)
        prepared = PreparedAction(
            cls=cls,
            name=action_name(cls or action),
            target=wire_target(action, cls),
            entrypoint=action_entrypoint(cls or action),
            validator=getattr(core, "validate_python", None),
        )
        if len(self._actions) < _MAX_CACHED_ACTIONS:
            self._actions[action] = prepared
        return prepared

    def resources(self, name: str, nodes: NodesFn, *, required: bool = True) -> ResourceRequest:
        """The resource request for ``name`` after the hooks, checked feasible against ``nodes()``.

        :param required: False when Ray reserves nothing unless asked (a Jobs API entrypoint):
            an empty request is then feasible without asking the cluster.
        :raises InfeasibleResourcesError: no alive node's totals can hold the request.
        :raises ResourceVetoError: a resources hook refused the request.
        """
        request = resource_request(self.options, name, self.plugins)  # type: ignore[arg-type]
        if not required and not (request.num_cpus or request.num_gpus or request.memory or request.resources):
            return request
        key = (request.num_cpus, request.num_gpus, request.memory, tuple(sorted(request.resources.items())))
        if key not in self._feasible:
            check_feasible(request, list(nodes()), default_cpus=self.default_cpus, action=name)
            self._feasible.add(key)
        return request

    def forget_cluster(self) -> None:
        """Forget what was checked against the cluster (another cluster, or the same restarted)."""
        self._feasible.clear()

    def build_runtime_env(self, os_environ: Mapping[str, str] | None = None) -> BuiltRuntimeEnv:
        """Build the runtime env (one build at a time: the builder caches the working-dir zip)."""
        with self._lock:
            return self.builder.build(package=True, os_environ=os_environ)

    # --- the whole step -----------------------------------------------------------------------
    def prepare(
        self,
        action: Any,
        params: Mapping[str, Any] | BaseModel,
        *,
        job_id: str,
        nodes: NodesFn | None = None,
        runtime: Callable[[], BuiltRuntimeEnv] | None = None,
        json_params: bool = False,
        resources_required: bool = True,
    ) -> Submission:
        """Steps 1-4 for one job (see the module docstring).

        :param nodes: the cluster's alive nodes, for resources; None: no process is placed for
            this job (no resources step).
        :param runtime: builds (and uploads) the runtime env; None: no process starts for this job.
        """
        prepared = self.action(action)
        wired = prepared.wire(params, json_data=json_params)
        request = (
            self.resources(prepared.name, nodes, required=resources_required) if nodes is not None else None
        )
        return Submission(job_id, prepared, wired, request, runtime() if runtime is not None else None)
