"""Issue 23, the redaction rule against what a careless user and an attacker send: it never
raises, never hangs (every hostile 1 MiB text is scanned in linear time: before, each of these
took minutes or raised RecursionError), never changes ordinary data, and still finds real
secrets. The rule itself is in tests/test_redaction.py and docs/secrets.md.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import json
import math
from collections import namedtuple
from collections.abc import Iterator, Mapping

import pytest
from pydantic import BaseModel, SecretStr

from raydrive.core.redaction import MASK, Redactor, is_secret_key, redact, redact_text, redact_url

MIB = 1 << 20


# --- never raises, never hangs on odd data ---------------------------------------------------------
def test_cycles_and_shared_containers_end():
    wide: dict = {}
    wide["a"] = wide
    wide["b"] = [wide, wide]  # depth alone would walk 2**64 paths
    assert redact(wide) == {"a": "...", "b": ["...", "..."]}
    shared: list = [{"password": "pw"}]
    for _ in range(60):
        shared = [shared, shared]  # a DAG: 2**60 paths, 60 lists
    shown = redact(shared)
    assert shown[0] is shown[1]  # redacted once, shared as it was
    for _ in range(60):
        shown = shown[0]
    assert shown == [{"password": MASK}]
    lst: list = []
    lst.append(lst)
    assert redact(lst) == ["..."]


@pytest.mark.parametrize("kind", [dict, list])
def test_ten_thousand_deep_nesting(kind):
    deep: object = {"password": "pw"}
    for _ in range(10_000):
        deep = {"a": deep} if kind is dict else [deep]
    shown = redact(deep)
    assert "pw" not in json.dumps(shown) and "..." in json.dumps(shown)


class _Colour(enum.Enum):
    RED = "password"


def test_keys_that_are_no_str_are_kept_as_they_are():
    doc = {1: "x", (1, "token"): "y", None: "z", 2.5: "w", _Colour.RED: "v", frozenset({1}): "u"}
    shown = redact(doc)
    assert shown == doc and list(shown) == list(doc)
    assert redact({b"password": "pw"}) == {b"password": MASK}  # a bytes name is read as text


def test_bytes_are_text_too_and_keep_their_type():
    shown = redact({"log": b"password=hunter2", "buf": bytearray(b"ok"), "token": bytearray(b"t")})
    assert shown == {"log": b"password=***", "buf": bytearray(b"ok"), "token": MASK}
    assert type(shown["buf"]) is bytearray


def test_numbers_times_and_enums_are_never_masked_even_under_a_secret_name():
    when = datetime.datetime(2026, 12, 8, 5, 0)
    doc = {
        "password": decimal.Decimal("1.50"),
        "token": when,
        "secret": datetime.date(2026, 1, 1),
        "api_key": datetime.timedelta(seconds=3),
        "auth": _Colour.RED,
        "pwd": math.nan,
        "credentials": [math.inf, -math.inf, 3 + 0j],
    }
    shown = redact(doc)
    assert shown["password"] == decimal.Decimal("1.50") and shown["token"] is when
    assert shown["secret"] == datetime.date(2026, 1, 1) and shown["auth"] is _Colour.RED
    assert math.isnan(shown["pwd"]) and shown["credentials"] == [math.inf, -math.inf, 3 + 0j]


def test_sets_frozensets_and_generators():
    assert redact({"a": {1, "x"}, "b": frozenset({"password=pw"})}) == {
        "a": {1, "x"},
        "b": frozenset({"password=***"}),
    }
    assert redact({"token": {"t1", 2}}) == {"token": {MASK, 2}}

    def gen() -> Iterator[str]:
        yield "password=pw"

    pending = gen()
    assert redact({"g": pending})["g"] is pending  # not consumed
    assert redact({"token": gen()}) == {"token": MASK}  # a secret's value it cannot look into


class _Inner(BaseModel):
    key: SecretStr
    label: str = "x"


class _Outer(BaseModel):
    inner: _Inner
    items: list[_Inner]


@dataclasses.dataclass
class _Conn:
    password: str
    port: int
    note: str = "ok"


def test_models_and_dataclasses_are_redacted_as_their_fields():
    outer = _Outer(inner=_Inner(key=SecretStr("k1")), items=[_Inner(key=SecretStr("k2"))])
    assert redact({"o": outer}) == {
        "o": {"inner": {"key": MASK, "label": "x"}, "items": [{"key": MASK, "label": "x"}]}
    }
    assert redact({"c": _Conn("hunter2", 5432)}) == {"c": {"password": MASK, "port": 5432, "note": "ok"}}


class _Hostile:
    def __repr__(self) -> str:
        raise RuntimeError("repr")

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("iter")

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("eq")

    __hash__ = object.__hash__


class _BrokenDict(dict):
    def items(self):  # type: ignore[override]
        raise RuntimeError("items")


class _BrokenMapping(Mapping):
    def __getitem__(self, key: object) -> object:
        raise RuntimeError("getitem")

    def __iter__(self) -> Iterator[str]:
        return iter(["a"])

    def __len__(self) -> int:
        return 1


class _BrokenModel(BaseModel):
    a: int = 1

    def model_dump(self, **kwargs: object) -> dict:  # type: ignore[override]
        raise RuntimeError("dump")

    def __repr__(self) -> str:
        raise RuntimeError("repr")


class _BrokenList(list):
    def __iter__(self):  # type: ignore[override]
        raise RuntimeError("iter")


def test_objects_that_raise_never_make_redact_raise():
    odd = _Hostile()
    assert redact({"a": odd})["a"] is odd and redact({"token": odd}) == {"token": MASK}
    assert redact([odd])[0] is odd
    # What cannot be read is not shown (it may hold anything), and nothing raises.
    assert redact({"d": _BrokenDict(password="pw")}) == {"d": MASK}
    assert redact({"m": _BrokenMapping()}) == {"m": MASK}
    assert redact({"model": _BrokenModel()}) == {"model": MASK}
    assert redact({"l": _BrokenList(["pw"])}) == {"l": MASK}


class _Name(str):
    pass


def test_str_subclasses_surrogates_nul_and_long_keys():
    assert redact({_Name("token"): _Name("abc"), "a": _Name("password=pw")}) == {
        "token": MASK,
        "a": "password=***",
    }
    same = _Name("plain text")
    assert redact(same) is same  # unchanged text is the very object
    assert redact({"\udcff\x00password": "\udcff\x00pw", "a": "\ud800 pass\x00word=x"}) == {
        "\udcff\x00password": MASK,
        "a": "\ud800 pass\x00word=x",
    }
    long_secret = "_".join(["x"] * 200_000) + "_password"
    long_plain = "aB" * (MIB // 2)
    assert is_secret_key(long_secret) and not is_secret_key(long_plain)
    assert not is_secret_key("_".join(["token"] * 100_000) + "_count")  # was quadratic in the words
    assert redact({long_secret: "pw", long_plain: "v"}) == {long_secret: MASK, long_plain: "v"}


def test_a_16_mib_string():
    text = "a" * (16 * MIB) + " password=pw"
    assert redact(text) == "a" * (16 * MIB) + " password=***"


HOSTILE = {
    "a: repeated": "a:" * (MIB // 2),
    "= repeated": "=" * MIB,
    "a= repeated": "a=" * (MIB // 2),
    "x=x= chained": "x=" * (MIB // 2) + "x",
    "a=b: chained": "a=b:" * (MIB // 4),
    "a:a nested": "a:a" * (MIB // 3),
    "Bearer + 1 MiB": "Bearer " + "a" * MIB,
    "Bearer repeated": "Bearer " * (MIB // 7),
    "Basic repeated": "Basic QUFB " * (MIB // 11),
    "https:// + 1 MiB + @": "https://" + "a" * MIB + "@",
    "https:// repeated": "https://" * (MIB // 8),
    "scheme://user: repeated": "a://a:" * (MIB // 6),
    "scheme:// then a: to the end": "x://" + "a:" * (MIB // 2),
    "scheme-like run": "a-" * (MIB // 2) + "://u:p@h",
    "url with @ repeated": "s://u:p@" * (MIB // 8),
    "unclosed PEM": "-----BEGIN RSA PRIVATE KEY-----" + "A" * MIB,
    "PEM heads repeated": "-----BEGIN " + "A " * (MIB // 2),
    "password= repeated": "password=" * (MIB // 9),
    'password=" unclosed repeated': 'password="' * (MIB // 10),
    "long name then =": "a_" * (MIB // 2) + "token=x",
    "spaces then =": "a" + " " * MIB + "=",
    "open JSON objects": '{"a": ' * (MIB // 6),
    "--token repeated": "--token " * (MIB // 8),
}


@pytest.mark.timeout(60)  # a hang guard, not a timing: each was minutes before, or RecursionError
@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_text_is_scanned_in_linear_time(name):
    text = HOSTILE[name]
    shown = redact_text(text)
    assert isinstance(shown, str)
    assert redact({"k": text}) == {"k": shown}


def test_what_hostile_text_shows():
    assert redact_text(HOSTILE["long name then ="]) == "a_" * (MIB // 2) + "token=***"
    assert redact_text(HOSTILE["unclosed PEM"]) == MASK
    assert redact_text(HOSTILE["scheme-like run"]).endswith("://u:***@h")
    assert redact_text("password=a " * 4) == "password=*** " * 4


# --- ordinary data comes back unchanged --------------------------------------------------------------
class _Count(int):
    pass


_Point = namedtuple("_Point", "x y")


def test_ordinary_data_keeps_its_order_types_and_shapes():
    doc = {
        "z": 1,
        "a": (1, [2, (3,)]),
        7: True,
        "flag": False,
        "count": _Count(5),
        "point": _Point(1.5, "x"),
        "small": 1e-07,
        "big": 1.0e300,
        "neg": -0.0,
        "empty": {"l": [], "d": {}, "t": (), "s": ""},
        "none": None,
    }
    shown = redact(doc)
    assert shown == doc and list(shown) == list(doc)
    assert shown["flag"] is False and type(shown["count"]) is _Count and type(shown["point"]) is _Point
    assert isinstance(shown["a"], tuple) and isinstance(shown["a"][1], list)
    assert json.dumps(shown) == json.dumps(doc)  # float formatting, -0.0 included


@pytest.mark.parametrize(
    "env",
    [
        [{"name": "DB_PASSWORD", "value": "pw"}],
        [{"value": "pw", "name": "DB_PASSWORD"}],
        [{"name": "DB_PASSWORD", "value": "pw", "extra": 1}],
    ],
)
def test_kubernetes_env_in_both_orders_and_with_extra_keys(env):
    shown = redact({"env": env})["env"][0]
    assert shown["value"] == MASK and list(shown) == list(env[0])
    ref = {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}
    assert redact({"env": [ref]}) == {"env": [ref]}


# --- real secrets are found --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("postgresql+psycopg://app:hunter2@db:5432/app", "postgresql+psycopg://app:***@db:5432/app"),
        ("postgres://u:p@ss@db/app", "postgres://u:***@db/app"),  # an "@" in the password
        ("postgres://u:p:w@db/app", "postgres://u:***@db/app"),
        ("postgres://u:p%40ss@db/app", "postgres://u:***@db/app"),
        ("postgres://u:pw@[::1]:5432/app", "postgres://u:***@[::1]:5432/app"),
        ("postgres://u:pw@[2001:db8::1]/app", "postgres://u:***@[2001:db8::1]/app"),
        ("smtp://me@mail.org:pw@smtp.mail.org:587", "smtp://me@mail.org:***@smtp.mail.org:587"),
        ("redis://:pw@cache:6379/0", "redis://:***@cache:6379/0"),
        ("jdbc:mysql://u:pw@h/db", "jdbc:mysql://u:***@h/db"),
    ],
)
def test_url_passwords_in_every_scheme(text, shown):
    assert redact_text(text) == shown and redact_url(text) == shown


@pytest.mark.parametrize(
    "text", ["https://host:8080/path", "https://host?next=a@b.com", "https://medium.com/@user", "s3://b/k"]
)
def test_urls_without_a_password_are_left_alone(text):
    assert redact_text(text) == text


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("Authorization: Bearer abcdef", "Authorization: Bearer ***"),  # a word-like token too
        ('{"Authorization": "Bearer abc def"}', '{"Authorization": "Bearer ***"}'),
        ("authorization=Basic dXNlcjpwYXNz", "authorization=Basic ***"),
        ("-----BEGIN EC PRIVATE KEY-----\nMHc\n-----END EC PRIVATE KEY-----", MASK),
        ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3B\n-----END OPENSSH PRIVATE KEY-----", MASK),
        ("-----BEGIN ENCRYPTED PRIVATE KEY-----\nMII\n-----END ENCRYPTED PRIVATE KEY-----", MASK),
        ("-----BEGIN PGP PRIVATE KEY BLOCK-----\nlQ\n-----END PGP PRIVATE KEY BLOCK-----", MASK),
        ("export AWS_SECRET_ACCESS_KEY=wJalr/K7MDENG+bPxRfi", "export AWS_SECRET_ACCESS_KEY=***"),
        ('{"password": "my pass phrase", "n": 1}', '{"password": "***", "n": 1}'),
        ("{'password': 'p w'}", "{'password': '***'}"),
        ('{"cfg": "{\\"password\\": \\"hunter2\\"}"}', '{"cfg": "{\\"password\\": \\"***\\"}"}'),
        ("mysql --password hunter2 --user bob", "mysql --password *** --user bob"),
        ("tool --token=abc123 --verbose", "tool --token=*** --verbose"),
        ("tool --api-key 'a b' --token --verbose", "tool --api-key '***' --token --verbose"),
        ("GET /v1/x?token=abc123&page=2", "GET /v1/x?token=***&page=2"),
        ("GET /v1/x?a=1&api_key=abc123", "GET /v1/x?a=1&api_key=***"),
        ("DB_PASSWORD='p w' make", "DB_PASSWORD='***' make"),
    ],
)
def test_secrets_in_text(text, shown):
    assert redact_text(text) == shown


def test_json_text_is_masked_as_its_data_is():
    doc = {"password": 1234, "api_key": "sk-1", "max_tokens": 5, "auth": None}
    assert redact_text(json.dumps(doc)) == json.dumps(redact(doc))
    assert redact_text("password=1234") == "password=***"  # an env or CLI value is text


# --- the judgement calls (docs/secrets.md) ---------------------------------------------------------
def test_text_under_a_secret_name_is_masked_except_names_about_the_secret():
    doc = {"credentials": {"username": "bob", "password": "pw", "token_type": "bearer", "expires_in": 3600}}
    shown = {"username": MASK, "password": MASK, "token_type": "bearer", "expires_in": 3600}
    assert redact(doc) == {"credentials": shown}
    assert redact({"secrets": {"db": "pw"}}) == {"secrets": {"db": MASK}}
    volume = {"name": "certs", "secret": {"secretName": "tls-certs"}}  # a Kubernetes volume
    assert redact(volume) == volume


def test_a_model_output_record_exempts_its_token_only():
    record = {"token": "Hello", "logprob": -0.1, "api_key": "sk-1", "password": "pw"}
    assert redact(record) == {"token": "Hello", "logprob": -0.1, "api_key": MASK, "password": MASK}
    assert redact({"token": "hf_x", "top_logprobs": []}) == {"token": "hf_x", "top_logprobs": []}
    assert redact({"token": "hf_x", "expires": 1}) == {"token": MASK, "expires": 1}


def test_cloud_credential_names():
    assert is_secret_key("AWS_ACCESS_KEY_ID")  # AWS CLI masks it too (aws configure list)
    assert not is_secret_key("GOOGLE_APPLICATION_CREDENTIALS")  # a path, as *_FILE names
    key = "-----BEGIN PRIVATE KEY-----\nMII\n-----END PRIVATE KEY-----\n"
    pasted = json.dumps({"type": "service_account", "private_key": key})
    assert "MII" not in redact({"GOOGLE_APPLICATION_CREDENTIALS": pasted})["GOOGLE_APPLICATION_CREDENTIALS"]


def test_a_redactor_with_its_own_tests_follows_the_same_walk():
    redactor = Redactor(secret_key=lambda key: key == "db", text=lambda text: text.upper())
    assert redactor.data({"db": "pw", "x": ["a", {"db": 1}]}) == {"db": MASK, "x": ["A", {"db": 1}]}
