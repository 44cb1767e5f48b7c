"""What a pipeline run sends to the service: JSON snapshots taken at once, secrets masked.

Used by the pipeline actor (:mod:`.runner`) and by the submitter (the run's params are
registered masked). Only pydantic and the standard library are imported here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, get_args

from pydantic import BaseModel, SecretBytes, SecretStr

from raydrive.core.errors import ExecutionError
from raydrive.core.redaction import MASK, is_secret_key, redact, redact_text

__all__ = ["MAX_DEPTH", "SecretMasker", "restore_secrets", "secret_fields", "snapshot"]

#: The deepest JSON a report may carry: the pipeline service's body depth limit.
MAX_DEPTH = 64


def _too_deep(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping | list | tuple):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, Mapping) else item
            stack.extend((child, depth + 1) for child in children)
    return False


def snapshot(value: Any, what: str) -> Any:
    """A JSON copy of ``value`` taken now (later changes to ``value`` do not reach it).

    :raises ExecutionError: ``value`` is not JSON data (an object, a set: results have been
        through :func:`~raydrive.core.action.to_jsonable` already, params may not have) or is
        nested deeper than :data:`MAX_DEPTH`; the message names ``what`` and the offending type.
    """
    if _too_deep(value, MAX_DEPTH):
        raise ExecutionError(
            f"{what} is nested deeper than the serialization depth the pipeline service stores "
            f"({MAX_DEPTH} levels)",
            error_type="SerializationError",
        )
    try:
        return json.loads(json.dumps(value, default=_secret_value))
    except (TypeError, ValueError, RecursionError) as exc:
        raise ExecutionError(
            f"{what} is not JSON-serializable: {exc} (return dicts, lists, strings, numbers, "
            "booleans, None or pydantic models)",
            error_type="SerializationError",
            error_message=str(exc),
        ) from None


def _secret_value(value: Any) -> Any:
    # The caller's SecretStr params travel as such; their value is masked by SecretMasker after.
    if isinstance(value, SecretStr | SecretBytes):
        secret = value.get_secret_value()
        return secret.decode("utf-8", "replace") if isinstance(secret, bytes) else secret
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def secret_fields(models: list[type[BaseModel] | None]) -> set[str]:
    """Names of the params fields declared ``SecretStr`` / ``SecretBytes`` (also optional)."""
    names: set[str] = set()
    for model in models:
        for name, info in getattr(model, "model_fields", {}).items():
            annotation = info.annotation
            if annotation in (SecretStr, SecretBytes) or any(
                arg in (SecretStr, SecretBytes) for arg in get_args(annotation)
            ):
                names.add(name)
                if info.alias:
                    names.add(info.alias)
    return names


class SecretMasker:
    """Masks a run's secrets in what goes to the service.

    A key is secret when a params model declares it ``SecretStr`` / ``SecretBytes`` (``keys``) or
    its name looks secret (:func:`~raydrive.core.redaction.is_secret_key`). Besides the one
    redaction function, the values of those keys seen so far are masked wherever they appear in
    text (a log line or traceback that prints a secret param), as Airflow's masker does.
    """

    def __init__(self, keys: set[str] | None = None) -> None:
        self.keys = set(keys or ())
        self._values: list[str] = []
        # Reports repeat the same keys and short strings (names, statuses, times) every time:
        # caching the answers keeps masking off the per-action cost.
        self._key_cache: dict[Any, bool] = {}
        self._text_cache: dict[str, str] = {}

    def _secret(self, key: Any) -> bool:
        try:
            return self._key_cache[key]
        except (KeyError, TypeError):
            secret = key in self.keys or is_secret_key(key)
            if isinstance(key, str) and len(self._key_cache) < 4096:
                self._key_cache[key] = secret
            return secret

    def learn(self, params: Any) -> None:
        """Remember the secret values in ``params`` (a mapping, nested ones included)."""
        stack = [params]
        while stack:
            item = stack.pop()
            if isinstance(item, Mapping):
                for key, value in item.items():
                    if self._secret(key):
                        self._add(value)
                    stack.append(value)
            elif isinstance(item, list | tuple):
                stack.extend(item)

    def _add(self, value: Any) -> None:
        if isinstance(value, SecretStr | SecretBytes):
            value = value.get_secret_value()
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if isinstance(value, str) and len(value) >= 4 and value != MASK and value not in self._values:
            self._values.append(value)
            self._values.sort(key=len, reverse=True)  # the longest first: no partial masks
            self._text_cache.clear()
        elif isinstance(value, Mapping | list | tuple):
            for leaf in value.values() if isinstance(value, Mapping) else value:
                self._add(leaf)

    def text(self, text: str | None) -> str | None:
        """``text`` through :func:`redact_text`, with every known secret value masked."""
        if not text:
            return text
        cached = self._text_cache.get(text)
        if cached is not None:
            return cached
        out = redact_text(text)
        for value in self._values:
            out = out.replace(value, MASK)
        if len(text) <= 256 and len(self._text_cache) < 4096:
            self._text_cache[text] = out
        return out

    def data(self, value: Any) -> Any:
        """JSON data with secret keys masked and strings cleaned (the same shape)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {
                k: (MASK if self._secret(k) and v not in (None, "") else self.data(v))
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self.data(v) for v in value]
        return redact(value)


_MISSING = object()


def restore_secrets(stored: Any, given: Any) -> tuple[Any, list[str]]:
    """``stored`` (params as the service holds them, secrets masked) with each masked value taken
    from ``given`` (the caller's params) at the same place; returns it and the places missing."""
    missing: list[str] = []

    def walk(value: Any, fresh: Any, path: str) -> Any:
        if isinstance(value, str) and MASK in value:
            if fresh is _MISSING or (isinstance(fresh, str) and MASK in fresh):
                missing.append(path)
                return value
            return fresh
        if isinstance(value, Mapping):
            source = fresh if isinstance(fresh, Mapping) else {}
            return {
                k: walk(v, source.get(k, _MISSING), f"{path}.{k}" if path else str(k))
                for k, v in value.items()
            }
        if isinstance(value, list):
            source = fresh if isinstance(fresh, list) and len(fresh) == len(value) else None
            return [walk(v, source[i] if source else _MISSING, f"{path}[{i}]") for i, v in enumerate(value)]
        return value

    return walk(stored, given, ""), missing
