"""Pipeline actions for the tests: params flow from one action to the next."""

from __future__ import annotations

import os
import time
from pathlib import Path

from pydantic import BaseModel, SecretStr

from raydrive import BaseAction


def write_pid_file(path: str) -> None:
    """This process's pid in ``path``, whole or not at all: tests wait for the file to exist,
    then read it (CI caught a test reading it between its creation and its write)."""
    tmp = Path(f"{path}.tmp")
    tmp.write_text(str(os.getpid()))
    os.replace(tmp, path)


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
    touch: str | None = None  # a file written when the action ran (tests wait on it)


class SumAction(BaseAction[SumParams]):
    def execute(self) -> dict:
        self.logger.set_metrics({"count": len(self.params.scaled)}, step=1)
        if self.params.touch:
            Path(self.params.touch).write_text("done")
        return {"total": sum(self.params.scaled), "pid": os.getpid()}


class SlowParams(BaseModel):
    seconds: float = 30.0
    pid_file: str | None = None


class SlowAction(BaseAction[SlowParams]):
    def execute(self) -> dict:
        if self.params.pid_file:
            write_pid_file(self.params.pid_file)
        deadline = time.monotonic() + self.params.seconds
        while time.monotonic() < deadline:
            self.logger.set_progress(1, 100, step="waiting")
            time.sleep(0.1)
        return {"slept": self.params.seconds}


class BadResultParams(BaseModel):
    kind: str = "set"


class BadResultAction(BaseAction[BadResultParams]):
    """Returns what is not JSON data: a set, an object, or a dict nested 300 deep."""

    def execute(self) -> dict:
        if self.params.kind == "set":
            return {"tags": {"a", "b"}}
        if self.params.kind == "object":
            return {"handle": object()}
        deep: dict = {}
        node = deep
        for _ in range(300):
            node["d"] = {}
            node = node["d"]
        return deep


class SpinParams(BaseModel):
    pid_file: str | None = None


class SpinAction(BaseAction[SpinParams]):
    """A tight loop that never reports and never sleeps: only a cancel ends it."""

    def execute(self) -> dict:
        if self.params.pid_file:
            write_pid_file(self.params.pid_file)
        n = 0
        while True:
            n += 1


class SecretParams(BaseModel):
    api_token: str
    db_password: SecretStr
    fail_marker: str | None = None


class SecretAction(BaseAction[SecretParams]):
    """Logs, returns and fails with its secrets in the text, as careless code does."""

    def execute(self) -> dict:
        token, password = self.params.api_token, self.params.db_password.get_secret_value()
        self.logger.info(f"connecting with {token} and {password}")
        if self.params.fail_marker and Path(self.params.fail_marker).exists():
            raise RuntimeError(f"login refused for {token} / {password}")
        return {"session_key": f"{token}-session", "echo": password}


class AfterSecretParams(BaseModel):
    api_token: str
    db_password: SecretStr
    session_key: str
    after_marker: str | None = None  # fail while this file exists (for resume tests)


class AfterSecretAction(BaseAction[AfterSecretParams]):
    """Needs the real secrets of the action before it (kept by the actor, never by the service)."""

    def execute(self) -> dict:
        assert not self.params.api_token.startswith("*"), "the secret param arrived masked"
        assert self.params.session_key == f"{self.params.api_token}-session"
        if self.params.after_marker and Path(self.params.after_marker).exists():
            raise RuntimeError(f"token {self.params.api_token} expired")
        return {"ok": True, "length": len(self.params.api_token)}
