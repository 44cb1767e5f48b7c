"""Pipeline actions for the retry, deadline and resume tests: each leaves files as evidence."""

from __future__ import annotations

import os
import time
from pathlib import Path

from pydantic import BaseModel

from raydrive import BaseAction


def _append(path: str, line: str) -> None:
    with open(path, "a") as handle:
        handle.write(line + "\n")


class CountParams(BaseModel):
    count_file: str


class CountAction(BaseAction[CountParams]):
    """Appends a line to ``count_file`` each time it runs (counts runs)."""

    def execute(self) -> dict:
        _append(self.params.count_file, f"run {os.getpid()}")
        return {"counted": True}


class CrashOnceParams(BaseModel):
    crash_marker: str
    counted: bool = False


class CrashOnceAction(BaseAction[CrashOnceParams]):
    """Kills its own process (``os._exit(1)``) on its first attempt; the marker file remembers."""

    def execute(self) -> dict:
        marker = Path(self.params.crash_marker)
        if not marker.exists():
            marker.write_text(str(os.getpid()))
            os._exit(1)
        return {"survived": True, "pid": os.getpid()}


class FlakyParams(BaseModel):
    tries_file: str
    fail_times: int = 1


class FlakyAction(BaseAction[FlakyParams]):
    """Raises on its first ``fail_times`` attempts; each attempt appends its start time."""

    def execute(self) -> dict:
        path = Path(self.params.tries_file)
        done = len(path.read_text().splitlines()) if path.exists() else 0
        _append(str(path), repr(time.time()))
        if done < self.params.fail_times:
            raise RuntimeError(f"flaky failure {done + 1}")
        return {"tries": done + 1}


class PatientFlakyAction(FlakyAction):
    """The same, with its own retry policy: two retries of any exception, 0.3 s then 0.6 s apart."""

    retries = 2
    retry_on = "any"
    retry_backoff = {"initial": 0.3, "max": 5.0, "factor": 2.0, "jitter": 0.0}


class SleepParams(BaseModel):
    seconds: float = 120.0
    started_file: str | None = None


class SleepAction(BaseAction[SleepParams]):
    """Sleeps in short steps (pure Python between them, so an interrupt lands at once)."""

    def execute(self) -> dict:
        if self.params.started_file:
            Path(self.params.started_file).write_text(str(os.getpid()))
        end = time.monotonic() + self.params.seconds
        while time.monotonic() < end:
            time.sleep(0.05)
        return {"slept": self.params.seconds}


class TimedSleepAction(SleepAction):
    """:class:`SleepAction` with its own deadline of 2 s."""

    timeout_s = 2.0
