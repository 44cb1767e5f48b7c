"""Actions for the ray-job queue, retry and deadline tests: they record what happened in files.

Every action writes under ``params.dir`` (a test's tmp_path), so the test reads the order, the
overlap and the gaps from the actions' own timestamps, never from timings of its own.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from pydantic import BaseModel

from raydrive import BaseAction


class RecordParams(BaseModel):
    dir: str
    name: str
    seconds: float = 0.0
    gate: str | None = None  # wait until this file exists (a blocker holding its slot)


class RecordAction(BaseAction[RecordParams]):
    """Records its start (appended to ``starts``) and its start/end (``<name>.json``)."""

    def execute(self) -> dict:
        out = Path(self.params.dir)
        started = time.time()
        with open(out / "starts", "a") as f:
            f.write(f"{self.params.name} {started!r}\n")
        if self.params.gate:
            deadline = time.monotonic() + 300
            while not os.path.exists(self.params.gate) and time.monotonic() < deadline:
                time.sleep(0.02)
        time.sleep(self.params.seconds)
        ended = time.time()
        (out / f"{self.params.name}.json").write_text(json.dumps({"start": started, "end": ended}))
        return {"name": self.params.name, "pid": os.getpid()}


class DirParams(BaseModel):
    dir: str
    fail_times: int = 1
    error: str = "ValueError"


class KillOnceAction(BaseAction[DirParams]):
    """Attempt 1 (no marker file yet) records its pid and SIGKILLs its own process."""

    def execute(self) -> dict:
        out = Path(self.params.dir)
        marker = out / "killed-once"
        if not marker.exists():
            marker.write_text(str(os.getpid()))
            os.kill(os.getpid(), 9)
        return {"pid": os.getpid(), "killed": int(marker.read_text())}


class FailTimesAction(BaseAction[DirParams]):
    """Fails (raising ``params.error``) on its first ``fail_times`` attempts, recording each
    attempt's start and, before raising, its end in ``attempts``."""

    def execute(self) -> dict:
        log = Path(self.params.dir) / "attempts"
        with open(log, "a") as f:
            f.write(f"start {time.time()!r}\n")
        done = sum(1 for line in log.read_text().splitlines() if line.startswith("start"))
        if done <= self.params.fail_times:
            with open(log, "a") as f:
                f.write(f"fail {time.time()!r}\n")
            raise {"ValueError": ValueError, "KeyError": KeyError}[self.params.error](f"attempt {done}")
        return {"attempt": done}


class NapParams(BaseModel):
    seconds: float
    dir: str | None = None


class NapAction(BaseAction[NapParams]):
    """Sleeps; records its pid first (so a test can see the process went)."""

    def execute(self) -> dict:
        if self.params.dir:
            (Path(self.params.dir) / f"nap-{os.getpid()}").write_text(str(time.time()))
        time.sleep(self.params.seconds)
        return {"slept": self.params.seconds}
