"""The ``raydrive`` command line: command parsing and printing only.

User errors (unknown driver, bad params or options, unreachable cluster or service) print one
clear line and exit with status 2; ``--verbose`` shows the traceback too. Each command group
lives in its own module; importing them registers their commands on :data:`app`.
"""

from __future__ import annotations

from raydrive.cli import cluster, info, jobs, pipeline, service  # noqa: F401  (register commands)
from raydrive.cli._common import app, parse_options, parse_params, user_errors

__all__ = ["app", "main", "parse_options", "parse_params", "user_errors"]


def main() -> None:
    """Console-script entry point."""
    app()
