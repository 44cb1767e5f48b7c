"""The one submission step (drivers/ray/submission.py): each input kind, hooks once, feasibility once.

No cluster: the step takes the cluster's alive nodes as a callback, which these tests count.
"""

from __future__ import annotations

import dataclasses
from datetime import date, datetime
from pathlib import Path

import pytest
from pydantic import BaseModel

import raydrive
from raydrive import ActionImportError, InfeasibleResourcesError, ValidationError
from raydrive.core.options import RayOptions
from raydrive.core.plugins import PluginManager
from raydrive.core.policy_types import ResourceRequest
from raydrive.drivers.ray.submission import PreparedAction, Submission, Submitter
from tests.actions_for_tests import AddAction, AddParams

ADD = "tests.actions_for_tests.AddAction"
ELSEWHERE = "raydrive_nowhere_pkg.plugins.Train"  # imports on the cluster only (if anywhere)
NODES = [{"CPU": 2.0, "memory": 4e9, "counted": 1.0}]


class DatedParams(BaseModel):
    when: date
    at: datetime | None = None
    where: Path


class DatedAction(raydrive.BaseAction[DatedParams]):
    def execute(self) -> dict:
        return {"when": self.params.when}


class NotAnAction:
    pass


class Nodes:
    """The alive-nodes callback, counting its calls (each is a round trip to the cluster)."""

    def __init__(self, nodes=NODES) -> None:
        self.nodes = nodes
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return self.nodes


class CountResources:
    """A resources plugin that adds one CPU and one ``counted`` unit each time it is called."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    @raydrive.hookimpl
    def raydrive_adjust_resources(self, action: str, request: ResourceRequest) -> None:
        self.calls.append(action)
        request.num_cpus = (request.num_cpus or 0) + 1
        request.resources["counted"] = request.resources.get("counted", 0) + 1


def submitter(pm: PluginManager | None = None, **options) -> Submitter:
    return Submitter("test-driver", RayOptions(**options), pm or PluginManager())


# --- the action ------------------------------------------------------------------------------
def test_a_base_action_class_travels_as_its_entrypoint():
    prepared = submitter().action(AddAction)
    assert isinstance(prepared, PreparedAction)
    assert prepared.cls is AddAction
    assert prepared.name == "AddAction"
    assert prepared.target == ADD and prepared.entrypoint == ADD


def test_an_importable_string_is_resolved_here_and_travels_as_the_string():
    prepared = submitter().action(ADD)
    assert prepared.cls is AddAction
    assert prepared.target == ADD and prepared.name == "AddAction"


def test_a_string_that_does_not_import_here_travels_unvalidated():
    sub = submitter().prepare(ELSEWHERE, {"anything": object()}, job_id="j1")
    assert sub.action.cls is None
    assert sub.target == ELSEWHERE and sub.name == "Train" and sub.action.entrypoint == ELSEWHERE
    assert set(sub.params) == {"anything"}  # the worker validates what cannot be validated here


def test_a_class_defined_in_a_function_travels_by_value():
    class Local(raydrive.BaseAction[AddParams]):
        def execute(self) -> int:
            return self.params.a

    sub = submitter().prepare(Local, {"a": 1}, job_id="j1")
    assert sub.target is Local and sub.action.cls is Local and sub.name == "Local"
    assert sub.action.entrypoint.endswith("<locals>.Local")
    with pytest.raises(ValidationError, match="a"):
        submitter().prepare(Local, {"a": "not a number"}, job_id="j2")


@pytest.mark.parametrize(
    "action",
    [NotAnAction, int, 42, None, "", "   ", "NoDotAtAll", ["tests.actions_for_tests.AddAction"], {}],
    ids=repr,
)
def test_what_is_not_an_action_is_refused_with_action_import_error(action):
    with pytest.raises(ActionImportError):
        submitter().prepare(action, {"a": 1}, job_id="j1")


def test_a_string_naming_an_importable_non_action_is_refused_here():
    # The module imports here and the name is not a BaseAction: refused now, not on the cluster.
    with pytest.raises(ActionImportError, match="not a BaseAction subclass"):
        submitter().action("tests.test_submission.NotAnAction")


def test_the_prepared_action_is_made_once_per_executor():
    sub = submitter()
    assert sub.action(AddAction) is sub.action(AddAction)
    assert sub.action(ADD) is sub.action(ADD)


# --- the params ------------------------------------------------------------------------------
def test_dict_params_are_validated_and_travel_as_given():
    params = {"a": 2}
    sub = submitter().prepare(AddAction, params, job_id="j1")
    assert sub.params == {"a": 2}


def test_pydantic_model_params_travel_as_plain_data():
    sub = submitter().prepare(AddAction, AddParams(a=2, b=5), job_id="j1")
    assert sub.params == {"a": 2, "b": 5} and type(sub.params) is dict


def test_model_params_of_another_model_are_validated_against_the_actions():
    class Other(BaseModel):
        a: int
        b: int = 9

    assert submitter().prepare(AddAction, Other(a=1), job_id="j1").params == {"a": 1, "b": 9}


@pytest.mark.parametrize("json_params", [False, True])
def test_invalid_params_raise_validation_error_naming_the_field(json_params):
    with pytest.raises(ValidationError) as info:
        submitter().prepare(AddAction, {"a": "x", "b": 1}, job_id="j1", json_params=json_params)
    assert "a:" in str(info.value) and info.value.action == "AddAction"
    assert [e["loc"] for e in info.value.errors] == [["a"]]
    with pytest.raises(ValidationError, match="a: Field required"):
        submitter().prepare(AddAction, {"b": 1}, job_id="j2", json_params=json_params)


def test_json_params_turn_dates_and_paths_into_json_through_the_model():
    params = {"when": date(2024, 1, 2), "at": datetime(2024, 1, 2, 3, 4, 5), "where": Path("/data/x")}
    sub = submitter().prepare(DatedAction, params, job_id="j1", json_params=True)
    assert sub.params == {"when": "2024-01-02", "at": "2024-01-02T03:04:05", "where": "/data/x"}
    model = DatedParams(when=date(2024, 1, 2), where=Path("/data/x"))
    sub = submitter().prepare(DatedAction, model, job_id="j2", json_params=True)
    assert sub.params == {"when": "2024-01-02", "at": None, "where": "/data/x"}
    # Without json_params the values stay Python objects (the pickling drivers take them).
    assert submitter().prepare(DatedAction, params, job_id="j3").params["when"] == date(2024, 1, 2)


def test_json_params_for_an_action_not_importable_here():
    ok = submitter().prepare(ELSEWHERE, {"epochs": 3, "tags": ["a"]}, job_id="j1", json_params=True)
    assert ok.params == {"epochs": 3, "tags": ["a"]}
    model = DatedParams(when=date(2024, 1, 2), where=Path("/p"))
    dumped = submitter().prepare(ELSEWHERE, model, job_id="j2", json_params=True)
    assert dumped.params == {"when": "2024-01-02", "at": None, "where": "/p"}
    for bad in ({"when": date(2024, 1, 2)}, {"where": Path("/p")}, {"s": {1, 2}}):
        with pytest.raises(ValidationError, match="JSON-serializable"):
            submitter().prepare(ELSEWHERE, bad, job_id="j3", json_params=True)


# --- resources: the hooks once per prepare, feasibility once per distinct request --------------
def test_the_resources_hook_is_applied_exactly_once_per_prepare():
    counter = CountResources()
    pm = PluginManager()
    pm.register(counter, name="count-resources")
    sub = submitter(pm, num_cpus=0.5)
    nodes = Nodes()
    for i in range(3):
        got = sub.prepare(AddAction, {"a": i}, job_id=f"j{i}", nodes=nodes)
        # Applied once: the options' 0.5 plus one, never plus two.
        assert got.resources == ResourceRequest(num_cpus=1.5, resources={"counted": 1})
    assert counter.calls == ["AddAction"] * 3
    assert sub.options.resources is None  # the hooks changed a copy, not the options


def test_no_resources_step_for_a_job_that_places_no_process():
    counter = CountResources()
    pm = PluginManager()
    pm.register(counter, name="count-resources")
    nodes = Nodes()
    sub = submitter(pm).prepare(AddAction, {"a": 1}, job_id="j1")  # a warm actor's call
    assert sub.resources is None and sub.runtime is None and counter.calls == [] and nodes.calls == 0


def test_feasibility_is_checked_once_per_distinct_request():
    class PerAction:
        @raydrive.hookimpl
        def raydrive_adjust_resources(self, action: str, request: ResourceRequest) -> None:
            request.num_cpus = 2.0 if action == "DatedAction" else 1.0

    pm = PluginManager()
    pm.register(PerAction(), name="per-action")
    sub = submitter(pm)
    nodes = Nodes()
    for _ in range(3):
        sub.prepare(AddAction, {"a": 1}, job_id="j", nodes=nodes)
    assert nodes.calls == 1
    for _ in range(3):
        sub.prepare(DatedAction, {"when": "2024-01-01", "where": "/x"}, job_id="j", nodes=nodes)
    assert nodes.calls == 2  # another request: checked once more
    sub.prepare(AddAction, {"a": 1}, job_id="j", nodes=nodes)
    assert nodes.calls == 2
    sub.forget_cluster()  # another cluster (or the same restarted): checked again
    sub.prepare(AddAction, {"a": 1}, job_id="j", nodes=nodes)
    assert nodes.calls == 3


def test_an_infeasible_request_fails_every_time_naming_the_resource():
    sub = submitter(num_gpus=1)
    nodes = Nodes()
    for expected_calls in (1, 2):  # a refusal is not remembered as checked
        with pytest.raises(InfeasibleResourcesError, match="GPU=1"):
            sub.prepare(AddAction, {"a": 1}, job_id="j", nodes=nodes)
        assert nodes.calls == expected_calls


def test_an_empty_request_that_reserves_nothing_needs_no_cluster_check():
    nodes = Nodes()
    sub = submitter().prepare(AddAction, {"a": 1}, job_id="j", nodes=nodes, resources_required=False)
    assert sub.resources == ResourceRequest() and nodes.calls == 0
    submitter(num_cpus=1).prepare(AddAction, {"a": 1}, job_id="j", nodes=nodes, resources_required=False)
    assert nodes.calls == 1


# --- the runtime env and the Submission itself -----------------------------------------------
def test_the_runtime_env_is_built_once_per_prepare_with_secrets_apart(tmp_path):
    class Vault:
        @raydrive.hookimpl
        def raydrive_credentials(self, request, env):
            return {"VAULT_TOKEN": "hvs.planted-secret-1"}

    pm = PluginManager()
    pm.register(Vault(), name="vault")
    (tmp_path / "plugin.py").write_text("X = 1\n")
    sub = submitter(pm, working_dir=tmp_path, env={"A": "1"})
    builds = []

    def runtime():
        builds.append(1)
        return sub.build_runtime_env({})

    got = sub.prepare(AddAction, {"a": 1}, job_id="j1", nodes=Nodes(), runtime=runtime)
    assert len(builds) == 1
    assert got.runtime is not None and got.runtime.secrets == {"VAULT_TOKEN": "hvs.planted-secret-1"}
    assert "hvs.planted-secret-1" not in str(got.runtime.runtime_env)
    assert got.runtime.env["VAULT_TOKEN"] == "hvs.planted-secret-1"


def test_a_submission_is_frozen_and_its_repr_hides_params_and_secrets():
    sub = submitter().prepare(
        ELSEWHERE, {"password": "pw-planted-2", "api_token": "tok-planted-3"}, job_id="job-7"
    )
    assert isinstance(sub, Submission)
    for field, value in (("params", {}), ("job_id", "other"), ("resources", None)):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(sub, field, value)
    with pytest.raises(dataclasses.FrozenInstanceError):
        sub.action.target = "x"  # type: ignore[misc]
    shown = repr(sub) + str(sub)
    assert "job-7" in shown and "Train" in shown
    assert "pw-planted-2" not in shown and "tok-planted-3" not in shown and "password" not in shown


def test_a_class_of_a_module_never_imported_travels_by_value():
    # Code run by exec (the docs' examples, a notebook's cell runner) defines classes whose module
    # no worker can import: before, the worker got 'not_a_module_anywhere.Doubled' and failed.
    from raydrive.drivers.ray.submission import wire_target

    namespace: dict = {"__name__": "not_a_module_anywhere"}
    exec(
        "from pydantic import BaseModel\nfrom raydrive import BaseAction\n"
        "class P(BaseModel):\n    n: int\n"
        "class Doubled(BaseAction[P]):\n    def execute(self):\n        return self.params.n * 2\n",
        namespace,
    )
    assert wire_target(namespace["Doubled"], None) is namespace["Doubled"]
    assert wire_target(AddAction, None) == "tests.actions_for_tests.AddAction"
