"""Docs kept honest by tests (as datasette does): the documentation (the README and the pages of
docs/) documents every hook and every command."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
import typer.core
import typer.main

import raydrive.hookspecs as hookspecs

ROOT = Path(__file__).resolve().parents[1]
PAGES = {p.relative_to(ROOT): p.read_text() for p in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]}


def _hook_specs() -> list[tuple[str, list[str]]]:
    specs = []
    for name, func in inspect.getmembers(hookspecs, inspect.isfunction):
        if name.startswith("raydrive_"):
            specs.append((name, list(inspect.signature(func).parameters)))
    return specs


@pytest.mark.parametrize(("name", "args"), _hook_specs(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_hookspec_is_in_the_readme_table_with_its_signature(name, args):
    rows = [
        line
        for text in PAGES.values()
        for line in text.splitlines()
        if line.startswith("|") and f"`{name}(" in line
    ]
    assert rows, f"{name} is missing from the docs' hook table"
    documented = re.search(rf"`{name}\(([^)]*)\)`", rows[0])
    assert documented is not None
    assert [a.strip() for a in documented.group(1).split(",") if a.strip()] == args


def _commands(group: typer.core.TyperGroup, prefix: str = "raydrive") -> list[str]:
    found = []
    for name, command in sorted(group.commands.items()):
        path = f"{prefix} {name}"
        if hasattr(command, "commands"):  # a group (typer vendors its own click)
            found.extend(_commands(command, path))
        else:
            found.append(path)
    return found


def _command_table() -> list[str]:
    heading = re.compile(r"^#+ The command line$", re.MULTILINE)
    pages = [text for text in PAGES.values() if heading.search(text)]
    assert len(pages) == 1, "one page holds the command table, under a heading 'The command line'"
    section = heading.split(pages[0], 1)[1]
    block = section.split("```text", 1)[1].split("```", 1)[0]
    return [line.split("  ")[0].strip() for line in block.strip().splitlines()]


def _documented(command: str, rows: list[str]) -> bool:
    # A row may list alternatives: `raydrive status|result|stop JOB_ID`, `raydrive drivers | plugins`.
    *group, leaf = command.split()
    for row in rows:
        words = row.replace(" | ", "|").split()
        if words[: len(group)] != group or len(words) <= len(group):
            continue
        if leaf in words[len(group)].split("|"):
            return True
    return False


def test_every_cli_command_is_in_the_readme_command_table():
    from raydrive.cli import app

    commands = _commands(typer.main.get_command(app))
    assert "raydrive pipeline run" in commands and "raydrive demo" in commands
    rows = _command_table()
    missing = [c for c in commands if not _documented(c, rows)]
    assert not missing, f"commands missing from the docs' command table: {missing}"
