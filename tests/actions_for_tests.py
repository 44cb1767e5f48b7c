"""Actions used by the tests (importable as ``tests.actions_for_tests`` or from a working dir)."""

from __future__ import annotations

import os

from pydantic import BaseModel

from raydrive import BaseAction


class AddParams(BaseModel):
    a: int
    b: int = 1


class AddResult(BaseModel):
    total: int


class AddAction(BaseAction[AddParams]):
    result_model = AddResult

    def execute(self) -> AddResult:
        self.logger.set_progress(1, 1, step="add")
        return AddResult(total=self.params.a + self.params.b)


class BoomParams(BaseModel):
    message: str = "boom"


class BoomAction(BaseAction[BoomParams]):
    def execute(self) -> None:
        raise RuntimeError(self.params.message)


class EnvParams(BaseModel):
    keys: list[str]


class EnvAction(BaseAction[EnvParams]):
    """Returns the values of the given keys from the context env and os.environ."""

    def execute(self) -> dict:
        return {
            "ctx": {k: self.ctx.env.get(k) for k in self.params.keys},
            "os": {k: os.environ.get(k) for k in self.params.keys},
        }


class ExitParams(BaseModel):
    code: int = 3


class ExitAction(BaseAction[ExitParams]):
    """Kills its own process without cleanup, as a segfault or OOM kill would."""

    def execute(self) -> None:
        os._exit(self.params.code)


class TextParams(BaseModel):
    text: str
    times: int = 1


class RepeatAction(BaseAction[TextParams]):
    """Returns its text repeated: a large param and a large result on demand."""

    def execute(self) -> dict:
        text = self.params.text * self.params.times
        return {"text": text, "length": len(text)}
