"""Issue 23, the one redaction rule: it masks only what can be a secret and never changes data
otherwise. Held to a corpus of real names (tests/data/secret_names.json) and to each case the
issue reports. Where the secrets go (runtime envs, logs, errors, the CLI) is in
tests/security/test_secrets.py.
"""

from __future__ import annotations

import doctest
import inspect
import json
from pathlib import Path

import pytest
from pydantic import BaseModel, SecretBytes, SecretStr

from raydrive.core import redaction
from raydrive.core.redaction import MASK, is_secret_key, looks_secret_value, redact, redact_text

CORPUS = json.loads((Path(__file__).parent / "data" / "secret_names.json").read_text())
LABELLED = sorted(
    {
        (name, label == "secret")
        for group in CORPUS["groups"].values()
        for label in ("secret", "ordinary")
        for name in group[label]
    }
)


# --- the corpus ----------------------------------------------------------------------------------
def test_the_corpus_is_large_and_each_name_has_one_label():
    names = {name for name, _ in LABELLED}
    assert len(names) >= 300
    assert len(names) == len(LABELLED), "a name is labelled both secret and ordinary"
    assert sum(secret for _, secret in LABELLED) >= 60


@pytest.mark.parametrize(("name", "secret"), LABELLED, ids=[name for name, _ in LABELLED])
def test_corpus_name(name, secret):
    assert is_secret_key(name) is secret
    shown = redact({name: "value-1234", "other": 1})
    assert shown == {name: MASK if secret else "value-1234", "other": 1}
    assert (redact_text(f"{name}=value-1234") == f"{name}={MASK}") is secret


def test_zero_ordinary_masked_and_zero_secret_missed_over_the_whole_corpus():
    masked = [name for name, secret in LABELLED if not secret and is_secret_key(name)]
    missed = [name for name, secret in LABELLED if secret and not is_secret_key(name)]
    assert (masked, missed) == ([], [])


@pytest.mark.parametrize("entry", CORPUS["values"], ids=[e["name"] for e in CORPUS["values"]])
def test_values_that_are_no_text_come_back_unchanged(entry):
    doc = {entry["name"]: entry["value"]}
    assert redact(doc) == doc


# --- the cases issue 23 reports (each failed before) ---------------------------------------------
def test_ml_params_and_results_come_back_unchanged():
    params = {"max_tokens": 512, "num_tokens": 3, "token_count": 7, "prompt": "hi"}
    assert redact(params) == params
    result = {"total_tokens": 99, "tokens_generated": 1234, "tokens_per_second": [31.5, 32.0]}
    assert redact(result) == result
    metrics = {"metrics": {"tokens": 5, "tokenizer": "gpt2"}}
    assert redact(metrics) == metrics


@pytest.mark.parametrize(
    "name",
    ["max_tokens", "num_tokens", "token_count", "total_tokens", "tokens_generated", "tokens_per_second",
     "password_strength", "credential_count", "cookie_policy", "secret_santa", "tokens", "tokenizer"],
)  # fmt: skip
def test_names_that_count_limit_or_describe_are_not_secret(name):
    assert not is_secret_key(name)
    assert redact({name: "strong"}) == {name: "strong"}
    assert redact_text(f"{name}=strong {name}: 7") == f"{name}=strong {name}: 7"


def test_a_mapping_under_a_secret_name_is_walked_not_replaced():
    assert redact({"SYNAPSE_ACCESS_TOKEN": {"seen": True}}) == {"SYNAPSE_ACCESS_TOKEN": {"seen": True}}
    nested = {"credentials": {"username": "bob", "password": "pw-1", "expires_in": 3600, "renew": None}}
    shown = {"username": MASK, "password": MASK, "expires_in": 3600, "renew": None}
    assert redact(nested) == {"credentials": shown}
    assert redact({"api_keys": ["sk-1", "sk-2", 7, False]}) == {"api_keys": [MASK, MASK, 7, False]}


def test_only_text_is_masked_under_a_secret_name():
    doc = {"password": 1234, "token": 3.5, "api_key": True, "secret": None, "hub_token": ""}
    assert redact(doc) == doc
    assert redact({"password": "1234", "token": b"raw"}) == {"password": MASK, "token": MASK}


def test_kubernetes_env_pairs_are_masked_by_their_name():
    env = [
        {"name": "DB_PASSWORD", "value": "hunter2"},
        {"name": "MAX_TOKENS", "value": "512"},
        {"name": "GITHUB_TOKEN", "valueFrom": {"secretKeyRef": {"name": "gh", "key": "token"}}},
        {"Name": "API_KEY", "Value": "k-1"},
    ]
    assert redact({"env": env}) == {
        "env": [
            {"name": "DB_PASSWORD", "value": MASK},
            {"name": "MAX_TOKENS", "value": "512"},
            {"name": "GITHUB_TOKEN", "valueFrom": {"secretKeyRef": {"name": "gh", "key": "token"}}},
            {"Name": "API_KEY", "Value": MASK},
        ]
    }


def test_a_model_token_with_its_logprob_is_no_credential():
    top = [{"token": "Hi", "logprob": -2.0}]
    entry = {"token": "Hello", "logprob": -0.31, "bytes": [72], "top_logprobs": top}
    assert redact({"content": [entry]}) == {"content": [entry]}
    stream = {"token": {"id": 15043, "text": " Hello", "logprob": -0.31, "special": False}}
    assert redact(stream) == stream
    assert redact({"token": "hf_abcdefghijklmnopqrstuvwxyz"}) == {"token": MASK}  # the HF hub kwarg


# --- secrets are still found -----------------------------------------------------------------------
PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("postgres://u:hunter2@db:5432/app", "postgres://u:***@db:5432/app"),
        ("Authorization: Basic dTpodW50ZXIy", "Authorization: Basic ***"),
        ("Authorization: Bearer abcdef0123456789", "Authorization: Bearer ***"),
        ("curl -H 'Authorization: Token 9944b09199c62bcf9418'", "curl -H 'Authorization: Token ***'"),
        (f"key:\n{PEM}\n", "key:\n***\n"),
        ("connect failed: password=hunter2 for u", "connect failed: password=*** for u"),
        ('{"api_token": "abc", "max_tokens": 512, "auth": true}',
         '{"api_token": "***", "max_tokens": 512, "auth": true}'),
        ("Protocol=https;AccountName=a;AccountKey=c2VjcmV0;", "Protocol=https;AccountName=a;AccountKey=***;"),
    ],
)  # fmt: skip
def test_secret_values_in_text(text, shown):
    assert redact_text(text) == shown
    assert looks_secret_value(text)


@pytest.mark.parametrize(
    "text",
    [
        "Basic usage: call generate() with max_tokens=512",
        "the bearer of the checkpoint is rank 0",
        "token length 12 exceeds the limit; token 50256 is EOS",
        "Token limit: 4096 tokens",
        "eval at 2024-01-01T00:00:00 step: 10 loss: 0.25",
        "Basic Authentication is off",
    ],
)
def test_prose_is_left_alone(text):
    assert redact_text(text) == text
    assert not looks_secret_value(text)


def test_pydantic_secrets_are_masked_by_type_whatever_the_name():
    class Params(BaseModel):
        prompt: str
        db: SecretStr
        blob: SecretBytes
        max_tokens: int

    params = Params(prompt="hi", db=SecretStr("pw-1"), blob=SecretBytes(b"b"), max_tokens=9)
    shown = redact({"params": params})
    assert shown == {"params": {"prompt": "hi", "db": MASK, "blob": MASK, "max_tokens": 9}}
    assert redact([SecretStr("x")]) == [MASK]


def test_whole_words_not_substrings():
    assert not is_secret_key("AUTHOR") and not is_secret_key("BYPASS") and not is_secret_key("OLDPWD")
    assert is_secret_key("MYSQL_PWD") and not is_secret_key("PWD")  # $PWD is the working directory
    assert is_secret_key("dbPassword") and is_secret_key("NGROK_AUTHTOKEN") and is_secret_key("xApiKey")
    assert not is_secret_key("sort_key") and not is_secret_key("input_key")
    assert is_secret_key("RAILS_MASTER_KEY") and is_secret_key("SECRET_KEY_BASE")
    assert is_secret_key("DB_PASSWORD_PROD") and is_secret_key("api_key_v2")
    assert not is_secret_key("password_file") and not is_secret_key("token_url")
    assert not is_secret_key("secret_name")


def test_odd_input_never_raises_and_depth_is_bounded():
    deep: object = "leaf"
    for _ in range(200):
        deep = {"a": [deep]}
    assert json.dumps(redact(deep)).count("...") == 1
    assert redact({1: "x", None: "y", ("t",): "z"}) == {1: "x", None: "y", ("t",): "z"}
    assert redact("\udcff password=\x00x") == "\udcff password=***"
    odd = object()
    assert redact({"k": odd})["k"] is odd and redact({"token": odd}) == {"token": MASK}


def test_pipeline_masker_follows_the_same_rule():
    from raydrive.drivers.ray_pipeline.payload import SecretMasker

    masker = SecretMasker(keys={"db"})
    masker.learn({"db": "planted-pw-1", "max_tokens": 512})
    doc = {
        "db": "planted-pw-1",
        "max_tokens": 512,
        "SYNAPSE_ACCESS_TOKEN": {"seen": True},
        "log": "pw planted-pw-1",
    }
    assert masker.data(doc) == {
        "db": MASK,
        "max_tokens": 512,
        "SYNAPSE_ACCESS_TOKEN": {"seen": True},
        "log": f"pw {MASK}",
    }


def test_public_names_and_signatures_are_kept():
    for name in ("redact", "redact_text", "redact_url", "is_secret_key", "looks_secret_value", "MASK",
                 "RedactingFilter", "install_log_redaction", "add_secret_names"):  # fmt: skip
        assert name in redaction.__all__
    assert list(inspect.signature(redact).parameters) == ["value", "_depth"]
    for func in (redact_text, redaction.redact_url, is_secret_key, looks_secret_value):
        assert len(inspect.signature(func).parameters) == 1


def test_the_examples_in_docs_secrets_hold():
    docs = Path(__file__).resolve().parents[1] / "docs" / "secrets.md"
    outcome = doctest.testfile(str(docs), module_relative=False, verbose=False)
    assert outcome.attempted >= 4 and outcome.failed == 0
