"""The action model: ``BaseAction[Params]``, the runtime context and its logger.

An action is a class with a pydantic params model taken from its generic argument::

    class TrainParams(BaseModel):
        epochs: int = 1

    class TrainAction(BaseAction[TrainParams]):
        result_model = TrainResult          # optional

        def execute(self) -> TrainResult:
            for epoch in range(self.params.epochs):
                self.ctx.logger.set_progress(epoch + 1, self.params.epochs, step="train")
            return TrainResult(loss=0.1)

Every driver resolves, validates and runs an action through the functions of this module, so
``ValidationError`` and ``ExecutionError`` mean the same thing whichever driver ran it.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Protocol, TypeVar, get_args, get_origin

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from raydrive.core.errors import ActionImportError, ExecutionError, ValidationError

__all__ = [
    "ActionLogger",
    "BaseAction",
    "ProgressSink",
    "RuntimeContext",
    "action_name",
    "resolve_action",
    "run_action",
    "to_jsonable",
    "validate_params",
]

P = TypeVar("P", bound=BaseModel)

_log = logging.getLogger("raydrive.action")


class ProgressSink(Protocol):
    """Where an action's log lines, progress and metrics go; each driver supplies its own."""

    def log(self, level: str, message: str) -> None: ...

    def progress(self, current: float, total: float, step: str | None) -> None: ...

    def metrics(self, values: Mapping[str, Any], step: str | int | None) -> None: ...


class LoggingSink:
    """Default sink: Python logging under ``raydrive.action``."""

    def log(self, level: str, message: str) -> None:
        _log.log(logging.getLevelName(level.upper()), message)

    def progress(self, current: float, total: float, step: str | None) -> None:
        _log.info("progress %s/%s%s", current, total, f" ({step})" if step else "")

    def metrics(self, values: Mapping[str, Any], step: str | int | None) -> None:
        _log.info("metrics %s%s", dict(values), f" at step {step}" if step is not None else "")


class ActionLogger:
    """What an action reports while it runs: log lines, progress and metrics."""

    def __init__(self, sink: ProgressSink | None = None) -> None:
        self._sink = sink or LoggingSink()

    def info(self, message: str) -> None:
        self._sink.log("info", message)

    def warning(self, message: str) -> None:
        self._sink.log("warning", message)

    def error(self, message: str) -> None:
        self._sink.log("error", message)

    def set_progress(self, current: float, total: float, step: str | None = None) -> None:
        """Report ``current`` of ``total`` units done, optionally naming the step."""
        self._sink.progress(current, total, step)

    def set_metrics(self, values: Mapping[str, Any], step: str | int | None = None) -> None:
        """Report metric values (e.g. ``{"loss": 0.1}``) for a step."""
        self._sink.metrics(values, step)


@dataclass
class RuntimeContext:
    """What an action sees of where it runs: its job id, environment and logger."""

    job_id: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    logger: ActionLogger = field(default_factory=ActionLogger)

    def __repr__(self) -> str:
        # The environment may carry credentials: show only its keys.
        return f"RuntimeContext(job_id={self.job_id!r}, env_keys={sorted(self.env)!r})"


class BaseAction(Generic[P]):
    """Base class of plugin actions. Subclass as ``BaseAction[MyParams]`` and implement execute().

    :cvar params_model: the pydantic model of the params, taken from the generic argument.
    :cvar result_model: optional pydantic model that ``run()`` validates the result against.
    :cvar name: the action's name in pipelines and logs; defaults to the class name.
    """

    params_model: ClassVar[type[BaseModel]]
    result_model: ClassVar[type[BaseModel] | None] = None
    name: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        model = _params_model_of(cls)
        if model is not None:
            cls.params_model = model
        if "name" not in cls.__dict__:
            cls.name = cls.__name__

    def __init__(self, params: P, ctx: RuntimeContext | None = None) -> None:
        self.params = params
        self.ctx = ctx or RuntimeContext()

    @property
    def logger(self) -> ActionLogger:
        return self.ctx.logger

    def execute(self) -> Any:
        """Do the action's work and return its result (a dict, a pydantic model or None)."""
        raise NotImplementedError(f"{type(self).__name__}.execute() is not implemented")

    def run(self) -> Any:
        """Execute, then check the result against ``result_model`` when there is one."""
        result = self.execute()
        if self.result_model is not None and not isinstance(result, self.result_model):
            result = self.result_model.model_validate(
                result.model_dump() if isinstance(result, BaseModel) else result
            )
        return result


def _params_model_of(cls: type) -> type[BaseModel] | None:
    for klass in cls.__mro__:
        for base in getattr(klass, "__orig_bases__", ()):
            origin = get_origin(base)
            if isinstance(origin, type) and issubclass(origin, BaseAction):
                args = get_args(base)
                if args and isinstance(args[0], type) and issubclass(args[0], BaseModel):
                    return args[0]
    return None


def resolve_action(action: type[BaseAction] | str) -> type[BaseAction]:
    """Return the action class for a class or an entrypoint string ``package.module.Class``.

    ``module:Class`` is accepted too. Raises ActionImportError naming the entrypoint and why.
    """
    if isinstance(action, type):
        if not issubclass(action, BaseAction):
            raise ActionImportError(action.__qualname__, "not a BaseAction subclass")
        return action
    if not isinstance(action, str) or not action.strip():
        raise ActionImportError(repr(action), "expected a BaseAction subclass or 'module.Class'")
    module_name, sep, attr = action.replace(":", ".").rpartition(".")
    if not sep or not module_name:
        raise ActionImportError(action, "expected 'package.module.Class'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ActionImportError(action, f"{type(exc).__name__}: {exc}") from exc
    obj = getattr(module, attr, None)
    if obj is None:
        raise ActionImportError(action, f"module {module_name!r} has no attribute {attr!r}")
    if not (isinstance(obj, type) and issubclass(obj, BaseAction)):
        raise ActionImportError(action, "not a BaseAction subclass")
    return obj


def try_resolve_action(action: type[BaseAction] | str) -> type[BaseAction] | None:
    """Resolve ``action`` if it can be imported here, else None (the worker will import it)."""
    try:
        return resolve_action(action)
    except ActionImportError:
        return None


def action_name(action: type[BaseAction] | str) -> str:
    """A display name: the class's ``name`` or the entrypoint's last part."""
    if isinstance(action, type):
        return getattr(action, "name", action.__name__)
    return action.replace(":", ".").rpartition(".")[2]


def action_entrypoint(action: type[BaseAction] | str) -> str:
    """The ``module.Class`` string that a worker imports for ``action``."""
    if isinstance(action, str):
        return action
    return f"{action.__module__}.{action.__qualname__}"


def validate_params(action_cls: type[BaseAction], params: Mapping[str, Any] | BaseModel) -> Any:
    """Validate ``params`` against the action's params model; raise ValidationError naming fields."""
    model = getattr(action_cls, "params_model", None)
    if model is None:
        raise ValidationError(
            f"action {action_cls.__name__!r} declares no params model (subclass BaseAction[Params])",
            action=action_cls.__name__,
        )
    if isinstance(params, model):
        return params
    if isinstance(params, BaseModel):
        params = params.model_dump()
    try:
        return model.model_validate(params)
    except PydanticValidationError as exc:
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        fields = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<params>'}: {e['msg']}" for e in errors)
        raise ValidationError(
            f"invalid params for action {action_name(action_cls)!r}: {fields}",
            action=action_name(action_cls),
            errors=errors,
        ) from None


def to_jsonable(value: Any) -> Any:
    """Turn an action's result into plain JSON data (pydantic models are dumped in JSON mode)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    return value


def run_action(
    action: type[BaseAction] | str,
    params: Mapping[str, Any],
    *,
    job_id: str | None = None,
    env: Mapping[str, str] | None = None,
    sink: ProgressSink | None = None,
) -> Any:
    """Resolve, validate and run an action where it is to run; return its JSON-able result.

    This is the one place every driver runs an action. Raises ActionImportError or
    ValidationError unchanged, and ExecutionError (with the traceback) for anything the action
    raises. ``KeyboardInterrupt`` and ``SystemExit`` are never swallowed.
    """
    action_cls = resolve_action(action)
    validated = validate_params(action_cls, params)
    ctx = RuntimeContext(job_id=job_id, env=dict(env or {}), logger=ActionLogger(sink))
    try:
        result = action_cls(validated, ctx).run()
    except Exception as exc:
        raise ExecutionError.from_exception(exc, action=action_name(action_cls), job_id=job_id) from exc
    return to_jsonable(result)


def ensure_on_path(path: str | None) -> None:
    """Put a working directory first on ``sys.path`` so its modules import (local driver, jobs)."""
    if path and path not in sys.path:
        sys.path.insert(0, path)
