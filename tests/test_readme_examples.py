"""Docs kept honest by tests (as datasette does): every ```python block of the README and of
the documentation site (``docs/*.md``) runs.

A block runs as it is written, in a fresh namespace, with the current directory a scratch
"project" directory. An HTML comment on the line right before its fence says what it needs:

- ``<!-- readme-test: cluster -->``: the session's local Ray cluster (``RAY_ADDRESS`` names it, so
  ``ray_address="auto"`` reaches it; the example dashboard ``http://ray-head:8265`` stands for its
  dashboard);
- ``<!-- readme-test: service -->``: a real pipeline service (the example URL
  ``http://127.0.0.1:8100`` stands for it);
- ``<!-- readme-test: continues -->``: runs in the namespace of the block before it (one test);
- ``<!-- readme-test: file=plugin/plugin/train.py -->``: the block is also written to that path of
  the project directory, its directory made a package and that package's parent put on
  ``sys.path`` (so ``plugin.train`` imports here, and in the workers from the working dir);
- ``<!-- readme-test: skip reason="..." -->``: only for a block that truly cannot run, saying why.

Words combine (``cluster service``); ``continues`` joins blocks of the same page only.
Tracebacks point at the page's own lines. The cluster runs
with the built-in ``requirements`` policy blocked: ``examples/ml_plugin`` asks for numpy, which
the cluster's Python (this virtualenv) already has, and the tests never reach a package index.
"""

from __future__ import annotations

import contextlib
import re
import shlex
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conditions import wait_for

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]
KINDS = {"cluster", "service", "continues", "skip"}
OPTIONS = {"reason", "file"}
# The example addresses the README's blocks show, and what stands for them in the tests.
DASHBOARD_EXAMPLE = "http://ray-head:8265"
SERVICE_EXAMPLE = "http://127.0.0.1:8100"

_FENCE = re.compile(r"^```\s*([\w+-]*)\s*$")
_MARKER = re.compile(r"^<!--\s*readme-test:(.*?)-->\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced code block of the README or of a page of docs/."""

    path: Path
    line: int  # 1-based line of the block's first line of code
    language: str
    code: str
    marker: str | None  # the text of the readme-test comment right before the fence
    marker_line: int | None  # 1-based line of that comment
    kinds: frozenset[str] = frozenset()
    options: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def _parse_marker(text: str) -> tuple[frozenset[str], dict[str, str]]:
    kinds, options = set(), {}
    for token in shlex.split(text):
        key, eq, value = token.partition("=")
        if eq:
            options[key] = value
        else:
            kinds.add(token)
    return frozenset(kinds), options


def page_blocks(path: Path, text: str | None = None) -> list[Block]:
    """Every fenced block of the page at ``path`` (or of ``text``), with the readme-test marker
    right before it, if any."""
    lines = (path.read_text() if text is None else text).splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), None)
        assert end is not None, f"{path.name}:{i + 1}: a code fence that is never closed"
        marker = _MARKER.match(lines[i - 1]) if i else None
        kinds, options = _parse_marker(marker.group(1)) if marker else (frozenset(), {})
        blocks.append(
            Block(
                path=path,
                line=i + 2,
                language=opening.group(1),
                code="\n".join(lines[i + 1 : end]) + "\n",
                marker=marker.group(1).strip() if marker else None,
                marker_line=i if marker else None,
                kinds=kinds,
                options=options,
            )
        )
        i = end + 1
    return blocks


def readme_blocks() -> list[Block]:
    """Every fenced block of the README and of the pages of docs/."""
    return [block for path in DOCS for block in page_blocks(path)]


def python_blocks() -> list[Block]:
    return [b for b in readme_blocks() if b.language == "python"]


def chains() -> list[list[Block]]:
    """Python blocks grouped so that a ``continues`` block runs with the one before it."""
    grouped: list[list[Block]] = []
    for block in python_blocks():
        if "continues" in block.kinds and grouped and grouped[-1][-1].path == block.path:
            grouped[-1].append(block)
        else:
            grouped.append([block])
    return grouped


def _needs(chain: list[Block]) -> frozenset[str]:
    return frozenset().union(*(b.kinds for b in chain)) - {"continues"}


def _param(chain: list[Block]) -> Any:
    needs = _needs(chain)
    marks = [pytest.mark.ray] if "cluster" in needs else []
    if "skip" in needs:
        reasons = [b.options.get("reason", "") for b in chain if "skip" in b.kinds]
        marks.append(pytest.mark.skip(reason="; ".join(reasons)))
    ident = chain[0].label + "".join(f"-{k}" for k in sorted(needs))
    return pytest.param(chain, id=ident, marks=marks)


# -- the markers themselves ------------------------------------------------------------------
def test_the_readme_has_python_blocks_and_cluster_blocks():
    blocks = python_blocks()
    assert len(blocks) >= 8
    assert any("cluster" in b.kinds for b in blocks) and any("service" in b.kinds for b in blocks)


@pytest.mark.parametrize("block", [b for b in readme_blocks() if b.marker is not None], ids=lambda b: b.label)
def test_every_marker_is_well_formed(block):
    assert block.language == "python", f"{block.label}: readme-test marker on a {block.language!r} block"
    assert block.kinds <= KINDS, f"{block.label}: unknown words {sorted(block.kinds - KINDS)}"
    assert set(block.options) <= OPTIONS, (
        f"{block.label}: unknown options {sorted(set(block.options) - OPTIONS)}"
    )
    if "skip" in block.kinds:
        assert block.options.get("reason", "").strip(), f"{block.label}: a skip must say why (reason=...)"
    if "file" in block.options:
        path = Path(block.options["file"])
        assert not path.is_absolute() and ".." not in path.parts and path.suffix == ".py", block.label
    if "continues" in block.kinds:
        first = next(b for b in python_blocks() if b.path == block.path)
        assert first != block, f"{block.label}: the first block of a page cannot continue another"


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_every_marker_comment_sits_right_before_a_fence(path):
    lines = path.read_text().splitlines()
    placed = {b.marker_line for b in page_blocks(path) if b.marker_line is not None}
    stray = [n for n, line in enumerate(lines, 1) if "readme-test" in line and n not in placed]
    assert not stray, f"readme-test comments not on the line right before a fence: {path.name} lines {stray}"


def test_the_marker_parser():
    text = (
        "intro\n<!-- readme-test: cluster service -->\n```python\nx = 1\n```\n"
        '<!-- readme-test: skip reason="needs a GPU" -->\n```python\ny\n```\n```bash\nls\n```\n'
    )
    first, second, third = page_blocks(README, text)
    assert (first.line, first.code, first.kinds) == (4, "x = 1\n", {"cluster", "service"})
    assert second.kinds == {"skip"} and second.options == {"reason": "needs a GPU"}
    assert third.language == "bash" and third.marker is None


def test_a_block_that_raises_fails_its_test():
    block = Block(
        path=README,
        line=3,
        language="python",
        code="x = 1\nraise RuntimeError('outdated')\n",
        marker=None,
        marker_line=None,
    )
    with pytest.raises(RuntimeError, match="outdated") as info:
        _run_chain([block], {}, {})
    assert info.traceback[-1].lineno + 1 == 4  # the README's own line (pytest counts from 0)


# -- running the blocks ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Iterator[Path]:
    """The scratch project directory the blocks run in: the README's files, the example plugin."""
    root = tmp_path_factory.mktemp("readme_project")
    shutil.copytree(ROOT / "examples" / "ml_plugin", root / "examples" / "ml_plugin")
    added: list[str] = []
    for block in python_blocks():
        if "file" not in block.options:
            continue
        path = root / block.options["file"]
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.parent / "__init__.py").touch()
        path.write_text(block.code)
        added.append(str(path.parent.parent))
    sys.path[:0] = added
    yield root
    for entry in added:
        sys.path.remove(entry)
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", None) or "").startswith(str(root)):
            del sys.modules[name]


@pytest.fixture(scope="module")
def service(tmp_path_factory) -> Iterator[Any]:
    from raydrive.service.client import PipelineServiceClient
    from raydrive.service.server import ServiceServer

    with ServiceServer(db=tmp_path_factory.mktemp("readme_service") / "runs.db") as server:
        yield server
        # A pipeline actor reports its run's end before it exits: stopping the service earlier
        # would leave it retrying on the session's cluster.
        with PipelineServiceClient(server.url) as client:
            wait_for(
                lambda: all(run.status.is_terminal() for run in client.list_runs()),
                timeout=120,
                what="every run the README's blocks started to end",
            )


def _run_chain(chain: list[Block], substitutions: dict[str, str], namespace: dict[str, Any]) -> None:
    # Not importable: classes travel by value.
    namespace["__name__"] = f"readme_{chain[0].path.stem.replace('-', '_')}_{chain[0].line}"
    for block in chain:
        code = block.code
        for example, real in substitutions.items():
            code = code.replace(example, real)
        # Padded so that a traceback names the page's own line numbers.
        exec(compile("\n" * (block.line - 1) + code, str(block.path), "exec"), namespace)


def _close_executors(namespace: dict[str, Any]) -> None:
    from raydrive.core.executor import BaseExecutor

    for value in namespace.values():
        if isinstance(value, BaseExecutor):
            with contextlib.suppress(Exception):
                value.close()


@pytest.mark.parametrize("chain", [_param(c) for c in chains()])
def test_readme_python_block_runs(chain, project, request, monkeypatch):
    from raydrive.core.plugins import PluginManager, reset_plugin_manager

    needs = _needs(chain)
    monkeypatch.chdir(project)
    substitutions: dict[str, str] = {}
    if "cluster" in needs:
        cluster = request.getfixturevalue("ray_cluster")
        monkeypatch.setenv("RAY_ADDRESS", cluster.address)
        monkeypatch.setenv("RAYDRIVE_DISABLE_PLUGINS", "requirements")
        substitutions[DASHBOARD_EXAMPLE] = cluster.dashboard_url
    if "service" in needs:
        substitutions[SERVICE_EXAMPLE] = request.getfixturevalue("service").url
    reset_plugin_manager(PluginManager())  # reads RAYDRIVE_DISABLE_PLUGINS now
    namespace: dict[str, Any] = {}
    try:
        _run_chain(chain, substitutions, namespace)
    finally:
        _close_executors(namespace)
        reset_plugin_manager(None)
