"""The one redaction rule: every repr, log line, error message, CLI output, stored field and page.

It masks only what can be a secret and never changes data otherwise (``docs/secrets.md`` has the
rule as a table, with examples):

- **only text can be a secret**: numbers, booleans and ``None`` are never masked; a list or
  mapping under a secret-looking name is walked (its text masked), never replaced whole;
- **by name**, matched by whole words (the name split on ``_ - .``, spaces and camelCase): a
  name whose words say it holds a secret (``GITHUB_TOKEN``, ``db_password``, ``MYSQL_PWD``,
  ``apiKey``, ``X-Auth-Token``, ``SENTRY_DSN``), unless the words after the secret word count,
  limit or describe it (``token_count``, ``password_strength``, ``cookie_policy``,
  ``secret_name``, ``token_type_ids``) or the word before names a kind of token that is no
  credential (``pad_token``, ``eos_token``, ``next_token``). ``tokens`` (plural, the unit of
  text models: ``max_tokens``, ``total_tokens``) and ``tokenizer`` are not secret words. Plugins
  add name fragments through the ``raydrive_secret_names`` hook (matched as substrings, as
  before);
- **by value**: a URL with a password (``postgres://u:pw@host`` shows as
  ``postgres://u:***@host``), a ``Basic`` / ``Bearer`` / ``Token`` credential, a PEM private-key
  block, ``name=value`` / ``name: value`` pairs whose name is secret, and name/value pair lists
  (``[{"name": "DB_PASSWORD", "value": ...}]``, the Kubernetes ``env`` shape);
- **by type**: pydantic ``SecretStr`` / ``SecretBytes``, always.

Words that describe rather than hold a secret are the convention of Kubernetes (``secretName``,
``secretKeyRef``), Hugging Face (``pad_token``, ``max_new_tokens``) and OpenAI (``max_tokens``,
``total_tokens``) names; GitHub's and Django's maskers match whole names the same way.

``redact(value)`` never raises on odd input and stops at a fixed depth, so it is safe to call
from ``__repr__`` and error paths.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = [
    "MASK",
    "RedactingFilter",
    "Redactor",
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

# --- names ---------------------------------------------------------------------------------------
# Words that hold a secret on their own (GITHUB_TOKEN, db_password, MYSQL_PWD, X-Auth).
_SECRET_WORDS = frozenset(
    {
        "TOKEN",
        "SECRET",
        "SECRETS",
        "PASSWORD",
        "PASSWORDS",
        "PASSWD",
        "PASSPHRASE",
        "PASS",
        "PWD",
        "CREDENTIAL",
        "CREDENTIALS",
        "CREDS",
        "AUTH",
        "AUTHORIZATION",
        "COOKIE",
        "COOKIES",
        "DSN",
        "JWT",
        "PAT",
        "OTP",
    }
)
# One-word spellings of two-word secrets; also matched at the end of a longer word
# (NGROK_AUTHTOKEN, dbpassword, myApikey is "my" "Apikey").
_JOINED = ("APIKEY", "APIKEYS", "ACCESSKEY", "SECRETKEY", "PRIVATEKEY", "AUTHTOKEN", "ACCESSTOKEN",
           "REFRESHTOKEN", "PASSWORD", "PASSWD", "PASSPHRASE", "CONNECTIONSTRING")  # fmt: skip
# KEY is a secret only after one of these (API_KEY, AWS_SECRET_ACCESS_KEY, RAILS_MASTER_KEY); a
# sort_key, input_key, primary_key or s3 object key is ordinary text.
_KEY_KINDS = frozenset(
    {"API", "ACCESS", "SECRET", "PRIVATE", "SIGNING", "ENCRYPTION", "DECRYPTION", "MASTER",
     "ACCOUNT", "LICENSE", "SHARED", "HMAC", "SSH", "DEPLOY", "SESSION", "APP", "SUBSCRIPTION",
     "AUTH", "SERVICE", "ADMIN", "WRITE", "STORAGE", "CLIENT", "CRYPTO", "AES"}
)  # fmt: skip
# TOKENS (plural) is the unit of text models (max_tokens, total_tokens); secret only after these.
_TOKENS_KINDS = frozenset({"API", "ACCESS", "AUTH", "REFRESH", "BEARER", "SESSION", "ID"})
# A word before the secret word that makes it something else: a vocabulary token (pad_token,
# eos_token), a page cursor (next_token, page_token), a pass of a computation (forward_pass),
# the names of pull secrets (imagePullSecrets).
_NOT_AFTER = {
    "TOKEN": frozenset(
        {"PAD", "EOS", "BOS", "UNK", "SEP", "CLS", "MASK", "SPECIAL", "START", "END", "STOP",
         "IMAGE", "VIDEO", "AUDIO", "BOI", "EOI", "DECODER", "NEXT", "PAGE", "CONTINUATION",
         "CURSOR", "SYNC", "MAX", "MIN", "NUM", "FIRST", "LAST", "FILL", "PREFIX", "SUFFIX",
         "MIDDLE", "EOT", "EOM", "UNKNOWN", "PADDING", "SEPARATOR", "CLASSIFIER", "PER"}
    ),
    "PASS": frozenset(
        {"FIRST", "SECOND", "THIRD", "FINAL", "FORWARD", "BACKWARD", "SINGLE", "MULTI", "TWO",
         "ONE", "FULL", "EVAL", "TRAIN", "RENDER", "EXTRA", "NUM"}
    ),
    "SECRETS": frozenset({"PULL"}),
}  # fmt: skip
# Words after the secret word that keep it a secret (DB_PASSWORD_PROD, SECRET_KEY_BASE,
# api_key_b64, TOKEN_V2); any other word describes it (token_count, password_strength,
# cookie_policy, secret_name, token_type, auth_url) and the name is not a secret.
_STILL_SECRET = frozenset(
    {"VALUE", "VAL", "RAW", "B64", "BASE64", "ENCODED", "ENC", "ENCRYPTED", "HEX", "STR",
     "STRING", "TEXT", "BYTES", "DATA", "JSON", "DICT", "PLAIN", "PLAINTEXT", "BASE", "OLD",
     "NEW", "PREV", "PREVIOUS", "CURRENT", "PRIMARY", "SECONDARY", "BACKUP", "ALT", "PROD",
     "PRODUCTION", "DEV", "STAGING", "TEST", "LIVE", "SANDBOX", "RO", "RW", "READONLY", "HASH",
     "SALT", "OVERRIDE"}
)  # fmt: skip
# ID keeps a secret after these only (a Vault SECRET_ID, AWS_ACCESS_KEY_ID; a pad_token_id is a
# vocabulary index).
_ID_AFTER = frozenset({"SECRET", "KEY"})
_VERSION = re.compile(r"V?\d+")

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_SEPARATORS = re.compile(r"[^A-Za-z0-9]+")


def _words(name: str) -> list[str]:
    """``name`` split into upper-case words on ``_ - .``, any other punctuation and camelCase."""
    return [w for w in _SEPARATORS.split(_CAMEL.sub("_", name).upper()) if w]


def _secret_word(words: list[str], i: int) -> str | None:
    """The secret word ``words[i]`` is (TOKEN, KEY...), or None when it is none here."""
    word = words[i]
    before = words[i - 1] if i else ""
    if word in ("KEY", "KEYS"):
        return "KEY" if before in _KEY_KINDS else None
    if word == "TOKENS":
        return "TOKEN" if before in _TOKENS_KINDS else None
    if word == "STRING" and before == "CONNECTION":
        return "CONNECTIONSTRING"  # AZURE_STORAGE_CONNECTION_STRING: AccountKey=..., Password=...
    if word == "PWD" and len(words) == 1:
        return None  # the POSIX working directory ($PWD), not MYSQL_PWD
    if word in _SECRET_WORDS:
        return None if before in _NOT_AFTER.get(word, ()) else word
    for joined in _JOINED:
        if word.endswith(joined):
            return "KEY" if joined.endswith(("KEY", "KEYS")) else joined
    return None


def _tail_keeps_secret(secret: str, tail: list[str]) -> bool:
    for word in tail:
        if word in _STILL_SECRET or _VERSION.fullmatch(word):
            continue
        if word in ("ID", "IDS") and secret in _ID_AFTER:
            continue
        return False
    return True


@functools.lru_cache(maxsize=16384)
def _builtin_secret(key: str) -> bool:
    # Cached: the same few names (environment variables, option, param and JSON keys) come back
    # for every record, repr and payload.
    words = _words(key)
    for i in range(len(words)):
        secret = _secret_word(words, i)
        if secret is not None and _tail_keeps_secret(secret, words[i + 1 :]):
            return True
    return False


_extra_names: set[str] = set()
_plugin_secret_names: Any = None


def add_secret_names(names: Iterable[str]) -> None:
    """Treat names containing any of ``names`` as secret too (as the ``raydrive_secret_names`` hook does)."""
    _extra_names.update(str(n).upper() for n in names if str(n).strip())


def _hook_names() -> frozenset[str]:
    global _plugin_secret_names
    try:
        if _plugin_secret_names is None:
            from raydrive.core.plugins import plugin_secret_names

            _plugin_secret_names = plugin_secret_names
        return _plugin_secret_names()
    except Exception:  # redaction must never fail because a plugin did
        return frozenset()


_NOT_ALNUM = re.compile(r"[^A-Z0-9]+")


def is_secret_key(key: Any) -> bool:
    """Whether a key or environment variable's name says it holds a secret.

    By whole words (``api_token`` yes, ``token_count`` / ``max_tokens`` / ``tokenizer`` no), or
    containing a fragment added by :func:`add_secret_names` or the ``raydrive_secret_names`` hook.
    """
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


# --- values --------------------------------------------------------------------------------------
# scheme://user:password@host -> scheme://user:***@host (also scheme://:password@host).
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s:/@?#'\"]*:)(?P<pw>[^\s@/'\"]+)(?=@)")
# Authorization schemes (RFC 7235): Bearer and Token carry an RFC 6750 b64token, Basic a base64
# "user:password". Prose ("Basic usage", "bearer of", "token length") is left alone: see _scheme.
_AUTH_SCHEME = re.compile(
    r"(?P<head>\b(?:[Bb]earer|BEARER|[Bb]asic|BASIC|Token|TOKEN)\s+)(?P<value>[A-Za-z0-9\-._~+/]+=*)"
)
_WORDLIKE = re.compile(r"[A-Za-z][a-z]*|\d+")
_PEM = re.compile(r"-----BEGIN (?P<kind>[A-Z0-9 ]*PRIVATE KEY)-----.*?(?:-----END (?P=kind)-----|\Z)", re.S)
# name=value, name: value, "name": "value" where name looks secret.
# The look-behind makes a name start at a word's start only: without it every position inside
# a word is tried, and a log line costs ~50 us instead of ~10.
_PAIR = re.compile(
    r"(?<![A-Za-z0-9_.\-])(?P<key>[\"']?(?P<name>[A-Za-z_][A-Za-z0-9_.\-]*)[\"']?\s*(?:=|:)\s*)"
    r"(?P<quote>[\"']?)(?P<value>[^\s\"',;&}\]]+)(?P=quote)"
)
# Values of a pair that are no text: JSON / Python literals (only text can be a secret).
_LITERALS = frozenset({"true", "false", "null", "none", "True", "False", "None", MASK})
_AUTH_WORDS = frozenset({"bearer", "basic", "token"})


def redact_url(url: str) -> str:
    """``scheme://user:pw@host/...`` with the password replaced: ``scheme://user:***@host/...``."""
    return _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, url)


def _scheme(m: re.Match[str]) -> str:
    value = m.group("value")
    if value == MASK or _WORDLIKE.fullmatch(value):
        return m.group(0)  # "Basic usage", "token length", "Bearer ***", "token 50256"
    if m.group("head")[0] in "Bb":
        if m.group("head")[1] in "aA":  # Basic: base64 of "user:password", or it is no credential
            try:
                decoded = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                return m.group(0)
            if b":" not in decoded:
                return m.group(0)
        elif len(value) < 4:
            return m.group(0)
    elif len(value) < 8:
        return m.group(0)
    return m.group("head") + MASK


def _pair(m: re.Match[str]) -> str:
    value = m.group("value")
    if value in _LITERALS:
        return m.group(0)
    if not is_secret_key(m.group("name")):
        # "failed: password=x": the value may itself hold a pair.
        inner = _PAIR.sub(_pair, value) if ("=" in value or ":" in value) else value
        if inner == value:
            return m.group(0)
        return f"{m.group('key')}{m.group('quote')}{inner}{m.group('quote')}"
    # An auth-scheme value keeps its scheme word ("Authorization: Bearer ***").
    if value.lower() in _AUTH_WORDS:
        return m.group(0)
    return f"{m.group('key')}{m.group('quote')}{MASK}{m.group('quote')}"


def redact_text(text: str) -> str:
    """Free text with every secret value in it replaced by ``***``."""
    if not text:
        return text
    # Each pattern only where its literal part occurs (most text has none of them).
    out = _PEM.sub(MASK, text) if "-----BEGIN" in text else text
    if "://" in out:
        out = _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, out)
    if "earer" in out or "asic" in out or "oken" in out or "EARER" in out or "ASIC" in out or "OKEN" in out:
        out = _AUTH_SCHEME.sub(_scheme, out)
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


# A log-probability entry of a text model ({"token": "Hello", "logprob": -0.1}, OpenAI, vLLM,
# TGI): its "token" is a piece of the model's text, not a credential.
_LOGPROB = "logprob"
# The name/value pair shape (Kubernetes and ECS env, AWS tags): {"name": N, "value": V}.
_PAIR_KEYS = (("name", "value"), ("Name", "Value"), ("key", "value"), ("Key", "Value"))


class Redactor:
    """The rule applied to JSON-like data, with its name and text tests given.

    :func:`redact` is ``Redactor()``'s :meth:`data`. A pipeline run builds its own to add the
    params it declares ``SecretStr`` to the secret names and the secret values it has seen to
    the text test, and still masks by the same rule.

    :param secret_key: whether a mapping key (or a pair's name) holds a secret.
    :param text: what a string becomes.
    """

    def __init__(
        self,
        secret_key: Callable[[Any], bool] = is_secret_key,
        text: Callable[[str], Any] = redact_text,
    ) -> None:
        self.secret_key = secret_key
        self.text = text

    def data(self, value: Any, _depth: int = 0) -> Any:
        """``value`` with every secret replaced by ``***``, in the same shape.

        Under a key whose name is secret, text is masked and lists and mappings are walked;
        strings are scanned by the text test; pydantic secrets become ``***``; models are
        redacted as their dump; anything else is returned unchanged. Past a depth of 64 the rest
        is replaced by ``"..."``.
        """
        if isinstance(value, str):
            return self.text(value)
        if value is None or isinstance(value, (bool, int, float)):
            return value
        if _depth >= _MAX_DEPTH:
            return "..."
        if isinstance(value, Mapping):
            secret_key = self.secret_key
            if _LOGPROB in value:  # a model's token and its log-probability: no credential
                return {k: self.data(v, _depth + 1) for k, v in value.items()}
            out = {
                k: self.hidden(v, _depth + 1) if secret_key(k) else self.data(v, _depth + 1)
                for k, v in value.items()
            }
            for name, val in _PAIR_KEYS:
                if val in value and isinstance(value.get(name), str):
                    if secret_key(value[name]):
                        out[val] = self.hidden(value[val], _depth + 1)
                    break
            return out
        if isinstance(value, (list, tuple)):
            items = [self.data(v, _depth + 1) for v in value]
            return items if isinstance(value, list) else tuple(items)
        if _secret_type(value):
            return MASK
        if isinstance(value, (set, frozenset)):
            return type(value)(self.data(v, _depth + 1) for v in value)
        if hasattr(type(value), "model_fields") and callable(getattr(value, "model_dump", None)):
            return self.data(_dump(value), _depth + 1)
        return value

    def hidden(self, value: Any, _depth: int = 0) -> Any:
        """``value`` as it shows under a secret name: its text masked, lists and mappings walked
        (each text in them masked), numbers, booleans and ``None`` unchanged."""
        if isinstance(value, (str, bytes)):
            return MASK if value else value
        if value is None or isinstance(value, (bool, int, float)):
            return value
        if _depth >= _MAX_DEPTH:
            return "..."
        if isinstance(value, Mapping):
            if _LOGPROB in value:
                return self.data(value, _depth)
            return {k: self.hidden(v, _depth + 1) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            items = [self.hidden(v, _depth + 1) for v in value]
            return items if isinstance(value, list) else tuple(items)
        if isinstance(value, (set, frozenset)):
            return type(value)(self.hidden(v, _depth + 1) for v in value)
        if hasattr(type(value), "model_fields") and callable(getattr(value, "model_dump", None)):
            return self.hidden(_dump(value), _depth + 1)
        return MASK  # a secret's value of a type it cannot look into (SecretStr among them)


def _dump(model: Any) -> Any:
    # model_dump() keeps SecretStr objects (they print as '**********'); redaction masks them.
    try:
        return model.model_dump(mode="python")
    except Exception:
        return repr(model)


_DEFAULT = Redactor()


def redact(value: Any, *, _depth: int = 0) -> Any:
    """``value`` with every secret replaced by ``***``: text, or JSON-like data of the same shape.

    The rule is in this module's docstring and ``docs/secrets.md``: only text is masked; under
    a secret-looking key, text is masked and lists and mappings are walked; strings are scanned
    by :func:`redact_text`; pydantic secrets become ``***``; models are redacted as their dump.
    Anything else is returned unchanged. Past a depth of 64 the rest is replaced by ``"..."``.
    """
    return _DEFAULT.data(value, _depth)


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
