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
import sys
from collections.abc import Mapping
from typing import Any, ClassVar, Generic, TypeVar, get_args, get_origin

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from raydrive.core.context import (
    ActionEnvironment,
    ActionLogger,
    LoggingSink,
    LogLevel,
    ProgressSink,
    RuntimeContext,
)
from raydrive.core.errors import ActionImportError, ExecutionError, ValidationError

__all__ = [
    "ActionEnvironment",
    "ActionLogger",
    "BaseAction",
    "LogLevel",
    "LoggingSink",
    "ProgressSink",
    "RuntimeContext",
    "action_name",
    "require_action",
    "resolve_action",
    "run_action",
    "to_jsonable",
    "validate_params",
]

P = TypeVar("P", bound=BaseModel)


class BaseAction(Generic[P]):
    """Base class of plugin actions. Subclass as ``BaseAction[MyParams]`` and implement execute().

    :cvar params_model: the pydantic model of the params, taken from the generic argument.
    :cvar result_model: optional pydantic model that ``run()`` validates the result against.
    :cvar name: the action's name in pipelines and logs; defaults to the class name. The
        reference SDK's ``action_name`` class attribute is accepted as well.

    The reference SDK's reporting methods are here too (``set_progress``, ``set_metrics``,
    ``log``, ``log_message``, ``log_metric``, ``log_visualization``): they go to the same sink as
    ``self.logger``'s.
    """

    params_model: ClassVar[type[BaseModel]]
    result_model: ClassVar[type[BaseModel] | None] = None
    name: ClassVar[str]
    action_name: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        model = _params_model_of(cls)
        if model is not None:
            cls.params_model = model
        if "name" not in cls.__dict__:
            declared = cls.__dict__.get("action_name")
            cls.name = declared if isinstance(declared, str) and declared else cls.__name__
        if not isinstance(cls.__dict__.get("action_name"), str):
            cls.action_name = cls.name

    def __init__(self, params: P, ctx: RuntimeContext | None = None) -> None:
        self.params = params
        self.ctx = ctx or RuntimeContext()

    @property
    def logger(self) -> ActionLogger:
        return self.ctx.logger

    # --- the reference SDK's reporting methods (same sink as self.logger) -----------------------
    def set_progress(
        self, current: float, total: float, step: str | None = None, *, category: str | None = None
    ) -> None:
        """Report progress; ``category`` is the deprecated name of ``step``."""
        self.ctx.logger.set_progress(current, total, step, category=category)

    def set_metrics(self, value: Mapping[str, Any], step: str | int | None = None) -> None:
        self.ctx.logger.set_metrics(value, step)

    def log(self, event: str, data: Mapping[str, Any] | Any, file: str | None = None) -> None:
        self.ctx.logger.log(event, data, file)

    def log_message(self, message: str, level: LogLevel | str = LogLevel.INFO, **kwargs: Any) -> None:
        self.ctx.logger.log_message(message, level, **kwargs)

    def log_metric(self, category: str, key: str, value: Any, **metrics: Any) -> None:
        self.ctx.logger.log_metric(category, key, value, **metrics)

    def log_visualization(self, category: str, group: str, index: int, image: Any, **meta: Any) -> None:
        self.ctx.logger.log_visualization(category, group, index, image, **meta)

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


def require_action(action: Any) -> Any:
    """The one check every driver makes before submitting anything: ``action`` is a BaseAction
    subclass or a well-formed entrypoint string ``package.module.Class``; returned unchanged.

    A string is not imported here (the worker may import what the caller cannot).

    :raises ActionImportError: a class that is not a BaseAction, or neither a class nor an
        entrypoint string.
    """
    if isinstance(action, type):
        if not issubclass(action, BaseAction):
            raise ActionImportError(
                f"{action.__module__}.{action.__qualname__}",
                "not a BaseAction subclass (subclass raydrive.BaseAction[Params])",
            )
        return action
    if not isinstance(action, str) or not action.strip():
        raise ActionImportError(repr(action)[:200], "expected a BaseAction subclass or 'module.Class'")
    module_name, sep, _ = action.replace(":", ".").rpartition(".")
    if not sep or not module_name:
        raise ActionImportError(action, "expected 'package.module.Class'")
    return action


def resolve_action(action: type[BaseAction] | str) -> type[BaseAction]:
    """Return the action class for a class or an entrypoint string ``package.module.Class``.

    ``module:Class`` is accepted too. Raises ActionImportError naming the entrypoint and why,
    whatever the module raised while it was imported (``RuntimeError`` at module level too).
    """
    require_action(action)
    if isinstance(action, type):
        return action
    module_name, _, attr = action.replace(":", ".").rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # a module may raise anything at import: the user's code
        reason = f"importing {module_name!r} raised {type(exc).__name__}: {exc}"
        raise ActionImportError(action, reason) from exc
    obj = getattr(module, attr, None)
    if obj is None:
        raise ActionImportError(action, f"module {module_name!r} has no attribute {attr!r}")
    if not (isinstance(obj, type) and issubclass(obj, BaseAction)):
        raise ActionImportError(action, _NOT_AN_ACTION)
    return obj


_NOT_AN_ACTION = "not a BaseAction subclass"


def try_resolve_action(action: type[BaseAction] | str) -> type[BaseAction] | None:
    """Resolve ``action`` if it can be imported here, else None (the worker will import it).

    A class that is not a BaseAction, a malformed entrypoint, or an entrypoint that imports here
    and names something that is not a BaseAction subclass is refused here (ActionImportError); a
    module that fails to import here, or lacks the name, is left for the worker to import (the
    cluster may have other code: a working dir, other packages).
    """
    require_action(action)
    try:
        return resolve_action(action)
    except ActionImportError as exc:
        if exc.reason == _NOT_AN_ACTION:
            raise
        return None


def action_name(action: type[BaseAction] | str) -> str:
    """A display name: the class's ``name`` or the entrypoint's last part."""
    if isinstance(action, type):
        return getattr(action, "name", action.__name__)
    if not isinstance(action, str):
        return repr(action)[:200]
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


def to_jsonable(value: Any, *, action: str | None = None, job_id: str | None = None) -> Any:
    """An action's result as JSON data: the one rule of every driver.

    pydantic's JSON mode (``pydantic_core.to_jsonable_python``) decides: models are dumped in
    JSON mode, ``datetime`` / ``date`` / ``UUID`` / ``Decimal`` / ``Path`` / ``Enum`` become strings,
    tuples lists, dict keys strings, ``bytes`` UTF-8 text. What has no JSON form (a ``set``, which
    has no order either; ``object()``, numpy arrays and scalars, open files...) raises
    ExecutionError naming the offending type (call ``.tolist()`` / ``.item()`` on numpy values first).
    """
    if value is None or type(value) in _PLAIN:
        return value  # the common case costs nothing
    from pydantic_core import PydanticSerializationError, to_jsonable_python

    try:
        _refuse_sets(value)
        return to_jsonable_python(value)
    except (PydanticSerializationError, ValueError, TypeError, RecursionError) as exc:
        where = f"action {action!r}" if action else "the action"
        raise ExecutionError(
            f"the result of {where} is not JSON data: {exc} (results must be JSON data or "
            "pydantic models; convert the value, e.g. numpy arrays with .tolist())",
            error_type="ResultSerializationError",
            error_message=str(exc),
            job_id=job_id,
        ) from None


_PLAIN = (str, int, float, bool)


def _refuse_sets(value: Any) -> None:
    # A set has no JSON form and no order: pydantic would make it a list in iteration order, so
    # the same action could give different results from run to run. Refuse it, as json.dumps does.
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, (set, frozenset)):
            kind = type(item).__name__
            raise TypeError(f"Object of type {kind} is not JSON serializable (return a sorted list)")
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)


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
    ctx = RuntimeContext(job_id=job_id, env=ActionEnvironment(env), logger=ActionLogger(sink))
    try:
        result = action_cls(validated, ctx).run()
    except Exception as exc:
        raise ExecutionError.from_exception(exc, action=action_name(action_cls), job_id=job_id) from exc
    return to_jsonable(result, action=action_name(action_cls), job_id=job_id)


def ensure_on_path(path: str | None) -> None:
    """Put a working directory first on ``sys.path`` so its modules import (local driver, jobs)."""
    if path and path not in sys.path:
        sys.path.insert(0, path)
