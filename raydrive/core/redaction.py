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
  block, pairs in text whose name is secret (``name=value``, ``"name": "value"``, ``--name
  value``, ``?name=value``), and name/value pair lists (``[{"name": "DB_PASSWORD", "value":
  ...}]``, the Kubernetes ``env`` shape);
- **by type**: pydantic ``SecretStr`` / ``SecretBytes``, always; models and dataclasses as their
  fields.

The bare key ``token`` is a piece of text, not a credential, in a model's output record (a
mapping with ``logprob``, ``logprobs`` or ``top_logprobs``); under a secret name every text is
masked except under keys about the secret (``secretName``). ``docs/secrets.md`` says why.

Words that describe rather than hold a secret are the convention of Kubernetes (``secretName``,
``secretKeyRef``), Hugging Face (``pad_token``, ``max_new_tokens``) and OpenAI (``max_tokens``,
``total_tokens``) names; GitHub's and Django's maskers match whole names the same way.

``redact(value)`` never raises on odd input (cycles, hostile objects, any key type), stops at a
fixed depth, and takes time linear in its input (1 MiB of hostile text included), so it is safe
to call from ``__repr__`` and error paths.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import datetime
import enum
import functools
import logging
import numbers
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pydantic import SecretBytes, SecretStr

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
    # GOOGLE_APPLICATION_CREDENTIALS: the path of Application Default Credentials' key file (a
    # *_FILE name by another spelling); a key pasted into it is caught by value (PEM, JSON pair).
    "CREDENTIALS": frozenset({"APPLICATION"}),
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


# Names longer than this are not cached: a cache of 16384 one-MiB keys would hold 16 GiB.
_CACHED_NAME_LEN = 256


def _builtin_secret(key: str) -> bool:
    if len(key) > _CACHED_NAME_LEN:
        return _builtin_secret_words(key)
    return _builtin_secret_cached(key)


@functools.lru_cache(maxsize=16384)
def _builtin_secret_cached(key: str) -> bool:
    # Cached: the same few names (environment variables, option, param and JSON keys) come back
    # for every record, repr and payload.
    return _builtin_secret_words(key)


def _builtin_secret_words(key: str) -> bool:
    # From the last word back, so that whether the words after each one keep it a secret is
    # known in one step, and only up to the last word that describes (a long name costs its
    # split, not a step per word).
    words = _words(key)
    tail_keeps = tail_keeps_id = True  # every word after i keeps a secret (ID allowed: id form)
    for i in range(len(words) - 1, -1, -1):
        secret = _secret_word(words, i)
        if secret is not None and (tail_keeps_id if secret in _ID_AFTER else tail_keeps):
            return True
        word = words[i]
        keeps = word in _STILL_SECRET or _VERSION.fullmatch(word) is not None
        tail_keeps = tail_keeps and keeps
        tail_keeps_id = tail_keeps_id and (keeps or word in ("ID", "IDS"))
        if not tail_keeps_id:
            return False  # every word before this one has a describing word after it
    return False


@functools.lru_cache(maxsize=4096)
def _describes_secret(key: str) -> bool:
    """Whether a name is about a secret without holding one: a secret word with a word after it
    that counts, limits or describes (``secretName``, ``token_type``, ``password_file``)."""
    if len(key) > _CACHED_NAME_LEN or _builtin_secret(key):
        return False
    words = _words(key)
    return any(_secret_word(words, i) is not None for i in range(len(words)))


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
    if isinstance(key, (bytes, bytearray)):
        key = bytes(key).decode("latin-1")
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
# Every pattern below runs in time linear in the text, whatever the text (a 1 MiB line of ``a:``,
# ``=`` or ``https://`` repeated is scanned in well under a second): a pattern either starts only
# where a run of its characters starts (the look-behinds) or has its repeated part bounded (a
# URL scheme, a PEM kind), and a pair's value is looked for only after a name that is secret.

# scheme://user:password@host -> scheme://user:***@host (also scheme://:password@host). The
# password runs to the last "@" before the path, as urllib.parse splits a netloc: a password
# with an unescaped "@" or ":" ("p@ss:w") is masked whole, and a user that is an e-mail address
# ("me@mail.org:pw@smtp") is kept. IPv6 hosts ("@[::1]:5432") follow the "@".
_URL_PASSWORD = re.compile(
    r"\b(?P<head>[A-Za-z][A-Za-z0-9+.\-]{0,63}://[^\s:/?#'\"<>\[\]]*:)"
    r"(?P<pw>[^\s/?'\"<>]+)(?=@)"
)
# Authorization schemes (RFC 7235): Bearer and Token carry an RFC 6750 b64token, Basic a base64
# "user:password". Prose ("Basic usage", "bearer of", "token length") is left alone: see _scheme.
_AUTH_SCHEME = re.compile(
    r"(?P<head>\b(?:[Bb]earer|BEARER|[Bb]asic|BASIC|Token|TOKEN)[ \t]+)(?P<value>[A-Za-z0-9\-._~+/]+=*)"
)
_WORDLIKE = re.compile(r"[A-Za-z][a-z]*|\d+")
# A PEM private key (PKCS#1 "RSA", SEC1 "EC", PKCS#8 "ENCRYPTED", "OPENSSH", "DSA", PGP's "PGP
# PRIVATE KEY BLOCK"), to its END line or, cut short, to the end of the text. The kind is
# bounded so that "-----BEGIN " repeated costs a constant each.
_PEM = re.compile(
    r"-----BEGIN (?P<kind>[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?)-----.*?(?:-----END (?P=kind)-----|\Z)",
    re.S,
)
# The start of a pair: name=value, name: value, "name": value, \"name\": (JSON in a JSON string),
# --name=value and --name value (a command line), ?name=value&... (a query string). A name
# starts at a word's start only (the look-behind): every position inside a word is not tried.
_NAME_HINTS = ("token", "secret", "pass", "pwd", "cred", "auth", "cookie", "dsn", "jwt", "pat",
               "otp", "key", "connection")  # fmt: skip
_HEAD = (
    r"(?=[A-Za-z_\-\"'\\])(?<![A-Za-z0-9_.\-])(?P<dash>--?)?(?P<q>\\?[\"']|)"
    r"(?={hints})"
    r"(?P<name>[A-Za-z_][A-Za-z0-9_.\-]*)(?P=q)"
    r"(?(dash)(?:[ \t]*(?P<sep>[=:])[ \t]*|[ \t]+)|[ \t]*(?P<sep2>[=:])[ \t]*)"
)
# A pair's value: a quoted string (JSON with its escapes, Python / shell single quotes, an
# escaped JSON string inside a JSON string) or a run up to the next space or delimiter.
_VALUE = re.compile(
    r"\"(?P<dq>[^\"\\\n]*(?:\\.[^\"\\\n]*)*)\""
    r"|'(?P<sq>[^'\n]*)'"
    r"|\\\"(?P<eq>[^\"\\\n]*(?:\\[^\"\n][^\"\\\n]*)*)\\\""
    r"|(?P<bare>[^\s\"',;&}\]\\]+)"
)
_JSON_LITERAL = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null|None|True|False|NaN|-?Infinity")
# Values of an unquoted pair that are no text: JSON / Python literals (only text can be a secret).
_LITERALS = frozenset({"true", "false", "null", "none", "True", "False", "None", MASK})
_AUTH_WORDS = frozenset({"bearer", "basic", "token"})
_AFTER_SCHEME = re.compile(r"[ \t]+(?P<v>[^\s\"',;&}\]\\]+)")  # the credential after "Bearer"
_AUTH_VALUE = re.compile(r"(?P<scheme>(?:[Bb]earer|BEARER|[Bb]asic|BASIC|[Tt]oken|TOKEN)[ \t]+)\S")


def _head_pattern(extra: frozenset[str]) -> tuple[re.Pattern[str] | None, re.Pattern[str]]:
    """(a test of lower-cased text for a fragment without which no name is secret, the pairs'
    start): the secret words' fragments and the plugins' names. Ordinary text ("a=1 b: 2")
    costs one fast scan, not a Python step per pair."""
    fragments = set(_NAME_HINTS)
    for name in extra:
        chunks = [c for c in re.split(r"[^A-Za-z0-9]+", name) if c]
        if not chunks:  # a plugin's fragment of punctuation only: every name must be looked at
            return None, re.compile(_HEAD.replace("{hints}", ""))
        fragments.add(max(chunks, key=len).lower())
    alternatives = "|".join(re.escape(f) for f in sorted(fragments))
    head = _HEAD.replace("{hints}", "[A-Za-z0-9_.\\-]*?(?i:" + alternatives + ")")
    return re.compile(alternatives), re.compile(head)


_head_for: list[Any] = [None, None, None]  # the names it was built for, and the patterns


def _head() -> tuple[re.Pattern[str] | None, re.Pattern[str]]:
    hooked = _hook_names()  # the same frozenset until a plugin is (un)registered
    if _head_for[0] != len(_extra_names) or _head_for[1] is not hooked:
        _head_for[:] = [len(_extra_names), hooked, _head_pattern(frozenset(_extra_names) | hooked)]
    return _head_for[2]


def redact_url(url: str) -> str:
    """``scheme://user:pw@host/...`` with the password replaced: ``scheme://user:***@host/...``."""
    try:
        return _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, url)
    except Exception:  # not text: nothing to mask in it
        return url


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


def _masked_value(text: str, start: int, quoted_name: bool) -> tuple[int, str] | None:
    """The value of a secret pair at ``text[start:]``: (its end, what it shows as), or None when
    there is nothing to mask (no value, a literal that is no text, a mask already)."""
    m = _VALUE.match(text, start)
    if m is None:
        return None
    end = m.end()
    kind = m.lastgroup
    value = m.group(kind or "bare")
    if kind == "bare":
        if value in _LITERALS or (quoted_name and _JSON_LITERAL.fullmatch(value)):
            return None  # "password": 1234 in JSON is a number, as in the data rule
        if value.lower() in _AUTH_WORDS:  # Authorization: Bearer <credential>
            after = _AFTER_SCHEME.match(text, end)
            if after is None or after.group("v") == MASK:
                return None
            return after.end(), text[start:end] + text[end : after.start("v")] + MASK
        return end, MASK
    if not value or value == MASK:
        return None
    quote = text[start : m.start(kind)]
    auth = _AUTH_VALUE.match(value)
    shown = auth.group("scheme") + MASK if auth else MASK  # "Bearer ***" keeps its scheme
    return end, f"{quote}{shown}{quote}"


def _pairs(text: str) -> str:
    hint, head = _head()
    if hint is not None and hint.search(text.lower()) is None:
        return text  # no name in it can be secret
    pieces: list[str] = []
    known: dict[str, bool] = {}  # a log repeats its names line after line
    copied = pos = 0
    while True:
        m = head.search(text, pos)
        if m is None:
            break
        pos = m.end()
        name = m.group("name")
        secret = known.get(name)
        if secret is None:
            secret = known[name] = is_secret_key(name)
        if not secret:
            continue  # its value may hold a pair of its own ("failed: password=x"): scan on
        quoted = bool(m.group("q"))
        if m.group("dash") and not (m.group("sep") or m.group("sep2")) and text.startswith("-", pos):
            continue  # "--token --verbose": the next option, no value
        found = _masked_value(text, pos, quoted)
        if found is None:
            continue
        end, shown = found
        pieces.append(text[copied:pos])
        pieces.append(shown)
        copied = pos = end
    if not pieces:
        return text
    pieces.append(text[copied:])
    return "".join(pieces)


def redact_text(text: str) -> str:
    """Free text with every secret value in it replaced by ``***``.

    Never raises: what is not ``str`` is returned as given; text it cannot scan (it never should)
    shows as ``***``.
    """
    if not isinstance(text, str) or not text:
        return text
    try:
        # Each pattern only where its literal part occurs (most text has none of them).
        out = _PEM.sub(MASK, text) if "-----BEGIN" in text else text
        if "://" in out:
            out = _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, out)
        if (
            "earer" in out
            or "asic" in out
            or "oken" in out
            or "EARER" in out
            or "ASIC" in out
            or "OKEN" in out
        ):
            out = _AUTH_SCHEME.sub(_scheme, out)
        if "=" in out or ":" in out or "--" in out:
            out = _pairs(out)
    except Exception:  # e.g. MemoryError on a huge text: showing it whole could leak
        return MASK
    return text if out == text else out


def looks_secret_value(value: Any) -> bool:
    """Whether a value itself is a secret (a URL with a password, a bearer value, a private key)."""
    if not isinstance(value, str) or not value:
        return False
    return redact_text(value) != value


def _secret_type(value: Any) -> bool:
    return isinstance(value, (SecretStr, SecretBytes))


# Values that are no text and no container: never a secret, whatever their name (numbers,
# times, the members of an Enum defined in code).
_NOT_TEXT = (numbers.Number, datetime.date, datetime.time, datetime.timedelta, enum.Enum)
# A log-probability entry of a text model ({"token": "Hello", "logprob": -0.1}: OpenAI, vLLM,
# TGI): a mapping with one of these keys is a model's output, and its "token" is a piece of
# the model's text, not a credential. Its other keys are judged as anywhere else.
_MODEL_TOKEN = "token"
# The name/value pair shape (Kubernetes and ECS env, AWS tags): {"name": N, "value": V}.
_PAIR_KEYS = (("name", "value"), ("Name", "Value"), ("key", "value"), ("Key", "Value"))
_CYCLE = "..."


def _model_output(value: Mapping[Any, Any]) -> bool:
    return "logprob" in value or "logprobs" in value or "top_logprobs" in value


class _Walk:
    """One walk of a value: the containers on the path (a cycle shows as ``"..."``) and those
    done (a container shared in many places is redacted once, so a DAG of shared lists cannot
    make the walk exponential)."""

    __slots__ = ("done", "keys", "path")

    def __init__(self) -> None:
        self.path: set[int] = set()
        self.done: tuple[dict[int, tuple[Any, Any]], dict[int, tuple[Any, Any]]] = ({}, {})
        self.keys: dict[Any, bool] = {}  # the secret test's answers: a document repeats its keys


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
        strings are scanned by the text test; pydantic secrets become ``***``; pydantic models
        and dataclass instances are redacted as their fields (a dict); anything else is returned
        unchanged. Past a depth of 64 the rest, and a container met again inside itself (a
        cycle), is replaced by ``"..."``. Never raises: a container that cannot be read shows as
        ``***``.
        """
        return self._walk(value, _depth, False, _Walk())

    def hidden(self, value: Any, _depth: int = 0) -> Any:
        """``value`` as it shows under a secret name: its text masked, lists and mappings walked
        (each text in them masked), numbers, booleans, times and ``None`` unchanged."""
        return self._walk(value, _depth, True, _Walk())

    def _walk(self, value: Any, depth: int, hidden: bool, walk: _Walk) -> Any:
        cls = type(value)  # the leaves first: most of a document is text and numbers
        if cls is str:
            return (MASK if value else value) if hidden else self.text(value)
        if value is None or cls is int or cls is float or cls is bool:
            return value
        try:
            return self._one(value, depth, hidden, walk)
        except Exception:  # a container or model that cannot be read: it may hold anything
            return MASK

    def _one(self, value: Any, depth: int, hidden: bool, walk: _Walk) -> Any:
        cls = type(value)
        if cls is not dict and cls is not list:
            if isinstance(value, str):  # a str subclass
                return (MASK if value else value) if hidden else self.text(value)
            if isinstance(value, (bytes, bytearray)):
                return self._bytes(value, hidden)
            if isinstance(value, _NOT_TEXT) or _secret_type(value):
                return MASK if _secret_type(value) else value
            if not isinstance(value, (Mapping, list, tuple, set, frozenset)):
                fields = _fields(value)
                if fields is None:  # a secret's value of a type it cannot look into is masked
                    return MASK if hidden else value
                value = fields
        if depth >= _MAX_DEPTH:
            return "..."
        ident = id(value)
        path = walk.path
        if ident in path:
            return _CYCLE
        done = walk.done[hidden]
        seen = done.get(ident)
        if seen is not None:
            return seen[1]
        path.add(ident)
        try:
            out = self._container(value, depth + 1, hidden, walk)
        finally:
            path.discard(ident)
        done[ident] = (value, out)  # the value is kept alive: its id is not reused meanwhile
        return out

    def _container(self, value: Any, depth: int, hidden: bool, walk: _Walk) -> Any:
        if isinstance(value, Mapping):
            return self._mapping(value, depth, hidden, walk)
        items = [self._walk(v, depth, hidden, walk) for v in value]
        if isinstance(value, list):
            return items
        if isinstance(value, tuple):
            if hasattr(value, "_fields"):  # a namedtuple keeps its type
                with contextlib.suppress(Exception):
                    return type(value)(*items)
            return tuple(items)
        try:
            return type(value)(items)
        except Exception:  # a set of what is no longer hashable, or a set type of its own
            return items

    def _mapping(self, value: Mapping[Any, Any], depth: int, hidden: bool, walk: _Walk) -> Any:
        model_output = _model_output(value)
        if hidden and model_output:
            hidden = False  # {"token": {"text": " Hello", "logprob": -0.3}}: a model's token
        out = {}
        known = walk.keys
        for k, v in value.items():
            if hidden:
                # Under a secret name every text is masked ({"secrets": {"db": "pw"}}), but for
                # what a name says is about the secret, not it (a volume's "secretName").
                secret = not (k.__class__ is str and _describes_secret(k))
            elif model_output and k.__class__ is str and k == _MODEL_TOKEN:
                secret = False
            else:
                secret = known.get(k) if k.__class__ is str else None
                if secret is None:
                    secret = self._secret(k, walk)
            out[k] = self._walk(v, depth, secret, walk)
        if not hidden and ("value" in value or "Value" in value):
            for name, val in _PAIR_KEYS:
                if val in value and isinstance(value.get(name), str):
                    if self._secret(value[name], walk):
                        out[val] = self._walk(value[val], depth, True, walk)
                    break
        return out

    def _secret(self, key: Any, walk: _Walk) -> bool:
        try:
            return walk.keys[key]
        except KeyError:
            secret = walk.keys[key] = bool(self.secret_key(key))
            return secret
        except TypeError:  # an unhashable key of a Mapping of its own
            return bool(self.secret_key(key))

    def _bytes(self, value: bytes | bytearray, hidden: bool) -> Any:
        if hidden:
            return MASK if value else value
        # Bytes are text too, in some encoding: scanned as Latin-1 (every byte a character, so
        # nothing is lost), and given back as bytes unless a secret was found in them.
        text = bytes(value).decode("latin-1")
        shown = self.text(text)
        if shown == text or not isinstance(shown, str):
            return value
        return type(value)(shown.encode("latin-1", "replace"))


def _fields(value: Any) -> Any:
    """A pydantic model's dump or a dataclass instance's fields (a dict), or None for any other
    object."""
    if hasattr(type(value), "model_fields") and callable(getattr(value, "model_dump", None)):
        # model_dump() keeps SecretStr objects (they print as '**********'); redaction masks them.
        return value.model_dump(mode="python")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    return None


_DEFAULT = Redactor()


def redact(value: Any, *, _depth: int = 0) -> Any:
    """``value`` with every secret replaced by ``***``: text, or JSON-like data of the same shape.

    The rule is in this module's docstring and ``docs/secrets.md``: only text is masked; under
    a secret-looking key, text is masked and lists and mappings are walked; strings are scanned
    by :func:`redact_text`; pydantic secrets become ``***``; pydantic models and dataclasses are
    redacted as their fields. Anything else is returned unchanged. Past a depth of 64 the rest
    (and a cycle) is replaced by ``"..."``. Never raises, and takes time linear in the value.
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
