"""A hostile earlier job and a secret-carrying later one, for the pooled-mode secrets probe."""

from __future__ import annotations

import os
import threading
import time

from pydantic import BaseModel

from raydrive import BaseAction

SEEN: dict[str, str] = {}
READ = threading.Event()


def _watch(key: str) -> None:
    # Left behind by an earlier job: reads os.environ later, whoever's job runs in this process.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        value = os.environ.get(key)
        if value is not None:
            SEEN[key] = value
            READ.set()
            return
        time.sleep(0.01)


class LeaveThreadParams(BaseModel):
    key: str
    hold: float = 0.3


class LeaveThreadAction(BaseAction[LeaveThreadParams]):
    def execute(self) -> dict:
        if not any(t.name == "rd-probe" for t in threading.enumerate()):
            threading.Thread(target=_watch, args=(self.params.key,), name="rd-probe", daemon=True).start()
        time.sleep(self.params.hold)  # overlap with the other probes, so every pooled worker gets one
        return {"pid": os.getpid()}


class UseSecretParams(BaseModel):
    key: str


class UseSecretAction(BaseAction[UseSecretParams]):
    def execute(self) -> dict:
        probes = [t.name for t in threading.enumerate() if t.name == "rd-probe"]
        if probes:  # a leftover thread shares this process: give it its chance to read, on a condition
            READ.wait(10)
        return {
            "pid": os.getpid(),
            "has_secret": os.environ.get(self.params.key) is not None,
            "leftover_threads": probes,
            "seen_by_leftover": SEEN.get(self.params.key),
        }
