"""Actions the Ray tests ship as a working dir: importable in the workers only, never locally."""

from __future__ import annotations

import os
import time

from pydantic import BaseModel

from raydrive import BaseAction

CALLS = {"count": 0}  # module state: survives between calls on a persistent actor


class AddParams(BaseModel):
    a: int
    b: int = 1


class WdAddAction(BaseAction[AddParams]):
    def execute(self) -> dict:
        return {"total": self.params.a + self.params.b}


class NoParams(BaseModel):
    pass


class StateAction(BaseAction[NoParams]):
    def execute(self) -> dict:
        CALLS["count"] += 1
        return {"count": CALLS["count"], "pid": os.getpid()}


class SleepParams(BaseModel):
    seconds: float


class SleepAction(BaseAction[SleepParams]):
    def execute(self) -> dict:
        time.sleep(self.params.seconds)
        return {"slept": self.params.seconds, "pid": os.getpid()}


class ExitAction(BaseAction[NoParams]):
    def execute(self) -> None:
        os._exit(3)


class ResourcesAction(BaseAction[NoParams]):
    def execute(self) -> dict:
        import ray

        return {"resources": ray.get_runtime_context().get_assigned_resources(), "pid": os.getpid()}


class EnvParams(BaseModel):
    keys: list[str]


class EnvPidAction(BaseAction[EnvParams]):
    def execute(self) -> dict:
        return {
            "os": {k: os.environ.get(k) for k in self.params.keys},
            "ctx": {k: self.ctx.env.get(k) for k in self.params.keys},
            "pid": os.getpid(),
        }


class FailParams(BaseModel):
    message: str = "failed in the working dir"


class FailAction(BaseAction[FailParams]):
    def execute(self) -> None:
        raise ValueError(self.params.message)


class WheelAction(BaseAction[NoParams]):
    def execute(self) -> dict:
        import rd_tinywheel

        return {"value": rd_tinywheel.VALUE, "file": rd_tinywheel.__file__}
