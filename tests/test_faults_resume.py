"""Safe resume with actions given as ``'module.Class'`` strings that only the working dir holds
(the README's form): the run records each action's params schema, so a resume after a schema
changed is refused as it is with classes."""

from __future__ import annotations

import uuid

import pytest

import raydrive
from raydrive.core.pipeline import RunStatus
from raydrive.service.server import ServiceServer
from tests.conditions import wait_for

pytestmark = pytest.mark.ray

ACTIONS = """
from pydantic import BaseModel

from raydrive import BaseAction


class LoadParams(BaseModel):
    rows: int{extra}


class Load(BaseAction[LoadParams]):
    def execute(self):
        return {{"data": list(range(self.params.rows))}}


class BoomParams(BaseModel):
    rows: int
    data: list[int] = []


class Boom(BaseAction[BoomParams]):
    def execute(self):
        raise ValueError("boom")
"""


def test_string_actions_record_their_schema_and_a_changed_one_is_refused(ray_cluster, tmp_path):
    module = f"rd_faults_resume_{uuid.uuid4().hex[:8]}"
    work = tmp_path / "work"
    work.mkdir()
    source = work / f"{module}.py"
    source.write_text(ACTIONS.format(extra=""))
    actions = [f"{module}.Load", f"{module}.Boom"]
    with (
        ServiceServer(db=tmp_path / "runs.db") as service,
        raydrive.get_executor(
            "ray-pipeline", ray_address=ray_cluster.address, working_dir=work,
            pipeline_service_url=service.url, progress_interval=0.05,
        ) as ex,
    ):  # fmt: skip
        run = ex.submit(actions, {"rows": 2}, name="strings")
        wait_for(lambda: ex.get_status(run) == RunStatus.FAILED, 120, "the run to fail at Boom")
        recorded = ex.client.get_run(run).fingerprint
        assert recorded is not None and all(a.params_schema for a in recorded), recorded
        # The first action's params model changes; its checkpoint was made under the old one.
        source.write_text(ACTIONS.format(extra="\n    scale: int = 1"))
        with pytest.raises(raydrive.SubmissionError, match=r"'Load'.*params schema"):
            ex.submit(actions, {"rows": 2}, name="strings", resume_from=run)
