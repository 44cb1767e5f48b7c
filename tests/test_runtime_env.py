"""The runtime env the builder produces, through the real built-in policies."""

from __future__ import annotations

import logging

import pytest

from raydrive import WorkingDirError
from raydrive.core.options import RayOptions
from raydrive.core.plugins import PluginManager
from raydrive.core.runtime_env import RuntimeEnvBuilder
from raydrive.policies.requirements import parse_requirements

WD = "${RAY_RUNTIME_ENV_CREATE_WORKING_DIR}"


def build(os_environ=None, **options):
    return RuntimeEnvBuilder(RayOptions(**options), plugins=PluginManager()).build(
        os_environ=os_environ or {}
    )


def test_requirements_with_option_lines(tmp_path):
    (tmp_path / "requirements.txt").write_text(
        "# comment\n\nnumpy>=1.26  # inline\n--extra-index-url https://mirror/simple\n"
        "-f '/opt/my wheels'\npandas\n"
    )
    env = build(working_dir=tmp_path).runtime_env
    assert env["pip"]["packages"] == ["numpy>=1.26", "pandas"]
    assert env["pip"]["pip_install_options"] == [
        "--upgrade",
        "--extra-index-url",
        "https://mirror/simple",
        "-f",
        "/opt/my wheels",
    ]
    assert env["working_dir"] == str(tmp_path.resolve())


def test_explicit_requirements_file_wins(tmp_path):
    (tmp_path / "requirements.txt").write_text("numpy\n")
    (tmp_path / "other.txt").write_text("scipy\n")
    env = build(working_dir=tmp_path, requirements_file="other.txt").runtime_env
    assert env["pip"]["packages"] == ["scipy"]
    with pytest.raises(WorkingDirError, match="does not exist"):
        build(working_dir=tmp_path, requirements_file=tmp_path / "missing.txt")


def test_wheels_are_added_from_the_working_dir(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "b_pkg-1.0-py3-none-any.whl").write_bytes(b"")
    (wheels / "a_pkg-1.0-py3-none-any.whl").write_bytes(b"")
    (tmp_path / "requirements.txt").write_text("wheels/a_pkg-1.0-py3-none-any.whl\nrequests\n")
    env = build(working_dir=tmp_path).runtime_env
    assert env["pip"]["packages"] == [
        f"{WD}/wheels/a_pkg-1.0-py3-none-any.whl",
        "requests",
        f"{WD}/wheels/b_pkg-1.0-py3-none-any.whl",
    ]


def test_uv_gets_no_cache_and_user_options_without_duplicates(tmp_path):
    (tmp_path / "requirements.txt").write_text("numpy\n")
    env = build(
        working_dir=tmp_path, package_manager="uv", package_manager_options=["--no-cache", "--system"]
    ).runtime_env
    assert "pip" not in env
    assert env["uv"] == {"packages": ["numpy"], "uv_pip_install_options": ["--no-cache", "--system"]}


def test_no_packages_means_no_pip_or_uv_section(tmp_path):
    for manager in ("pip", "uv"):
        env = build(working_dir=tmp_path, package_manager=manager).runtime_env
        assert "pip" not in env and "uv" not in env


def test_explicit_env_travels_as_given():
    env = build(
        env={"MODEL": "yolo", "RAY_DEDUP_LOGS": "0"},
        os_environ={"SYNAPSE_FOO": "x", "GITHUB_TOKEN": "ghp_planted"},
    ).runtime_env
    assert env["env_vars"] == {"MODEL": "yolo", "RAY_DEDUP_LOGS": "0"}


def test_env_none_takes_only_synapse_and_ray_prefixes():
    built = build(
        os_environ={
            "SYNAPSE_PLUGIN_ID": "7",
            "RAY_DEDUP_LOGS": "0",
            "GITHUB_TOKEN": "ghp_planted",
            "HOME": "/root",
            "RAY_ADDRESS": "ray://elsewhere:10001",
            "RAY_AUTH_TOKEN": "ray-token-planted",
            "RAY_CLIENT_MODE": "0",
        }
    )
    assert built.runtime_env["env_vars"] == {"SYNAPSE_PLUGIN_ID": "7", "RAY_DEDUP_LOGS": "0"}
    assert "ghp_planted" not in repr(built) and "ghp_planted" not in str(built.env)
    assert "ray-token-planted" not in str(built.env)


def test_credentials_present_become_secrets_not_env_vars():
    built = build(
        os_environ={
            "SYNAPSE_HOST": "https://synapse.example",
            "SYNAPSE_ACCESS_TOKEN": "syn-planted-token",
        }
    )
    assert built.secrets["SYNAPSE_ACCESS_TOKEN"] == "syn-planted-token"
    assert "syn-planted-token" not in str(built.runtime_env) and "syn-planted-token" not in repr(built)
    assert built.env["SYNAPSE_HOST"] == "https://synapse.example"


def test_credentials_do_not_override_the_callers_values():
    built = build(env={"SYNAPSE_HOST": "mine"}, os_environ={"SYNAPSE_HOST": "from-os"})
    assert built.env["SYNAPSE_HOST"] == "mine"


def test_credentials_absent_inject_nothing(monkeypatch, tmp_path):
    monkeypatch.setenv("RAYDRIVE_CREDENTIALS_FILE", str(tmp_path / "none"))
    built = build(env={})
    assert built.secrets == {} and "env_vars" not in built.runtime_env


def test_credentials_file_is_a_fallback(tmp_path):
    creds = tmp_path / "credentials"
    creds.write_text("# synapse\nexport SYNAPSE_HOST=https://h\nSYNAPSE_ACCESS_TOKEN='file-planted'\n")
    built = build(env={}, os_environ={"RAYDRIVE_CREDENTIALS_FILE": str(creds)})
    assert built.secrets == {"SYNAPSE_HOST": "https://h", "SYNAPSE_ACCESS_TOKEN": "file-planted"}


def test_user_runtime_env_is_merged(tmp_path):
    (tmp_path / "requirements.txt").write_text("numpy\n")
    built = build(
        working_dir=tmp_path,
        env={"A": "1"},
        runtime_env={
            "pip": {"packages": ["torch==2.0.0"], "pip_check": False},
            "env_vars": {"CUDA_VISIBLE_DEVICES": "0,1", "HF_TOKEN": "hf_planted"},
            "config": {"setup_timeout_seconds": 60},
        },
    )
    env = built.runtime_env
    assert env["pip"] == {
        "packages": ["torch==2.0.0", "numpy"],
        "pip_check": False,
        "pip_install_options": ["--upgrade"],
    }
    assert env["env_vars"] == {"A": "1", "CUDA_VISIBLE_DEVICES": "0,1"}
    assert env["config"] == {"setup_timeout_seconds": 60}
    assert built.secrets == {"HF_TOKEN": "hf_planted"}


def test_missing_working_dir_fails_before_submission(tmp_path):
    with pytest.raises(WorkingDirError, match="does not exist"):
        build(working_dir=tmp_path / "nope")


def test_packaged_working_dir_is_referred_to_by_uri(tmp_path):
    (tmp_path / "plugin.py").write_text("X = 1\n")
    builder = RuntimeEnvBuilder(RayOptions(working_dir=tmp_path), plugins=PluginManager())
    first = builder.build(package=True, os_environ={})
    assert first.runtime_env["working_dir"].startswith("gcs://_ray_pkg_")
    assert "excludes" not in first.runtime_env
    assert builder.build(package=True, os_environ={}).package is first.package


def test_options_repr_and_logs_show_no_secret(caplog):
    options = RayOptions(env={"SYNAPSE_ACCESS_TOKEN": "repr-planted"})
    assert "repr-planted" not in repr(options) and "repr-planted" not in str(options)
    with caplog.at_level(logging.DEBUG):
        built = RuntimeEnvBuilder(options, plugins=PluginManager()).build(os_environ={})
        logging.getLogger("test").info("built %s %r", built, built)
    assert "repr-planted" not in caplog.text


def test_parse_requirements_splits_like_a_shell():
    parsed = parse_requirements('--index-url "https://x y/simple"\n-r other.txt\nfoo==1\n')
    assert parsed.options == ["--index-url", "https://x y/simple", "-r", "other.txt"]
    assert parsed.packages == ["foo==1"]


def test_one_definition_of_a_secret_name():
    from raydrive.core import redaction, runtime_env

    assert runtime_env.is_secret_key is redaction.is_secret_key


def test_packager_follows_the_include_and_gitignore_options(tmp_path):
    (tmp_path / ".gitignore").write_text("*.log\n")
    (tmp_path / "run.log").write_text("x")
    (tmp_path / ".env").write_text("A=1")
    builder = RuntimeEnvBuilder(RayOptions(working_dir=tmp_path, include=[".env"]), plugins=PluginManager())
    first = builder.build(package=True, os_environ={}).package
    assert first is not None and first.file_count == 2  # .gitignore and the re-included .env
    off = RuntimeEnvBuilder(
        RayOptions(working_dir=tmp_path, include_gitignore=False), plugins=PluginManager()
    )
    assert off.build(package=True, os_environ={}).package.file_count == 2  # .gitignore and run.log
