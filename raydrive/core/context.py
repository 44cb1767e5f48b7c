"""What an action sees while it runs: its context, environment, logger and the sinks behind them.

The surface matches the reference SDK's ``BaseAction`` / ``RuntimeContext`` (the guide's names),
so an action written for it runs here with only its imports changed:

- the logger: ``debug / info / warning / error / critical``, ``set_progress``, ``set_metrics``,
  ``log(event, data, file=None)``, ``log_message``, ``log_metric``, ``log_visualization``;
- the context: the same reporting methods, delegated to its logger, ``env``, a read-only
  mapping with typed getters (``get_str``, ``get_int``, ``get_float``, ``get_bool``, ``get_list``),
  and ``client``, the backend client a plugin provides (the ``raydrive_context_client`` hook).

Everything goes to one :class:`ProgressSink` per run, the driver's: progress, metrics, log lines
and events reported through the action, its context or its logger end up in the same place.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

from raydrive.core.errors import RaydriveError, ValidationError

__all__ = [
    "ActionEnvironment",
    "ActionLogger",
    "ContextClientError",
    "LogLevel",
    "LoggingSink",
    "ProgressSink",
    "RuntimeContext",
]

_log = logging.getLogger("raydrive.action")


class LogLevel(str, Enum):
    """Level of a log message (``log_message(msg, level=LogLevel.WARNING)``); a ``str`` enum."""

    DEBUG = "debug"
    INFO = "info"
    SUCCESS = "success"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"

    def __str__(self) -> str:
        return self.value


def _level_name(level: LogLevel | str | int) -> str:
    if isinstance(level, LogLevel):
        return level.value
    if isinstance(level, int):
        return logging.getLevelName(level).lower()
    name = str(level).lower()
    return "warning" if name == "warn" else name


class ProgressSink(Protocol):
    """Where an action's log lines, progress and metrics go; each driver supplies its own.

    A sink may also have ``event(event, data, file)`` for structured events (``log``,
    ``log_visualization``); one without it gets them as an info line of JSON.
    """

    def log(self, level: str, message: str) -> None: ...

    def progress(self, current: float, total: float, step: str | None) -> None: ...

    def metrics(self, values: Mapping[str, Any], step: str | int | None) -> None: ...


class LoggingSink:
    """Default sink: Python logging under ``raydrive.action``."""

    def log(self, level: str, message: str) -> None:
        number = logging.getLevelName(level.upper())
        _log.log(number if isinstance(number, int) else logging.INFO, message)

    def progress(self, current: float, total: float, step: str | None) -> None:
        _log.info("progress %s/%s%s", current, total, f" ({step})" if step else "")

    def metrics(self, values: Mapping[str, Any], step: str | int | None) -> None:
        _log.info("metrics %s%s", dict(values), f" at step {step}" if step is not None else "")

    def event(self, event: str, data: Mapping[str, Any], file: str | None) -> None:
        _log.info("event %s %s%s", event, _dumps(data), f" file={file}" if file else "")


def _dumps(data: Any) -> str:
    from pydantic_core import to_jsonable_python

    try:
        return json.dumps(to_jsonable_python(data, fallback=repr), default=repr)
    except Exception:
        return repr(data)


class ActionLogger:
    """What an action reports while it runs: log lines, progress, metrics and events."""

    def __init__(self, sink: ProgressSink | None = None) -> None:
        self._sink = sink or LoggingSink()

    @property
    def sink(self) -> ProgressSink:
        return self._sink

    # --- log lines ------------------------------------------------------------------------------
    def debug(self, message: str) -> None:
        self._sink.log("debug", message)

    def info(self, message: str) -> None:
        self._sink.log("info", message)

    def warning(self, message: str) -> None:
        self._sink.log("warning", message)

    def error(self, message: str) -> None:
        self._sink.log("error", message)

    def critical(self, message: str) -> None:
        self._sink.log("critical", message)

    def log_message(self, message: str, level: LogLevel | str = LogLevel.INFO, **kwargs: Any) -> None:
        """A log line at ``level``; extra keyword arguments are appended as JSON."""
        text = str(message) if not kwargs else f"{message} {_dumps(kwargs)}"
        self._sink.log(_level_name(level), text)

    # --- progress and metrics -------------------------------------------------------------------
    def set_progress(
        self, current: float, total: float, step: str | None = None, *, category: str | None = None
    ) -> None:
        """Report ``current`` of ``total`` units done, optionally naming the step.

        ``category`` is the reference SDK's older name of ``step`` (deprecated; a warning says so).
        """
        if category is not None:
            warnings.warn(
                "set_progress(category=...) is deprecated; use step=...", DeprecationWarning, stacklevel=2
            )
            step = step if step is not None else category
        self._sink.progress(current, total, step)

    def set_metrics(self, value: Mapping[str, Any], step: str | int | None = None) -> None:
        """Report metric values (e.g. ``{"loss": 0.1}``) for a step."""
        if not isinstance(value, Mapping):
            kind = type(value).__name__
            raise ValidationError(f"set_metrics expects a mapping of metric values, got {kind}")
        self._sink.metrics(value, step)

    def log_metric(self, category: str, key: str, value: Any, **metrics: Any) -> None:
        """One metric ``key = value`` (plus any others given by keyword) under ``category``."""
        self._sink.metrics({key: value, **metrics}, category)

    # --- events ---------------------------------------------------------------------------------
    def log(self, event: str, data: Mapping[str, Any] | Any, file: str | None = None) -> None:
        """A structured event (the reference's ``log(event, data, file=None)``)."""
        payload = dict(data) if isinstance(data, Mapping) else {"value": data}
        emit = getattr(self._sink, "event", None)
        if emit is not None:
            emit(str(event), payload, file)
        else:
            suffix = f" file={file}" if file else ""
            self._sink.log("info", f"{event} {_dumps(payload)}{suffix}")

    def log_visualization(self, category: str, group: str, index: int, image: Any, **meta: Any) -> None:
        """A visualization (an image path or URL) for ``category`` / ``group`` at ``index``."""
        data = {"category": category, "group": group, "index": index, "image": str(image), **meta}
        self.log("visualization", data, file=str(image))


class ActionEnvironment(Mapping[str, str]):
    """The action's environment: a read-only mapping with the reference's typed getters.

    Its ``repr`` shows the keys only, since values may be credentials.
    """

    _TRUE = frozenset({"1", "true", "yes", "on", "y", "t"})
    _FALSE = frozenset({"0", "false", "no", "off", "n", "f", ""})

    def __init__(self, values: Mapping[str, str] | None = None) -> None:
        self._values = dict(values or {})

    def __getitem__(self, key: str) -> str:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"ActionEnvironment(keys={sorted(self._values)!r})"

    def to_dict(self) -> dict[str, str]:
        return dict(self._values)

    def get_str(self, key: str, default: str | None = None) -> str | None:
        return self._values.get(key, default)

    def _typed(self, key: str, default: Any, kind: str, convert: Any) -> Any:
        raw = self._values.get(key)
        if raw is None:
            return default
        try:
            return convert(raw.strip())
        except (TypeError, ValueError):
            raise ValidationError(f"environment variable {key!r} is not a valid {kind}") from None

    def get_int(self, key: str, default: int | None = None) -> int | None:
        return self._typed(key, default, "int", int)

    def get_float(self, key: str, default: float | None = None) -> float | None:
        return self._typed(key, default, "float", float)

    def get_bool(self, key: str, default: bool | None = None) -> bool | None:
        def convert(text: str) -> bool:
            lowered = text.lower()
            if lowered in self._TRUE:
                return True
            if lowered in self._FALSE:
                return False
            raise ValueError(text)

        return self._typed(key, default, "bool", convert)

    def get_list(self, key: str, default: list[str] | None = None, sep: str = ",") -> list[str] | None:
        """A list from a ``sep``-separated value (blank items dropped)."""
        return self._typed(key, default, "list", lambda t: [p.strip() for p in t.split(sep) if p.strip()])


class ContextClientError(RaydriveError, AttributeError):
    """``ctx.client`` was read and no plugin provides a client (or the plugin failed).

    An ``AttributeError`` too, so ``getattr(ctx, "client", None)`` and ``hasattr`` work as for a
    missing attribute.
    """


@dataclass
class RuntimeContext:
    """What an action sees of where it runs: its job id, environment, logger and backend client."""

    job_id: str | None = None
    env: Mapping[str, str] = field(default_factory=ActionEnvironment)
    logger: ActionLogger = field(default_factory=ActionLogger)
    _client: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.env, ActionEnvironment):
            self.env = ActionEnvironment(self.env)

    @property
    def client(self) -> Any:
        """The backend client (the reference SDK's ``ctx.client``), from the first plugin whose
        ``raydrive_context_client(env)`` hook answers; asked once per run, on first use.

        :raises ContextClientError: no plugin provides one, or the hook failed.
        """
        if self._client is None:
            from raydrive.core.plugins import get_plugin_manager

            try:
                client = get_plugin_manager().context_client(self.env)
            except Exception as exc:
                raise ContextClientError(
                    f"the raydrive_context_client hook failed: {type(exc).__name__}: {exc}"
                ) from exc
            if client is None:
                raise ContextClientError(
                    "ctx.client: no plugin provides a backend client; install or register a plugin "
                    "that implements the raydrive_context_client(env) hook (see docs/secrets.md)"
                )
            self._client = client
        return self._client

    def __repr__(self) -> str:
        # The environment may carry credentials: show only its keys.
        return f"RuntimeContext(job_id={self.job_id!r}, env_keys={sorted(self.env)!r})"

    # The reference SDK reports through the context too: the same sink as the logger's.
    def set_progress(
        self, current: float, total: float, step: str | None = None, *, category: str | None = None
    ) -> None:
        self.logger.set_progress(current, total, step, category=category)

    def set_metrics(self, value: Mapping[str, Any], step: str | int | None = None) -> None:
        self.logger.set_metrics(value, step)

    def log(self, event: str, data: Mapping[str, Any] | Any, file: str | None = None) -> None:
        self.logger.log(event, data, file)

    def log_message(self, message: str, level: LogLevel | str = LogLevel.INFO, **kwargs: Any) -> None:
        self.logger.log_message(message, level, **kwargs)
