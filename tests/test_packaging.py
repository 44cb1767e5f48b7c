from __future__ import annotations

import os
import zipfile
from io import BytesIO

import pytest

from raydrive import WorkingDirError
from raydrive.core.packaging import WorkingDirPackager
from raydrive.policies.excludes import DEFAULT_EXCLUDES


def make_tree(root):
    (root / "pkg").mkdir()
    (root / "pkg" / "mod.py").write_text("X = 1\n")
    (root / "pkg" / "__pycache__").mkdir()
    (root / "pkg" / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"x")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref")
    (root / ".venv" / "lib").mkdir(parents=True)
    (root / ".venv" / "lib" / "big.so").write_bytes(b"x" * 100)
    (root / "data").mkdir()
    (root / "data" / "a.ckpt").write_bytes(b"ckpt")
    (root / "main.py").write_text("print('hi')\n")


def names(package):
    return sorted(zipfile.ZipFile(BytesIO(package.data)).namelist())


def test_default_and_user_excludes(tmp_path):
    make_tree(tmp_path)
    package = WorkingDirPackager(tmp_path, [*DEFAULT_EXCLUDES, "data/*.ckpt"]).package()
    assert names(package) == ["main.py", "pkg/mod.py"]
    assert package.file_count == 2


def test_uri_is_content_addressed(tmp_path):
    make_tree(tmp_path)
    first = WorkingDirPackager(tmp_path, DEFAULT_EXCLUDES).package()
    again = WorkingDirPackager(tmp_path, DEFAULT_EXCLUDES).package()
    assert first.uri == again.uri and first.data == again.data
    (tmp_path / "main.py").write_text("print('changed')\n")
    assert WorkingDirPackager(tmp_path, DEFAULT_EXCLUDES).package().uri != first.uri


def test_unchanged_tree_is_not_rezipped(tmp_path):
    make_tree(tmp_path)
    packager = WorkingDirPackager(tmp_path, DEFAULT_EXCLUDES)
    first = packager.package()
    assert packager.package() is first
    (tmp_path / "new.py").write_text("Y = 2\n")
    second = packager.package()
    assert second is not first and "new.py" in names(second)
    os.utime(tmp_path / "main.py", ns=(1, 1))
    assert packager.package() is not second


def test_missing_dir_fails_naming_it(tmp_path):
    with pytest.raises(WorkingDirError, match="does not exist"):
        WorkingDirPackager(tmp_path / "absent").package()


def test_too_large_dir_names_size_and_biggest_files(tmp_path, monkeypatch):
    make_tree(tmp_path)
    (tmp_path / "weights.bin").write_bytes(b"w" * 5000)
    monkeypatch.setenv("RAY_max_grpc_message_size", "4096")
    with pytest.raises(WorkingDirError) as info:
        WorkingDirPackager(tmp_path, DEFAULT_EXCLUDES).package()
    message = str(info.value)
    assert "weights.bin" in message and "package limit" in message and info.value.size > 4096


@pytest.mark.parametrize(
    ("pattern", "path", "is_dir", "excluded"),
    [
        ("*.log", "a/b/run.log", False, True),
        ("*.log", "run.log.txt", False, False),
        ("/build", "build", True, True),
        ("/build", "src/build", True, False),
        ("build/", "build", False, False),  # directories only
        ("build/", "src/build", True, True),
        ("docs/*.md", "docs/a.md", False, True),
        ("docs/*.md", "docs/sub/a.md", False, False),  # * stops at /
        ("docs/**/*.md", "docs/sub/deep/a.md", False, True),
        ("**/cache", "x/y/cache", True, True),
        ("data/**", "data/x/y", False, True),
        ("file[0-9].txt", "file7.txt", False, True),
        ("file[!0-9].txt", "file7.txt", False, False),
        ("\\#notes", "#notes", False, True),
        ("# a comment", "# a comment", False, False),
    ],
)
def test_ignore_patterns_read_like_git(pattern, path, is_dir, excluded):
    from raydrive.core.ignore import IgnoreRules

    assert (IgnoreRules([pattern]).matches(path, is_dir) is not None) is excluded


def test_last_matching_pattern_wins_and_negation_reincludes():
    from raydrive.core.ignore import IgnoreRules

    rules = IgnoreRules(["*.log", "!keep.log", "keep.log.d/"])
    assert rules.matches("x.log", False) == "*.log"
    assert rules.matches("keep.log", False) is None
    assert rules.decide("keep.log", False) == (False, "!keep.log")
