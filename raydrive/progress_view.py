"""Live progress bars for a pipeline run, drawn from its SSE stream (used by the CLI and the demo)."""

from __future__ import annotations

from typing import Any

from rich.console import Console


def watch_run(client: Any, run_id: str, *, timeout: float = 3600.0, console: Console | None = None) -> Any:
    """Draw one live progress bar per action from the run's SSE stream; return the final view."""
    from rich.live import Live
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    bars = Progress(
        TextColumn("{task.description:<24}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[status]:<10}"),
        TextColumn("{task.fields[step]}"),
        TimeElapsedColumn(),
        console=console,
    )
    console = console or Console()
    tasks: dict[str, Any] = {}
    final = None
    with Live(bars, console=console, refresh_per_second=8, transient=False):
        for event in client.stream_events(run_id, timeout=timeout):
            final = event.progress
            for entry in final.progress:
                if entry.name not in tasks:
                    tasks[entry.name] = bars.add_task(entry.name, total=1.0, status="", step="", start=False)
                task = tasks[entry.name]
                if entry.status.value != "pending":
                    bars.start_task(task)
                done = entry.status.value in ("completed", "skipped")
                bars.update(
                    task,
                    completed=1.0 if done else entry.progress,
                    status=entry.status.value,
                    step=entry.progress_step or entry.error or "",
                )
                if entry.status.value in ("completed", "skipped", "failed"):
                    bars.stop_task(task)
    return final
