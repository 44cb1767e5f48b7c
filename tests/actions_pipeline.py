"""Pipeline actions for the tests: params flow from one action to the next."""

from __future__ import annotations

import os
import time
from pathlib import Path

from pydantic import BaseModel

from raydrive import BaseAction


class LoadParams(BaseModel):
    source: str
    rows: int = 3


class LoadAction(BaseAction[LoadParams]):
    def execute(self) -> dict:
        self.logger.info(f"loading {self.params.rows} rows from {self.params.source}")
        return {"data": list(range(self.params.rows))}


class ScaleParams(BaseModel):
    data: list[int]
    factor: int = 10
    fail_marker: str | None = None  # fail while this file exists (for resume tests)
    sleep: float = 0.0


class ScaleAction(BaseAction[ScaleParams]):
    def execute(self) -> dict:
        marker = self.params.fail_marker
        if marker and Path(marker).exists():
            raise RuntimeError("scale failed: marker present")
        for i in range(10):
            self.logger.set_progress(i + 1, 10, step=f"chunk {i + 1}")
            if self.params.sleep:
                time.sleep(self.params.sleep / 10)
        return {"scaled": [x * self.params.factor for x in self.params.data]}


class SumParams(BaseModel):
    scaled: list[int]


class SumAction(BaseAction[SumParams]):
    def execute(self) -> dict:
        self.logger.set_metrics({"count": len(self.params.scaled)}, step=1)
        return {"total": sum(self.params.scaled), "pid": os.getpid()}


class SlowParams(BaseModel):
    seconds: float = 30.0
    pid_file: str | None = None


class SlowAction(BaseAction[SlowParams]):
    def execute(self) -> dict:
        if self.params.pid_file:
            Path(self.params.pid_file).write_text(str(os.getpid()))
        deadline = time.monotonic() + self.params.seconds
        while time.monotonic() < deadline:
            self.logger.set_progress(1, 100, step="waiting")
            time.sleep(0.1)
        return {"slept": self.params.seconds}
