"""Pipeline actions for the browser tests (copied into a plugin dir as ``rd_web_actions``)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from pydantic import BaseModel

from raydrive import BaseAction


class StepParams(BaseModel):
    steps: int = 10
    pause: float = 0.2
    message: str = "stepping"


class StepAction(BaseAction[StepParams]):
    """Moves its bar one step at a time and logs each step."""

    def execute(self) -> dict:
        self.logger.info(self.params.message)
        for i in range(self.params.steps):
            self.logger.set_progress(i + 1, self.params.steps, step=f"step {i + 1}/{self.params.steps}")
            time.sleep(self.params.pause)
        return {"values": list(range(self.params.steps))}


class TotalParams(BaseModel):
    values: list[int]


class TotalAction(BaseAction[TotalParams]):
    def execute(self) -> dict:
        return {"total": sum(self.params.values)}


class FailParams(BaseModel):
    reason: str = "boom"


class FailAction(BaseAction[FailParams]):
    def execute(self) -> dict:
        raise RuntimeError(f"web test failure: {self.params.reason}")


class SpinParams(BaseModel):
    seconds: float = 120.0
    pid_file: str | None = None


class SpinAction(BaseAction[SpinParams]):
    """Runs until stopped, reporting nothing (a tight loop, for cancel)."""

    def execute(self) -> dict:
        if self.params.pid_file:
            Path(self.params.pid_file).write_text(str(os.getpid()))
        deadline = time.monotonic() + self.params.seconds
        n = 0
        while time.monotonic() < deadline:
            n += 1
        return {"spins": n}


class RetriedParams(BaseModel):
    tries_file: str
    steps: int = 5


class RetriedAction(BaseAction[RetriedParams]):
    """Reports a metric, fails on its first attempt and succeeds on its second (retried in place)."""

    retries = 1
    retry_on = "any"
    retry_backoff = {"initial": 0.2, "max": 1.0, "factor": 2.0, "jitter": 0.0}

    def execute(self) -> dict:
        tries = Path(self.params.tries_file)
        done = len(tries.read_text().splitlines()) if tries.exists() else 0
        with tries.open("a") as out:
            out.write(f"{time.time()}\n")
        for step in range(1, self.params.steps + 1):
            self.logger.set_metrics({"loss": 1.0 / (step + done)}, step=step + done * self.params.steps)
            time.sleep(0.02)
        if done == 0:
            raise RuntimeError("first attempt fails on purpose")
        return {"tries": done + 1}
