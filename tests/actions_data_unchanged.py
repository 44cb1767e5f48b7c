"""Actions whose params, results and metrics carry ML names (issue 23): what goes in comes back.

Copied into a plugin working dir by tests/test_data_unchanged.py, so they import on every driver.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

from raydrive import BaseAction

#: What the generating action returns: names the old masker took for secrets, none of them one.
RESULT = {
    "total_tokens": 99,
    "tokens_generated": 1234,
    "tokens_per_second": 31.5,
    "token_count": 7,
    "password_strength": "strong",
    "credential_count": 2,
    "cookie_policy": "strict",
    "secret_santa": "bob",
    "SYNAPSE_ACCESS_TOKEN": {"seen": True},
    "usage": {"prompt_tokens": 12, "completion_tokens": 87, "total_tokens": 99},
}
#: The metrics it reports.
METRICS = {"tokens_per_second": 31.5, "total_tokens": 99, "num_tokens": 3}


class GenerateParams(BaseModel):
    model_config = ConfigDict(extra="allow")  # every ML param the caller gives comes back

    prompt: str
    max_tokens: int
    num_tokens: int = 0
    token_count: int = 0


class GenerateAction(BaseAction[GenerateParams]):
    """Echoes its params and returns an ML result; reports ML metrics."""

    def execute(self) -> dict:
        self.logger.set_metrics(METRICS)
        return {"params": self.params.model_dump(), **RESULT}


class GateParams(BaseModel):
    model_config = ConfigDict(extra="allow")

    max_tokens: int
    fail_marker: str | None = None  # fails while this file exists (the resume test)


class GateAction(BaseAction[GateParams]):
    """The second pipeline step: fails while its marker exists, else returns what it was given."""

    def execute(self) -> dict:
        marker = self.params.fail_marker
        if marker and Path(marker).exists():
            raise RuntimeError("gate closed: marker present")
        return {"given": self.params.model_dump()}
