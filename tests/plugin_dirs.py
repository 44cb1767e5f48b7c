"""Plugin working dirs for the tests: one test actions file copied in as a module of its own."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def plugin_module_dir(
    tmp_path_factory: pytest.TempPathFactory, source: Path | str, module: str
) -> Iterator[Path]:
    """A fresh dir holding ``source`` (a file to copy, or the module's text) as ``<module>.py``: a
    plugin working dir whose actions import here (the dir is put first on ``sys.path`` for the
    body) and on the cluster (as ``working_dir``).

    Each test module uses a module name of its own, so two modules' copies never shadow each other.
    """
    root = tmp_path_factory.mktemp(f"{module}_plugin")
    (root / f"{module}.py").write_text(source.read_text() if isinstance(source, Path) else source)
    sys.path.insert(0, str(root))
    try:
        yield root
    finally:
        sys.path.remove(str(root))
        sys.modules.pop(module, None)
