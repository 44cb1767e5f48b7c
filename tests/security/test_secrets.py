"""Issue 9, secrets: recognised by name, by value and by hook; redacted in every repr, log line,
error and CLI output; kept out of the runtime env Ray shows and out of the clusters raydrive starts.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from raydrive.core.options import RayOptions
from raydrive.core.plugins import PluginManager
from raydrive.core.runtime_env import RuntimeEnvBuilder

ROOT = Path(__file__).resolve().parents[2]
WD = ROOT / "tests" / "data" / "ray_wd"


def build(os_environ: dict[str, str], **options):
    return RuntimeEnvBuilder(RayOptions(**options), plugins=PluginManager()).build(os_environ=os_environ)


# --- what counts as a secret --------------------------------------------------------------------
@pytest.mark.parametrize(
    "name",
    [
        "SYNAPSE_APIKEY",
        "SYNAPSE_AUTH",
        "SYNAPSE_DB_PASS",
        "SYNAPSE_MYSQL_PWD",
        "SYNAPSE_SESSION_COOKIE",
        "SYNAPSE_SIGNING_KEY",
        "SYNAPSE_PRIVATE_KEY",
        "SYNAPSE_SENTRY_DSN",
        "SYNAPSE_GCP_CREDENTIALS",
        "SYNAPSE_GITHUB_TOKEN",
    ],
)
def test_widened_secret_names_travel_out_of_band(name):
    built = build({name: "value-1234", "SYNAPSE_REGION": "eu"})
    assert built.runtime_env["env_vars"] == {"SYNAPSE_REGION": "eu"}
    assert built.secrets[name] == "value-1234"


@pytest.mark.parametrize("name", ["SYNAPSE_AUTHOR", "SYNAPSE_BYPASS_CACHE", "RAY_TOKENIZERS_PARALLELISM"])
def test_names_that_only_contain_a_secret_word_are_not_secret(name):
    assert build({name: "1"}).runtime_env["env_vars"] == {name: "1"}


PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----"


@pytest.mark.parametrize(
    "value",
    ["postgres://u:hunter2@db.internal:5432/app", "Bearer abcdef0123456789", "Basic dTpodW50ZXIy", PEM],
)
def test_secret_values_travel_out_of_band_whatever_the_name(value):
    built = build({"SYNAPSE_DB_URL": value, "SYNAPSE_REGION": "eu"})
    assert built.runtime_env["env_vars"] == {"SYNAPSE_REGION": "eu"}
    assert built.secrets["SYNAPSE_DB_URL"] == value
    assert "hunter2" not in repr(built) and "abcdef0123456789" not in repr(built)


def test_submitter_connection_settings_stay_behind():
    shell = {
        "RAY_ADDRESS": "ray://head:10001",
        "RAY_USE_TLS": "1",
        "RAY_TLS_SERVER_CERT": "/etc/ray/tls/server.crt",
        "RAY_TLS_SERVER_KEY": "/etc/ray/tls/server.key",
        "RAY_TLS_CA_CERT": "/etc/ray/tls/ca.crt",
        "RAY_AUTH_TOKEN": "ray-token-123456",
        "RAY_REDIS_PASSWORD": "redis-pw",
        "RAY_JOB_HEADERS": '{"Authorization": "Bearer x"}',
        "RAY_max_grpc_message_size": "1000000",  # a Ray setting the job may need: travels
        "SYNAPSE_REGION": "eu",
    }
    built = build(shell)
    assert built.runtime_env["env_vars"] == {"RAY_max_grpc_message_size": "1000000", "SYNAPSE_REGION": "eu"}
    assert built.secrets == {}


def test_secret_value_never_reaches_the_runtime_env_ray_shows(ray_cluster, monkeypatch):
    """``env=None``: SYNAPSE_DB_URL with a password reaches the action, not Ray's state API."""
    from ray.util.state import list_actors, list_tasks

    from raydrive import RayActorExecutor

    password = f"hunter2-{uuid.uuid4().hex}"
    url = f"postgres://u:{password}@db.internal:5432/app"
    monkeypatch.setenv("SYNAPSE_DB_URL", url)
    monkeypatch.setenv("SYNAPSE_REGION", "eu-probe")
    executor = RayActorExecutor(ray_address=ray_cluster.address, working_dir=str(WD))
    try:
        seen = executor.execute("rdwd_actions.EnvPidAction", {"keys": ["SYNAPSE_DB_URL", "SYNAPSE_REGION"]})
        assert seen["os"] == {"SYNAPSE_DB_URL": url, "SYNAPSE_REGION": "eu-probe"}
        address = ray_cluster.dashboard_url
        dump = repr(list_actors(address=address, detail=True, limit=10_000)) + repr(
            list_tasks(address=address, detail=True, limit=10_000)
        )
        assert "eu-probe" in dump  # the runtime env is there, as it should be...
        assert password not in dump  # ...the password is not
        assert password not in repr(executor.last_runtime_env) and password not in repr(executor)
    finally:
        executor.shutdown()


# --- one redaction everywhere -------------------------------------------------------------------
def test_reprs_show_masks_not_secrets():
    options = RayOptions(
        ray_address="https://admin:adminpass@ray.example:8265",
        runtime_env={"env_vars": {"RD_API_TOKEN": "tok-123456"}, "config": {"setup_timeout_seconds": 60}},
        package_manager_options=["--index-url", "https://deploy:idxpass@pypi.example/simple"],
        env={"SYNAPSE_ACCESS_TOKEN": "syn-123456"},
    )
    shown = repr(options)
    for secret in ("adminpass", "tok-123456", "idxpass", "syn-123456"):
        assert secret not in shown
    assert "admin:***@ray.example" in shown and "deploy:***@pypi.example" in shown
    from raydrive import effective_config
    from raydrive.drivers.ray_jobs_api import JobsApiOptions

    jobs_api = JobsApiOptions(
        dashboard_address="https://admin:adminpass@dash.example:8265",
        headers={"Authorization": "Bearer abcdef123456"},
    )
    resolved = effective_config(
        "ray-jobs-api", dashboard_address=jobs_api.dashboard_address, token="tok-123456"
    )
    for text in (repr(jobs_api), repr(resolved)):
        assert "adminpass" not in text and "abcdef123456" not in text and "tok-123456" not in text
        assert "admin:***@dash.example" in text
    built = RuntimeEnvBuilder(
        RayOptions(
            env={"A": "1"},
            package_manager_options=["--index-url", "https://deploy:idxpass@pypi.example/simple"],
            runtime_env={"pip": ["numpy"]},
        ),
        plugins=PluginManager(),
    ).build(os_environ={})
    # Ray needs the index URL as given; only what is printed is masked.
    assert "https://deploy:idxpass@pypi.example/simple" in built.runtime_env["pip"]["pip_install_options"]
    assert "idxpass" not in repr(built) and "deploy:***@pypi.example" in repr(built)


def test_errors_never_carry_a_secret():
    from raydrive import ExecutionError, InvalidOptionsError, ServiceError, WorkingDirError, get_executor

    err = ServiceError(
        "401 from https://admin:adminpass@dash.example:8265/api/jobs/ (Authorization: Bearer abcdef123456)",
        status_code=401,
        detail={"token": "tok-123456", "hint": "postgres://u:dbpass@db/x"},
        url="https://admin:adminpass@dash.example:8265",
    )
    for text in (str(err), repr(err), err.url, json.dumps(err.detail), repr(pickle.loads(pickle.dumps(err)))):
        assert not re.search("adminpass|abcdef123456|tok-123456|dbpass", text), text
    assert "admin:***@dash.example" in str(err) and "Bearer ***" in str(err)
    remote = ExecutionError.from_exception(RuntimeError("connect failed: password=hunter2 for u"))
    assert "hunter2" not in str(remote) and "hunter2" not in remote.remote_traceback
    assert "hunter2" not in str(WorkingDirError("bad https://u:hunter2@h/x", path="x"))
    # A misspelt option whose name looks secret still says what is wrong with it.
    with pytest.raises(InvalidOptionsError) as info:
        get_executor("ray-jobs-api", auth_token="x", dashboard_address="ftp://u:optpass@h")
    assert "auth_token: unknown option" in str(info.value) and "optpass" not in str(info.value)


def _raydrive_logger_names() -> set[str]:
    names = set()
    for path in (ROOT / "raydrive").rglob("*.py"):
        text = path.read_text()
        names.update(re.findall(r"getLogger\(\"(raydrive[\w.]*)\"\)", text))
        if "getLogger(__name__)" in text:
            names.add(".".join(path.relative_to(ROOT).with_suffix("").parts))
    return names


def test_every_raydrive_logger_redacts(caplog):
    names = _raydrive_logger_names()
    assert {"raydrive.ray", "raydrive.plugins", "raydrive.cluster"} <= names
    names.add(f"raydrive.not_written_yet_{uuid.uuid4().hex[:6]}")  # a logger added later: covered too
    for name in sorted(names):
        logger = logging.getLogger(name)
        with caplog.at_level(logging.INFO, logger=name):
            logger.info("connecting to %s with GITHUB_TOKEN=%s", "https://u:logpass@h", f"ghp_{name}")
            try:
                raise ValueError("Authorization: Bearer tb-logsecret")
            except ValueError:
                logger.exception("failed")
        assert f"ghp_{name}" not in caplog.text, f"{name} logged a secret"
    text = caplog.text
    assert "logpass" not in text and "tb-logsecret" not in text
    assert "u:***@h" in text and "GITHUB_TOKEN=***" in text and "Bearer ***" in text
    with caplog.at_level(logging.INFO, logger="someone.else"):
        logging.getLogger("someone.else").info("token=%s", "theirs-123")
    assert "token=theirs-123" in caplog.text  # other libraries' records are left alone


def test_config_command_masks_secrets():
    out = subprocess.run(
        [
            sys.executable, "-m", "raydrive.cli", "config", "-e", "ray-jobs-api",
            "-o", "dashboard_address=https://admin:adminpass@dash.example:8265",
            "-o", '{"Authorization": "Bearer abcdef123456"}'.join(["headers=", ""]),
            "-o", 'runtime_env={"env_vars": {"GITHUB_TOKEN": "ghp_cfgsecret", "RD_DB": "postgres://u:dbpass@db/x"}}',
        ],
        capture_output=True, text=True, timeout=120, cwd=ROOT, env={**os.environ, "COLUMNS": "300"},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    for secret in ("adminpass", "abcdef123456", "ghp_cfgsecret", "dbpass"):
        assert secret not in out.stdout, out.stdout
    assert "admin:***@dash.example" in out.stdout and "u:***@db" in out.stdout


# --- clusters raydrive starts -------------------------------------------------------------------
PROBE = """
import json, sys
import raydrive
ex = raydrive.get_executor("ray-task", ray_address=sys.argv[1], working_dir=sys.argv[2], env={})
try:
    keys = ["AWS_SECRET_ACCESS_KEY", "GITHUB_TOKEN", "RD_PROBE_SHELL", "RAY_rd_probe_setting", "HOME"]
    print(json.dumps(ex.execute("rdwd_actions.EnvPidAction", {"keys": keys})["os"]))
finally:
    ex.shutdown()
"""


def test_local_cluster_workers_do_not_see_the_shell(tmp_path, monkeypatch):
    from raydrive.drivers.ray.cluster import LocalCluster

    planted = f"planted-{uuid.uuid4().hex}"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", planted)
    monkeypatch.setenv("GITHUB_TOKEN", planted)
    monkeypatch.setenv("RD_PROBE_SHELL", "shell-only")
    monkeypatch.setenv("RAY_rd_probe_setting", "1")  # Ray configuration travels
    cluster = LocalCluster(num_cpus=1, log_file=str(tmp_path / "head.log")).start()
    try:
        # The client process has none of them: the only way in would be the cluster's environment.
        client_env = {
            k: v for k, v in os.environ.items() if k not in {"AWS_SECRET_ACCESS_KEY", "GITHUB_TOKEN"}
        }
        client_env["PYTHONPATH"] = str(ROOT)
        proc = subprocess.run(
            [sys.executable, "-c", PROBE, cluster.address, str(WD)],
            capture_output=True, text=True, timeout=240, cwd=ROOT, env=client_env,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        seen = json.loads(proc.stdout.strip().splitlines()[-1])
        assert seen["AWS_SECRET_ACCESS_KEY"] is None and seen["GITHUB_TOKEN"] is None
        assert seen["RD_PROBE_SHELL"] is None  # not what Ray needs: stays in the shell
        assert seen["RAY_rd_probe_setting"] == "1" and seen["HOME"] == os.environ["HOME"]
    finally:
        cluster.stop()
