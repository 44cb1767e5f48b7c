"""Config-driven selection: argument > environment > config file > default."""

from __future__ import annotations

import pytest

import raydrive
from raydrive import InvalidOptionsError
from raydrive.drivers.local import LocalExecutor


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for key in ("RAYDRIVE_EXECUTOR", "RAYDRIVE_MAX_WORKERS", "RAYDRIVE_WORKING_DIR"):
        monkeypatch.delenv(key, raising=False)
    return tmp_path


def test_default_driver_is_local(project):
    assert isinstance(raydrive.get_executor(), LocalExecutor)
    assert raydrive.effective_config().sources["executor"] == "default"


def test_pyproject_table_is_read_and_paths_are_relative_to_it(project):
    (project / "plugin").mkdir()
    (project / "pyproject.toml").write_text(
        '[project]\nname = "x"\n[tool.raydrive]\nexecutor = "local"\n'
        '[tool.raydrive.local]\nmax_workers = 3\nworking_dir = "plugin"\n'
    )
    (project / "sub").mkdir()
    import os

    os.chdir(project / "sub")  # the nearest config file is found from below
    executor = raydrive.get_executor()
    assert executor.options.max_workers == 3
    assert executor.options.working_dir == (project / "plugin").resolve()
    config = raydrive.effective_config()
    assert config.sources["max_workers"] == str(project / "pyproject.toml")


def test_a_home_path_in_a_config_file_is_expanded_not_made_relative(project, monkeypatch):
    home = project / "home"
    (home / "plugins").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    (project / "raydrive.toml").write_text('executor = "local"\n[local]\nworking_dir = "~/plugins"\n')
    assert raydrive.get_executor().options.working_dir == home / "plugins"


def test_raydrive_toml(project):
    (project / "raydrive.toml").write_text('executor = "local"\n[local]\nmax_workers = 5\n')
    assert raydrive.get_executor().options.max_workers == 5


def test_env_wins_over_file_and_argument_wins_over_env(project, monkeypatch):
    (project / "raydrive.toml").write_text('executor = "local"\n[local]\nmax_workers = 5\n')
    monkeypatch.setenv("RAYDRIVE_MAX_WORKERS", "7")
    assert raydrive.get_executor().options.max_workers == 7
    assert raydrive.effective_config().sources["max_workers"] == "env:RAYDRIVE_MAX_WORKERS"
    assert raydrive.get_executor(max_workers=9).options.max_workers == 9
    assert raydrive.effective_config(max_workers=9).sources["max_workers"] == "argument"


def test_executor_name_from_env_and_argument(project, monkeypatch):
    (project / "raydrive.toml").write_text('executor = "nope-from-file"\n')
    monkeypatch.setenv("RAYDRIVE_EXECUTOR", "local")
    assert isinstance(raydrive.get_executor(), LocalExecutor)
    monkeypatch.setenv("RAYDRIVE_EXECUTOR", "nope-from-env")
    with pytest.raises(raydrive.DriverNotFoundError, match="nope-from-env"):
        raydrive.get_executor()
    assert isinstance(raydrive.get_executor("local"), LocalExecutor)


def test_bad_option_in_file_names_the_field(project):
    (project / "raydrive.toml").write_text("[local]\nmax_wrokers = 5\n")
    with pytest.raises(InvalidOptionsError, match="max_wrokers: unknown option"):
        raydrive.get_executor("local")


def test_bad_option_value_in_env_names_the_field(project, monkeypatch):
    monkeypatch.setenv("RAYDRIVE_MAX_WORKERS", "lots")
    with pytest.raises(InvalidOptionsError, match="max_workers"):
        raydrive.get_executor("local")


def test_env_strings_for_lists_and_json(project, monkeypatch):
    from raydrive.core.config import resolve_config
    from raydrive.core.options import RayOptions

    environ = {
        "RAYDRIVE_EXCLUDES": "data,*.ckpt",
        "RAYDRIVE_RESOURCES": '{"tpu": 1}',
        "RAYDRIVE_NUM_CPUS": "0.5",
    }
    config = resolve_config("x", {}, options_model=lambda _: RayOptions, environ=environ)
    options = RayOptions(**config.options)
    assert options.excludes == ["data", "*.ckpt"]
    assert options.resources == {"tpu": 1}
    assert options.num_cpus == 0.5
