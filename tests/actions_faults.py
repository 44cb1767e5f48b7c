"""Actions for the fault tests (tests/test_faults_*.py): they leave files a test can look for."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel

from raydrive import BaseAction


class MarkParams(BaseModel):
    dir: str


class EndlessRetriesAction(BaseAction[MarkParams]):
    """Declares a retry policy no driver accepts; leaves ``ran-<pid>`` if it ever runs."""

    retries = 10**9

    def execute(self) -> dict:
        (Path(self.params.dir) / f"ran-{os.getpid()}").write_text("ran")
        return {"pid": os.getpid()}


class QuickAction(BaseAction[MarkParams]):
    """Returns at once."""

    def execute(self) -> dict:
        return {"pid": os.getpid()}
