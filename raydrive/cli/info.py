"""Inspecting the installation: drivers, plugins, effective config."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from raydrive.cli._common import (
    ExecutorOpt,
    OptionOpt,
    WorkingDirOpt,
    app,
    console,
    parse_options,
    print_json,
    user_errors,
)


@app.command()
def drivers() -> None:
    """List the registered drivers, with load failures."""
    import raydrive

    table = Table("name", "class", "description")
    for info in raydrive.available_drivers():
        if info.ok:
            table.add_row(info.name, f"{info.cls.__module__}.{info.cls.__qualname__}", info.description)
        else:
            table.add_row(info.name, f"[red]{info.target}[/]", f"[red]could not load: {info.error}[/]")
    console.print(table)


@app.command()
def plugins() -> None:
    """List the loaded policy plugins and the hooks each implements."""
    from raydrive.core.plugins import get_plugin_manager

    manager = get_plugin_manager()
    dists = manager.distinfo()
    table = Table("name", "distribution", "hooks")
    for name, plugin in manager.plugins():
        table.add_row(name, dists.get(name, "-"), ", ".join(sorted(manager.hook_names(plugin))))
    console.print(table)
    blocked = manager.blocked()
    if blocked:
        console.print(f"blocked by RAYDRIVE_DISABLE_PLUGINS: {', '.join(sorted(blocked))}")


@app.command()
@user_errors
def config(
    executor: str | None = ExecutorOpt,
    option: list[str] = OptionOpt,
) -> None:
    """Show the effective driver and options, and where each came from."""
    import raydrive
    from raydrive.core.redaction import redact

    resolved = raydrive.effective_config(executor, **parse_options(option, None))
    console.print(f"config file: {resolved.config_file or '(none found)'}")
    table = Table("setting", "value", "source")
    table.add_row("executor", resolved.driver, resolved.sources.get("executor", ""))
    # Values through the one redaction function: tokens, headers, URLs with passwords, secret
    # runtime-env variables show as ***; env shows its keys only.
    shown_options = redact(resolved.options)
    for key, value in sorted(shown_options.items()):
        if key == "env" and isinstance(value, dict):
            shown = f"<keys: {', '.join(sorted(value)) or 'none'}>"
        else:
            shown = json.dumps(value, default=str)
        table.add_row(key, shown, resolved.sources.get(key, ""))
    console.print(table, soft_wrap=True)


@app.command()
@user_errors
def package(
    working_dir: Path | None = WorkingDirOpt,
    executor: str | None = ExecutorOpt,
    option: list[str] = OptionOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    top: int = typer.Option(10, "--top", min=0, help="How many of the biggest files to list."),
) -> None:
    """Show what would be uploaded from the working dir (nothing is uploaded): files, zipped size
    against the limit that applies, the biggest files, and what was excluded and why."""
    from raydrive.core.preflight import package_report

    report = package_report(working_dir, executor=executor, **parse_options(option, None))
    report.biggest = report.biggest[:top]
    if as_json:
        print_json(report.to_dict())
        return
    mib = 2**20
    verdict = "[green]within[/]" if report.within_limit else "[bold red]OVER[/]"
    console.print(f"working dir: {report.working_dir}", highlight=False, soft_wrap=True)
    console.print(
        f"{report.file_count} files, {report.size / mib:.1f} MiB, zipped {report.zipped_size / mib:.1f} MiB: "
        f"{verdict} {report.limit_name} of {report.limit / mib:.0f} MiB",
        highlight=False,
        soft_wrap=True,
    )
    if report.biggest:
        table = Table("biggest files", "size")
        for path, size in report.biggest:
            table.add_row(path, f"{size} B" if size < 1024 else f"{size / 1024:.1f} KiB")
        console.print(table)
    if report.excluded:
        table = Table("excluded", "why")
        for item in report.excluded:
            table.add_row(item.path, item.reason)
        console.print(table)
    if not report.within_limit:
        raise typer.Exit(1)
