"""The `raydrive` console script, run for real in subprocesses."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conditions import answer, wait_for

HERE = Path(__file__).parent
REPO = HERE.parent
RAYDRIVE = str(Path(sys.executable).with_name("raydrive"))


def cli(*args: str, env: dict | None = None, timeout: float = 300, cwd: Path | None = None):
    full_env = {**os.environ, "RAYDRIVE_HOME": os.environ.get("RAYDRIVE_HOME", ""), **(env or {})}
    if not full_env["RAYDRIVE_HOME"]:
        full_env.pop("RAYDRIVE_HOME")
    return subprocess.run(
        [RAYDRIVE, *args], capture_output=True, text=True, timeout=timeout, env=full_env, cwd=cwd or REPO
    )


def test_console_script_is_installed():
    assert Path(RAYDRIVE).exists() or shutil.which("raydrive")


def test_drivers_lists_every_builtin_driver():
    out = cli("drivers")
    assert out.returncode == 0, out.stderr
    for name in ("local", "ray-actor", "ray-task", "ray-job", "ray-jobs-api", "ray-pipeline"):
        assert name in out.stdout


def test_plugins_lists_builtin_policies_and_blocking():
    out = cli("plugins", env={"RAYDRIVE_DISABLE_PLUGINS": "wheels", "COLUMNS": "200"})
    assert out.returncode == 0, out.stderr
    assert "requirements" in out.stdout and "raydrive_collect_packages" in out.stdout
    assert "blocked by RAYDRIVE_DISABLE_PLUGINS: wheels" in out.stdout


def test_config_shows_values_and_sources(tmp_path):
    (tmp_path / "raydrive.toml").write_text('executor = "local"\n[local]\nmax_workers = 3\n')
    out = cli("config", env={"RAYDRIVE_MAX_WORKERS": "6", "COLUMNS": "200"}, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "env:RAYDRIVE_MAX_WORKERS" in out.stdout and "6" in out.stdout
    assert str(tmp_path / "raydrive.toml") in out.stdout


def test_run_prints_the_result_as_json(tmp_path):
    params = tmp_path / "params.json"
    params.write_text('{"a": 20, "b": 22}')
    out = cli("run", "tests.actions_for_tests.AddAction", "--params", f"@{params}", "-e", "local")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"total": 42}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("run", "tests.actions_for_tests.AddAction", "-p", '{"a": "x"}', "-e", "local"), "ValidationError"),
        (("run", "tests.actions_for_tests.AddAction", "-e", "nope"), "DriverNotFoundError"),
        (("run", "tests.actions_for_tests.AddAction", "-e", "local", "-o", "max_wrokers=2"), "max_wrokers"),
        (("run", "tests.actions_for_tests.BoomAction", "-e", "local"), "ExecutionError"),
        (
            ("run", "x.Y", "-e", "ray-actor", "-o", "ray_address=127.0.0.1:1", "-o", "connect_timeout=2"),
            "ClusterUnreachableError",
        ),
    ],
)
def test_user_errors_are_one_line_and_exit_2(args, expected):
    out = cli(*args)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert expected in out.stderr
    assert "Traceback" not in out.stderr


def test_verbose_shows_the_traceback():
    quiet = cli("run", "tests.actions_for_tests.BoomAction", "-e", "local")
    assert quiet.returncode == 2
    assert "run with --verbose" in quiet.stderr
    assert "Traceback" not in quiet.stderr and "raise RuntimeError" not in quiet.stderr

    out = cli("--verbose", "run", "tests.actions_for_tests.BoomAction", "-e", "local")
    assert out.returncode == 2
    # The action's own traceback, down to the line that raised, and no hint to do what was done.
    assert "Remote traceback:" in out.stderr
    assert "raise RuntimeError(self.params.message)" in out.stderr
    assert "run with --verbose" not in out.stderr


@pytest.fixture(scope="module")
def cli_plugin(tmp_path_factory) -> str:
    """A working dir in which ``tests.actions_for_tests`` imports, as it does here."""
    root = tmp_path_factory.mktemp("cli_plugin")
    (root / "tests").mkdir()
    (root / "tests" / "__init__.py").write_text("")
    shutil.copy(HERE / "actions_for_tests.py", root / "tests" / "actions_for_tests.py")
    return str(root)


@pytest.mark.ray
def test_run_submit_status_result_on_ray(ray_cluster, cli_plugin):
    out = cli(
        "run",
        "tests.actions_for_tests.AddAction",
        "-p",
        '{"a": 1}',
        "-e",
        "ray-actor",
        "-w",
        cli_plugin,
        "-o",
        f"ray_address={ray_cluster.address}",
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"total": 2}
    opts = ["-e", "ray-job", "-o", f"ray_address={ray_cluster.address}"]
    wd = ["-w", cli_plugin]
    out = cli(
        "submit", "tests.actions_for_tests.AddAction", "-p", '{"a": 5}', *opts, *wd, "--job-id", "cli-job-1"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "cli-job-1"
    out = cli("result", "cli-job-1", "--timeout", "120", *opts)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"total": 6}
    out = cli("status", "cli-job-1", *opts)
    assert out.stdout.strip() == "SUCCEEDED"


@pytest.mark.ray
def test_jobs_api_logs_follow(ray_cluster, cli_plugin):
    opts = ["-e", "ray-jobs-api", "-o", f"dashboard_address={ray_cluster.dashboard_url}"]
    out = cli("submit", "tests.actions_for_tests.AddAction", "-p", '{"a": 2}', *opts, "-w", cli_plugin)
    assert out.returncode == 0, out.stderr
    job_id = out.stdout.strip()
    out = cli("logs", job_id, "--follow", *opts)
    assert out.returncode == 0, out.stderr
    assert "[PROGRESS] 1/1 (add)" in out.stdout
    out = cli("result", job_id, *opts)
    assert json.loads(out.stdout) == {"total": 3}
    out = cli("stop", job_id, *opts)
    assert out.returncode == 0 and "not running" in out.stdout


@pytest.fixture
def service_process(tmp_path):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [RAYDRIVE, "service", "--port", str(port), "--db", str(tmp_path / "svc.db")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    import httpx

    def healthy() -> bool:
        response = answer(lambda: httpx.get(f"{url}/health"))
        return response is not None and response.status_code == 200

    try:
        wait_for(healthy, 30, "the raydrive service to start")
    except BaseException:
        proc.kill()
        raise
    yield url
    proc.terminate()
    proc.wait(20)


@pytest.mark.ray
def test_pipeline_commands(ray_cluster, service_process, tmp_path):
    plugin = tmp_path / "plugin"
    plugin.mkdir()
    shutil.copy(HERE / "actions_pipeline.py", plugin / "cli_pipeline_actions.py")
    opts = ["--service-url", service_process, "-w", str(plugin), "-o", f"ray_address={ray_cluster.address}"]
    marker = tmp_path / "fail"
    marker.write_text("x")
    params = json.dumps({"source": "cli", "rows": 2, "fail_marker": str(marker)})
    steps = [f"cli_pipeline_actions.{n}" for n in ("LoadAction", "ScaleAction", "SumAction")]
    out = cli("pipeline", "run", *steps, "-n", "cli", "-p", params, *opts, env={"COLUMNS": "200"})
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert "failed" in out.stdout and "marker present" in out.stderr
    out = cli("pipeline", "list", "--service-url", service_process, env={"COLUMNS": "200"})
    assert out.returncode == 0 and "failed" in out.stdout
    failed_id = out.stdout.split("│")[1].strip() if "│" in out.stdout else None
    import httpx

    runs = httpx.get(f"{service_process}/api/v1/runs/").json()
    failed_id = runs[0]["id"]
    marker.unlink()
    out = cli("pipeline", "resume", failed_id, *opts, env={"COLUMNS": "200"})
    assert out.returncode == 0, (out.stdout, out.stderr)
    assert "completed" in out.stdout and '"total": 10' in out.stdout
    slow = json.dumps({"seconds": 60})
    out = cli(
        "pipeline", "run", "cli_pipeline_actions.SlowAction", "-n", "slow", "-p", slow, "--no-watch", *opts
    )
    assert out.returncode == 0, out.stderr
    run_id = out.stdout.strip()
    out = cli(
        "pipeline",
        "cancel",
        run_id,
        "--service-url",
        service_process,
        "-o",
        f"ray_address={ray_cluster.address}",
    )
    assert out.returncode == 0, out.stderr
    out = cli("pipeline", "watch", run_id, "--service-url", service_process)
    assert out.returncode == 0 and "cancelled" in out.stdout


def test_cluster_up_status_down(tmp_path):
    import socket

    ports = []
    for _ in range(3):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
    env = {"RAYDRIVE_HOME": str(tmp_path)}
    out = cli(
        "cluster",
        "up",
        "--num-cpus",
        "1",
        "--port",
        str(ports[0]),
        "--dashboard-port",
        str(ports[1]),
        "--client-port",
        str(ports[2]),
        env=env,
        timeout=180,
    )
    try:
        assert out.returncode == 0, out.stderr
        assert f"127.0.0.1:{ports[0]}" in out.stdout
        status = cli("cluster", "status", env=env)
        assert status.returncode == 0 and "running" in status.stdout
    finally:
        down = cli("cluster", "down", env=env, timeout=120)
    assert down.returncode == 0 and "stopped" in down.stdout
    assert cli("cluster", "status", env=env).returncode == 1


def test_demo_end_to_end_cleans_up(tmp_path):
    out = cli("demo", "--num-cpus", "2", env={"COLUMNS": "200"}, timeout=900, cwd=tmp_path)
    assert out.returncode == 0, (out.stdout[-3000:], out.stderr[-3000:])
    for driver in ("ray-actor", "ray-job", "ray-jobs-api", "ray-pipeline"):
        assert driver in out.stdout
    assert "holdout r2" in out.stdout and "[PROGRESS]" in out.stdout
    assert "Everything the demo started has been stopped." in out.stdout
    lines = [line for line in out.stdout.splitlines() if "127.0.0.1:" in line and line.startswith("Ray ")]
    gcs = lines[0].split()[1]
    left = subprocess.run(
        ["pgrep", "-f", "--", f"--port={gcs.split(':')[1]}"], capture_output=True, text=True
    )
    assert left.stdout.strip() == "", "the demo's Ray head is still running"
