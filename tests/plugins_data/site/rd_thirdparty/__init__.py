"""A third-party raydrive driver and policy, discovered only through entry-point metadata."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from raydrive.core.action import run_action
from raydrive.core.executor import BaseExecutor
from raydrive.core.options import DriverOptions


class EchoOptions(DriverOptions):
    prefix: str = Field(default="echo", description="Put in front of every result.")


class EchoExecutor(BaseExecutor):
    """Runs the action in-process and wraps its result with a prefix."""

    name = "echo"
    Options = EchoOptions

    def execute(self, action_cls: Any, params: dict[str, Any], **kwargs: Any) -> Any:
        return {"prefix": self.options.prefix, "result": run_action(action_cls, params)}
