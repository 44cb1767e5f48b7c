"""The one redaction function: every repr, log line, error message, CLI output and page goes through it.

What counts as a secret (the rules Airflow's and Prefect's secret maskers follow, widened):

- **by name**: a key whose name says it holds a secret (``GITHUB_TOKEN``, ``db_password``,
  ``MYSQL_PWD``, ``APIKEY``, ``X-Auth``, ``SESSION_COOKIE``, ``SENTRY_DSN``...). Plugins add
  names through the ``raydrive_secret_names`` hook;
- **by value**: a URL with a password (``postgres://u:pw@host`` shows as ``postgres://u:***@host``),
  an ``Authorization``-style ``Basic`` / ``Bearer`` value, a PEM private-key block, and
  ``name=value`` / ``name: value`` pairs whose name looks secret;
- **by type**: pydantic ``SecretStr`` / ``SecretBytes``.

``redact(value)`` takes text or JSON-like data (mappings, sequences, pydantic models) and returns
the same shape with every secret replaced by ``***``. It never raises on odd input and stops at a
fixed depth, so it is safe to call from ``__repr__`` and error paths.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "MASK",
    "RedactingFilter",
    "add_secret_names",
    "install_log_redaction",
    "is_secret_key",
    "looks_secret_value",
    "redact",
    "redact_text",
    "redact_url",
]

MASK = "***"
_MAX_DEPTH = 64

# Words that mark a secret wherever they appear in a name (GITHUB_TOKEN, MYTOKEN, dbPassword).
_STRONG = (
    "TOKEN",
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "PASSPHRASE",
    "CREDENTIAL",
    "APIKEY",
    "API_KEY",
    "ACCESS_KEY",
    "ACCESSKEY",
    "PRIVATE_KEY",
    "PRIVATEKEY",
    "SIGNING_KEY",
    "SECRET_KEY",
    "COOKIE",
)
# Words that mark a secret only as a whole word of the name: DB_PASS but not BYPASS, X_AUTH but
# not AUTHOR, MYSQL_PWD, SENTRY_DSN.
_WEAK = frozenset({"PASS", "PWD", "AUTH", "AUTHORIZATION", "OAUTH", "DSN", "SESSION", "JWT", "PAT"})

_extra_names: set[str] = set()
_plugin_secret_names: Any = None


def add_secret_names(names: Iterable[str]) -> None:
    """Treat names containing any of ``names`` as secret too (as the ``raydrive_secret_names`` hook does)."""
    _extra_names.update(str(n).upper() for n in names if str(n).strip())


def _words(name: str) -> list[str]:
    # camelCase -> camel_Case, then split on anything that is not a letter or digit.
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)
    return [w for w in re.split(r"[^A-Za-z0-9]+", spaced.upper()) if w]


def _hook_names() -> frozenset[str]:
    global _plugin_secret_names
    try:
        if _plugin_secret_names is None:
            from raydrive.core.plugins import plugin_secret_names

            _plugin_secret_names = plugin_secret_names
        return _plugin_secret_names()
    except Exception:  # redaction must never fail because a plugin did
        return frozenset()


# Strong words are looked for in the name with separators removed (API_KEY and APIKEY alike).
_STRONG_RX = re.compile("|".join(sorted({w.replace("_", "") for w in _STRONG}, key=len, reverse=True)))
_NOT_ALNUM = re.compile(r"[^A-Z0-9]+")


@functools.lru_cache(maxsize=8192)
def _builtin_secret(key: str) -> bool:
    # Cached: the same few names (environment variables, option and JSON keys) come back for
    # every record, repr and payload.
    upper = key.upper().replace("TOKENIZER", "")  # HF's TOKENIZERS_PARALLELISM is no secret
    if _STRONG_RX.search(_NOT_ALNUM.sub("", upper)):
        return True
    return any(w in _WEAK for w in _words(key))


def is_secret_key(key: Any) -> bool:
    """Whether a key or environment variable's name says it holds a secret."""
    if not isinstance(key, str) or not key:
        return False
    if _builtin_secret(key):
        return True
    hooked = _hook_names()
    if not (_extra_names or hooked):
        return False
    upper = key.upper()
    normal = _NOT_ALNUM.sub("_", upper)
    return any(name in normal or name in upper for names in (_extra_names, hooked) for name in names)


# scheme://user:password@host -> scheme://user:***@host (also scheme://:password@host).
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s:/@?#'\"]*:)(?P<pw>[^\s@/'\"]+)(?=@)")
_AUTH_SCHEME = re.compile(
    r"(?P<head>\b(?:Bearer|Basic|Token|Digest)\s+)(?P<value>[A-Za-z0-9\-._~+/=:]{4,})", re.I
)
_PEM = re.compile(r"-----BEGIN (?P<kind>[A-Z0-9 ]*PRIVATE KEY)-----.*?(?:-----END (?P=kind)-----|\Z)", re.S)
# name=value, name: value, "name": "value" where name looks secret.
# The look-behind makes a name start at a word's start only: without it every position inside
# a word is tried, and a log line costs ~50 us instead of ~10.
_PAIR = re.compile(
    r"(?<![A-Za-z0-9_.\-])(?P<key>[\"']?(?P<name>[A-Za-z_][A-Za-z0-9_.\-]*)[\"']?\s*(?:=|:)\s*)"
    r"(?P<quote>[\"']?)(?P<value>[^\s\"',;&}\]]+)(?P=quote)"
)


def redact_url(url: str) -> str:
    """``scheme://user:pw@host/...`` with the password replaced: ``scheme://user:***@host/...``."""
    return _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, url)


def _pair(m: re.Match[str]) -> str:
    if m.group("value") == MASK:
        return m.group(0)
    if not is_secret_key(m.group("name")):
        # "failed: password=x": the value may itself hold a pair.
        value = m.group("value")
        inner = _PAIR.sub(_pair, value) if ("=" in value or ":" in value) else value
        if inner == value:
            return m.group(0)
        return f"{m.group('key')}{m.group('quote')}{inner}{m.group('quote')}"
    # An auth-scheme value keeps its scheme word ("Authorization: Bearer ***").
    if m.group("value").lower() in {"bearer", "basic", "token", "digest"}:
        return m.group(0)
    return f"{m.group('key')}{m.group('quote')}{MASK}{m.group('quote')}"


_AUTH_WORDS = ("bearer", "basic", "token", "digest")


def redact_text(text: str) -> str:
    """Free text with every secret value in it replaced by ``***``."""
    if not text:
        return text
    # Each pattern only where its literal part occurs (most text has none of them).
    out = _PEM.sub(MASK, text) if "-----BEGIN" in text else text
    if "://" in out:
        out = _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, out)
    lower = out.lower()
    if any(word in lower for word in _AUTH_WORDS):
        out = _AUTH_SCHEME.sub(lambda m: m.group("head") + MASK, out)
    if "=" in out or ":" in out:
        out = _PAIR.sub(_pair, out)
    return out


def looks_secret_value(value: Any) -> bool:
    """Whether a value itself is a secret (a URL with a password, a bearer value, a private key)."""
    if not isinstance(value, str) or not value:
        return False
    return redact_text(value) != value


def _secret_type(value: Any) -> bool:
    try:
        from pydantic import SecretBytes, SecretStr
    except ImportError:  # pragma: no cover - pydantic is a dependency
        return False
    return isinstance(value, (SecretStr, SecretBytes))


def redact(value: Any, *, _depth: int = 0) -> Any:
    """``value`` with every secret replaced by ``***``: text, or JSON-like data of the same shape.

    Mapping keys that look secret have their whole value masked; strings are scanned by
    :func:`redact_text`; pydantic secrets become ``***``; models are redacted as their dump.
    Anything else is returned unchanged. Past a depth of 64 the rest is replaced by ``"..."``.
    """
    if isinstance(value, str):
        return redact_text(value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if _depth >= _MAX_DEPTH:
        return "..."
    if _secret_type(value):
        return MASK
    if isinstance(value, Mapping):
        return {
            k: (MASK if is_secret_key(k) and v not in (None, "") else redact(v, _depth=_depth + 1))
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        items = [redact(v, _depth=_depth + 1) for v in value]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, (set, frozenset)):
        return type(value)(redact(v, _depth=_depth + 1) for v in value)
    dump = getattr(value, "model_dump", None)
    if callable(dump) and hasattr(type(value), "model_fields"):
        return redact(_dump_with_secrets_masked(value), _depth=_depth + 1)
    if isinstance(value, bytes):
        return value
    return value


def _dump_with_secrets_masked(model: Any) -> Any:
    # model_dump() keeps SecretStr objects (they print as '**********'); map them to MASK.
    try:
        return model.model_dump(mode="python")
    except Exception:
        return repr(model)


class RedactingFilter(logging.Filter):
    """A logging filter: every record's message (with its args) and traceback through :func:`redact_text`."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True
        cleaned = redact_text(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            # Formatters reuse exc_text when it is set: format the traceback once, redacted.
            with contextlib.suppress(Exception):
                record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        return True


_REDACTOR = RedactingFilter()
_installed = False


def install_log_redaction() -> None:
    """Redact every log record of a raydrive logger (``raydrive``, ``raydrive.*``) as it is made.

    A logger's filters do not apply to its children's records, and modules keep adding loggers
    (``getLogger(__name__)``), so instead of a filter per logger the record factory is wrapped:
    records of any present or future ``raydrive.*`` logger go through :class:`RedactingFilter`,
    whatever handlers are configured; other libraries' records are left alone. Idempotent; done
    when this module is imported.
    """
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        name = record.name
        if name == "raydrive" or name.startswith("raydrive."):
            _REDACTOR.filter(record)
        return record

    logging.setLogRecordFactory(factory)
    _installed = True


install_log_redaction()
