"""Modules that raise at import, for the import-error tests (imported by name, never at collection)."""

from __future__ import annotations

import os

from pydantic import BaseModel

from raydrive import BaseAction

# Raises in the process whose pid is named (the test's own), imports fine anywhere else (a worker).
if os.environ.get("RD_BREAK_IMPORT_PID") == str(os.getpid()):
    raise RuntimeError("plugin config missing on this machine")


class GuardParams(BaseModel):
    a: int = 1


class GuardAction(BaseAction[GuardParams]):
    def execute(self) -> dict:
        return {"pid": os.getpid(), "a": self.params.a}
