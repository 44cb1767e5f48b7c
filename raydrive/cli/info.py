"""Inspecting the installation: drivers, plugins, effective config."""

from __future__ import annotations

import json

from rich.table import Table

from raydrive.cli._common import ExecutorOpt, OptionOpt, app, console, parse_options, user_errors


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

    resolved = raydrive.effective_config(executor, **parse_options(option, None))
    console.print(f"config file: {resolved.config_file or '(none found)'}")
    table = Table("setting", "value", "source")
    table.add_row("executor", resolved.driver, resolved.sources.get("executor", ""))
    for key, value in sorted(resolved.options.items()):
        shown = "<hidden>" if key == "env" else json.dumps(value, default=str)
        table.add_row(key, shown, resolved.sources.get(key, ""))
    console.print(table)


