"""Issue 9, working-dir packaging: what goes into the zip that travels to the cluster's GCS.

Every test builds the real zip through the runtime-env builder (the path every Ray driver takes,
with the built-in policies) and opens it.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import pytest

from raydrive import WorkingDirError
from raydrive.core.options import RayOptions
from raydrive.core.plugins import PluginManager
from raydrive.core.runtime_env import RuntimeEnvBuilder

SECRET = "planted-outside-secret-7f3a"


def build(working_dir: Path, **options):
    return RuntimeEnvBuilder(RayOptions(working_dir=working_dir, **options), plugins=PluginManager()).build(
        package=True, os_environ={}
    )


def zipped(working_dir: Path, **options) -> dict[str, bytes]:
    package = build(working_dir, **options).package
    assert package is not None
    with zipfile.ZipFile(io.BytesIO(package.data)) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory beside the working dir, holding a secret file and a nested tree."""
    root = tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    (root / "shadow").write_text(SECRET)
    (root / "sub" / "key").write_text(SECRET)
    return root


@pytest.fixture
def wd(tmp_path: Path) -> Path:
    root = tmp_path / "wd"
    (root / "pkg").mkdir(parents=True)
    (root / "main.py").write_text("print('hi')\n")
    (root / "pkg" / "mod.py").write_text("X = 1\n")
    return root


# --- symlinks ------------------------------------------------------------------------------------
def test_symlinks_leaving_the_working_dir_are_not_followed(wd: Path, outside: Path):
    (wd / "passwd").symlink_to(outside / "shadow")  # like a link to /etc/passwd
    (wd / "etc").symlink_to(outside)  # like a link to /etc
    (wd / "pkg" / "up").symlink_to("../../outside/sub")  # relative, leaving the tree
    (wd / "abs_etc").symlink_to("/etc")
    files = zipped(wd)
    assert sorted(files) == ["main.py", "pkg/mod.py"]
    assert not any(SECRET.encode() in data for data in files.values())
    excluded = {e.path: e.reason for e in build(wd).package.excluded}
    for link in ("passwd", "etc", "pkg/up", "abs_etc"):
        assert excluded[link].startswith("symlink outside working dir"), excluded


def test_links_inside_the_tree_are_stored_once(wd: Path):
    (wd / "pkg" / "alias.py").symlink_to("mod.py")  # a file link: its content under its name
    (wd / "pkg_again").symlink_to("pkg")  # a directory link: its files are already in
    (wd / "pkg" / "loop").symlink_to("..")  # a cycle back to the root
    files = zipped(wd)
    assert sorted(files) == ["main.py", "pkg/alias.py", "pkg/mod.py"]
    assert files["pkg/alias.py"] == b"X = 1\n"
    excluded = {e.path: e.reason for e in build(wd).package.excluded}
    assert "symlink to a directory inside the working dir" in excluded["pkg_again"]
    assert "symlink to a directory inside the working dir" in excluded["pkg/loop"]


def test_a_link_to_an_excluded_file_does_not_smuggle_it_in(wd: Path):
    (wd / ".env").write_text(f"TOKEN={SECRET}\n")
    (wd / "settings.cfg").symlink_to(".env")
    (wd / "build").mkdir()
    (wd / "build" / "out.txt").write_text(SECRET)
    (wd / ".gitignore").write_text("build/\n")
    (wd / "out.txt").symlink_to("build/out.txt")
    files = zipped(wd)
    assert not any(SECRET.encode() in data for data in files.values()), sorted(files)
    excluded = {e.path: e.reason for e in build(wd).package.excluded}
    assert "symlink to an excluded file" in excluded["settings.cfg"]
    assert "symlink to an excluded file" in excluded["out.txt"]


def test_a_symlink_loop_is_a_working_dir_error_naming_it(wd: Path):
    (wd / "pkg" / "a").symlink_to("b")
    (wd / "pkg" / "b").symlink_to("a")
    with pytest.raises(WorkingDirError) as info:
        build(wd)
    assert "pkg/a" in str(info.value) and info.value.path == "pkg/a"


def test_a_file_name_that_is_not_utf8_is_a_working_dir_error_naming_it(wd: Path):
    bad = os.fsencode(str(wd / "pkg")) + b"/caf\xe9.py"
    with open(bad, "wb") as fh:
        fh.write(b"x")
    with pytest.raises(WorkingDirError) as info:
        build(wd)
    assert "caf\\xe9.py" in str(info.value) and "UTF-8" in str(info.value)


def test_a_name_ray_would_not_unpack_is_listed_not_shipped(wd: Path):
    (wd / "a\\b.py").write_text("x")
    assert "a\\b.py" not in zipped(wd)
    assert "backslash" in {e.path: e.reason for e in build(wd).package.excluded}["a\\b.py"]


# --- ignore files ------------------------------------------------------------------------------
def test_gitignore_and_rayignore_are_honoured_by_default(wd: Path):
    (wd / ".gitignore").write_text("# build output\n*.log\n/data/\n!keep.log\n")
    (wd / ".rayignore").write_text("weights/\n")
    (wd / "data").mkdir()
    (wd / "data" / "big.bin").write_bytes(b"d" * 1000)
    (wd / "weights").mkdir()
    (wd / "weights" / "w.pt").write_bytes(b"w")
    (wd / "run.log").write_text("log")
    (wd / "keep.log").write_text("kept")
    (wd / "pkg" / "data").mkdir()  # /data/ is anchored: this one stays
    (wd / "pkg" / "data" / "table.csv").write_text("a,b\n")
    (wd / "pkg" / ".gitignore").write_text("generated_*.py\n")  # nested, as in git
    (wd / "pkg" / "generated_1.py").write_text("G = 1\n")
    (wd / "generated_2.py").write_text("G = 2\n")  # the nested file does not apply up here
    files = set(zipped(wd))
    assert files == {
        ".gitignore",
        ".rayignore",
        "generated_2.py",
        "keep.log",
        "main.py",
        "pkg/.gitignore",
        "pkg/data/table.csv",
        "pkg/mod.py",
    }
    # Turned off: .gitignore files are not read; .rayignore still is (as in Ray).
    off = set(zipped(wd, include_gitignore=False))
    assert {"run.log", "data/big.bin", "pkg/generated_1.py"} <= off and "weights/w.pt" not in off


def test_rays_own_switch_turns_gitignore_off_too(wd: Path, monkeypatch: pytest.MonkeyPatch):
    (wd / ".gitignore").write_text("*.log\n")
    (wd / "run.log").write_text("log")
    assert "run.log" not in zipped(wd)
    monkeypatch.setenv("RAY_RUNTIME_ENV_IGNORE_GITIGNORE", "1")
    assert "run.log" in zipped(wd)


# --- default excludes -------------------------------------------------------------------------
CREDENTIAL_FILES = [
    ".env",
    ".env.production",
    "certs/server.pem",
    "tls.key",
    "id_rsa",
    "id_rsa.pub",
    "id_ed25519",
    ".ssh/config",
    ".aws/credentials",
    ".aws/config",
    ".netrc",
    ".git-credentials",
    ".pypirc",
    ".docker/config.json",
    "sub/.env",
]


def test_credential_files_never_travel_by_default(wd: Path):
    for rel in CREDENTIAL_FILES:
        (wd / rel).parent.mkdir(parents=True, exist_ok=True)
        (wd / rel).write_text(SECRET)
    (wd / ".docker" / "daemon.json").write_text("{}")  # only config.json is a credential
    files = zipped(wd)
    assert not any(SECRET.encode() in data for data in files.values()), sorted(files)
    assert ".docker/daemon.json" in files


def test_a_default_exclude_can_be_reincluded_explicitly(wd: Path):
    for rel in (".env.example", ".env", ".aws/config", ".aws/credentials"):
        (wd / rel).parent.mkdir(parents=True, exist_ok=True)
        (wd / rel).write_text(rel)
    files = set(zipped(wd, include=[".env.example", ".aws/config"]))
    assert {".env.example", ".aws/config"} <= files
    assert ".env" not in files and ".aws/credentials" not in files


# --- pre-flight report -------------------------------------------------------------------------
def test_package_report_matches_the_real_package(wd: Path, outside: Path):
    from raydrive import package_report
    from raydrive.core.packaging import DASHBOARD_UPLOAD_LIMIT

    (wd / "weights.bin").write_bytes(os.urandom(300_000))
    (wd / ".env").write_text(SECRET)
    (wd / "etc").symlink_to(outside)
    report = package_report(wd)
    package = build(wd).package
    assert report.file_count == package.file_count == 3
    assert report.uri == package.uri
    assert report.zipped_size == len(package.data)
    assert report.size == package.size
    assert report.limit == 512 * 2**20 and report.within_limit
    assert report.biggest[0] == ("weights.bin", 300_000)
    reasons = {e.path: e.reason for e in report.excluded}
    assert reasons[".env"] == "exclude pattern '.env'"
    assert reasons["etc"].startswith("symlink outside working dir")
    jobs_api = package_report(wd, executor="ray-jobs-api")
    assert jobs_api.limit == DASHBOARD_UPLOAD_LIMIT == 100 * 2**20
    assert "dashboard" in jobs_api.limit_name
    assert not package_report(wd, limit_bytes=100_000).within_limit


def test_package_command_prints_the_report(wd: Path):
    from typer.testing import CliRunner

    from raydrive.cli import app

    (wd / ".env").write_text(SECRET)
    result = CliRunner().invoke(app, ["package", "--working-dir", str(wd), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["file_count"] == 2 and data["limit"] == 512 * 2**20
    assert {"path": ".env", "reason": "exclude pattern '.env'"} in data["excluded"]
    text = CliRunner().invoke(app, ["package", "-w", str(wd), "-e", "ray-jobs-api"])
    assert text.exit_code == 0, text.output
    assert "2 files" in text.output and "upload limit of 100 MiB" in text.output and ".env" in text.output


def test_upload_limit_check_names_the_limit(wd: Path):
    from raydrive.core.packaging import check_upload_size

    (wd / "weights.bin").write_bytes(os.urandom(200_000))
    package = build(wd).package
    check_upload_size(package)  # far below 100 MiB
    with pytest.raises(WorkingDirError, match=r"upload limit of 0\.1 MiB") as info:
        check_upload_size(package, limit=100_000)
    assert info.value.limit == 100_000
