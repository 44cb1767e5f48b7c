"""Every message of the drivers' wire modules (``drivers/ray/wire.py`` and each driver's ``wire.py``),
packed and unpacked: what one end sends is what the other reads."""

from __future__ import annotations

import dataclasses
import json
import pickle
import sys

import pytest

import raydrive
from raydrive import ActionImportError, ExecutionError, ValidationError
from raydrive.core.action import run_action
from raydrive.drivers.ray import wire
from raydrive.drivers.ray.wire import ActionCall
from raydrive.drivers.ray_job import wire as job_wire
from raydrive.drivers.ray_job.wire import JobSpec, PooledJob
from raydrive.drivers.ray_jobs_api import wire as api_wire
from raydrive.drivers.ray_jobs_api.wire import Outcome, Payload, RemoteError
from raydrive.drivers.ray_pipeline import wire as pipeline_wire
from raydrive.drivers.ray_pipeline.wire import PipelineSpec
from tests.actions_for_tests import AddParams

ADD = "tests.actions_for_tests.AddAction"
SECRET = "planted-wire-secret-9"
MESSAGES = ("ActionCall", "PooledJob", "JobSpec", "PipelineSpec", "Payload", "Outcome", "RemoteError")


def spec(**changes) -> JobSpec:
    fields = {
        "mode": "task",
        "action": "AddAction",
        "target": ADD,
        "params": {"a": 1},
        "env": {"A": "1", "API_TOKEN": SECRET},
        "code_paths": ["/src"],
        "ray_options": {"num_cpus": 1, "runtime_env": {"env_vars": {"A": "1"}}},
        "launch": "task:abc",
        "ttl": 60.0,
    }
    return JobSpec(**{**fields, **changes})


def test_every_message_of_the_wire_modules_has_a_round_trip_test():
    modules = (wire, job_wire, api_wire, pipeline_wire)
    messages = {n for m in modules for n in m.__all__ if dataclasses.is_dataclass(getattr(m, n))}
    assert messages == set(MESSAGES)
    tests = {name for name in globals() if name.startswith("test_")}
    for name in messages:
        assert any(name.lower() in t.replace("_", "") for t in tests), f"no test for {name}"


# --- ray-actor and ray-job's pooled task: one bytes for Ray's fast path, else a list ---------------
def test_actioncall_round_trip():
    call = ActionCall(ADD, {"a": 1, "nested": [1, {"x": None}]}, "job-1")
    packed = call.pack()
    assert type(packed) is bytes  # Ray passes bytes through without its serializer
    assert ActionCall.unpack(packed) == call
    assert ActionCall.unpack(pickle.loads(pickle.dumps(packed))) == call


def test_actioncall_carries_a_class_by_value():
    class Local(raydrive.BaseAction[AddParams]):
        def execute(self) -> int:
            return self.params.a

    packed = ActionCall(Local, {"a": 1}, "j").pack()
    assert isinstance(packed, list)  # stdlib pickle cannot take a local class: Ray's cloudpickle does
    assert ActionCall.unpack(packed).target is Local


def test_values_of_the_submitters_main_travel_as_a_list_for_cloudpickle():
    # stdlib pickle would name __main__.Point by reference, which a worker's __main__ lacks.
    main = sys.modules["__main__"]
    point = dataclasses.make_dataclass("Point", [("x", int)])
    point.__module__ = "__main__"
    main.Point = point
    try:
        packed = ActionCall(ADD, {"p": point(1)}, "j").pack()
        assert isinstance(packed, list)
        assert ActionCall.unpack(packed).params == {"p": point(1)}
    finally:
        delattr(main, "Point")


def test_ray_objects_in_params_travel_as_a_list_for_rays_serializer():
    # Ray's reducer registers the worker as a borrower of an ObjectRef; stdlib pickle keeps the id only.
    ray = pytest.importorskip("ray")
    ref = ray.ObjectRef(b"\x01" * 28)
    packed = ActionCall(ADD, {"data": ref}, "j").pack()
    assert isinstance(packed, list) and packed[1]["data"] is ref
    # A plain string that mentions ray or __main__ is no Ray object: still bytes unless it spells a
    # module name exactly (then the slower list form, which is just as correct).
    assert type(ActionCall(ADD, {"a": "array.x", "b": "ray tracing"}, "j").pack()) is bytes


def test_results_round_trip_packed():
    for value in (None, 3, "x", {"a": [1, 2.5, None, True]}, [{"nested": {"k": "v"}}]):
        packed = wire.pack_result(value)
        assert type(packed) is bytes
        assert wire.unpack_result(packed) == value
    assert wire.unpack_result([7]) == 7  # the list form, for what stdlib pickle cannot take
    big = {"rows": ["x" * 100] * 20_000}  # over Ray's inline limit: it comes from the object store
    assert wire.unpack_result(memoryview(wire.pack_result(big))) == big  # any bytes-like reads


def test_pooledjob_round_trip():
    job = PooledJob(ADD, {"a": 1}, "job-2", {"A": "1", "DB_PASSWORD": SECRET}, ["/src", "/cwd"])
    packed = job.pack()
    assert type(packed) is bytes
    assert PooledJob.unpack(packed) == job
    assert PooledJob.unpack(PooledJob(ADD, {}, "j", {}).pack()).code_paths == []


# --- ray-job's registry: a dict -------------------------------------------------------------------
def test_jobspec_round_trip_and_what_the_registry_makes_of_it():
    sent = spec()
    packed = sent.pack()
    assert isinstance(packed, dict) and set(packed) == {f.name for f in dataclasses.fields(JobSpec)}
    back = JobSpec.unpack(pickle.loads(pickle.dumps(packed)))
    assert back == sent
    assert back.pooled("j9") == PooledJob(ADD, {"a": 1}, "j9", sent.env, ["/src"])
    assert back.call("j9") == ActionCall(ADD, {"a": 1}, "j9")
    assert JobSpec.unpack({k: v for k, v in packed.items() if k != "ttl"}).ttl == 3600.0  # a default


@pytest.mark.parametrize("field", ["mode", "target", "params", "env", "launch"])
def test_jobspec_unpack_with_a_missing_field_raises_type_error(field):
    packed = spec().pack()
    del packed[field]
    with pytest.raises(TypeError):
        JobSpec.unpack(packed)


def test_jobspec_unpack_with_an_unknown_field_raises_type_error():
    with pytest.raises(TypeError):
        JobSpec.unpack({**spec().pack(), "retries": 3})  # a newer submitter's spec


# --- ray-pipeline: the dataclass itself ---------------------------------------------------------
def test_pipelinespec_round_trip_and_repr_hides_secrets():
    sent = PipelineSpec(
        run_id="run-1",
        service_url="http://127.0.0.1:8000",
        entrypoints=[ADD, "pkg.mod.Other"],
        names=["AddAction", "Other"],
        params={"a": 1, "db_password": SECRET},
        start_index=1,
        env={"VAULT_TOKEN": SECRET},
        token=SECRET,
    )
    assert pickle.loads(pickle.dumps(sent)) == sent
    shown = repr(sent) + str(sent)
    assert SECRET not in shown and "run-1" in shown and "AddAction" in shown


# --- ray-jobs-api: JSON -------------------------------------------------------------------------
def test_payload_round_trip():
    sent = Payload(ADD, {"a": 1, "when": "2024-01-02"}, {"A": "1"}, {"API_TOKEN": SECRET})
    text = sent.pack()
    assert json.loads(text)["protocol"] == api_wire.PROTOCOL
    back = Payload.unpack(text)
    assert back == sent and back.target() == ADD


def test_payload_for_a_class_by_value():
    class Local(raydrive.BaseAction[AddParams]):
        def execute(self) -> int:
            return self.params.a + self.params.b

    sent = Payload.for_target(Local, {"a": 2}, {"A": "1"}, {"S": SECRET})
    assert sent.action.endswith("<locals>.Local") and sent.action_pickle
    back = Payload.unpack(sent.pack())
    assert back == sent
    cls = back.target()
    assert issubclass(cls, raydrive.BaseAction) and cls.__name__ == "Local"
    assert run_action(cls, {"a": 2}) == 3
    assert Payload.for_target(ADD, {}, {}, {}).action_pickle is None


@pytest.mark.parametrize(
    "text", ['{"protocol": 1, "action": "a.B", "params": {}}', '{"action": "a.B", "params": {}}', "[1, 2]"]
)
def test_payload_of_another_protocol_is_refused(text):
    with pytest.raises(ValueError, match="different raydrive versions"):
        Payload.unpack(text)


def test_payload_ignores_fields_it_does_not_know():
    text = json.dumps({"protocol": api_wire.PROTOCOL, "action": ADD, "params": {}, "later": 1})
    assert Payload.unpack(text) == Payload(ADD, {})


def test_outcome_round_trip_of_a_result():
    sent = Outcome(True, {"total": 3, "items": [1, "two", None, 1.5]})
    assert Outcome.unpack(sent.pack()) == sent
    assert Outcome.unpack(sent.pack().encode()) == sent  # read from a file as bytes
    with pytest.raises((TypeError, ValueError)):
        Outcome(True, {1, 2}).pack()


def test_outcome_names_the_run_that_wrote_it_and_older_files_read_without():
    sent = Outcome(True, 5, run="raydrive_payload_ab12")
    assert Outcome.unpack(sent.pack()) == sent
    failed = Outcome(False, error=RemoteError.from_exception(RuntimeError("x"), "execution"), run="p1")
    assert Outcome.unpack(failed.pack()) == failed
    # Written by an entry from before the field (or with a run that is not text): no run.
    assert Outcome.unpack('{"protocol": 3, "ok": true, "result": 1, "error": null}') == Outcome(True, 1)
    assert Outcome.unpack('{"ok": true, "result": 1, "run": 7}') == Outcome(True, 1)


def _raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


@pytest.mark.parametrize("kind", ["validation", "import", "execution", "payload"])
def test_outcome_round_trip_of_a_remote_error(kind):
    fields = {
        "validation": {"action": "AddAction", "errors": [{"loc": ["a"], "msg": "bad", "type": "int"}]},
        "import": {"entrypoint": "pkg.mod.X", "reason": "no module named pkg"},
    }.get(kind, {})
    error = RemoteError.from_exception(_raised(RuntimeError("it broke")), kind, **fields)
    assert error.type == "RuntimeError" and error.message == "it broke"
    assert "RuntimeError: it broke" in (error.traceback or "")
    sent = Outcome(False, error=error)
    back = Outcome.unpack(sent.pack())
    assert back == sent and isinstance(back.error, RemoteError)
    raised = back.error.to_raydrive("job-3")
    expected = {"validation": ValidationError, "import": ActionImportError}.get(kind, ExecutionError)
    assert type(raised) is expected
    if kind == "validation":
        assert raised.action == "AddAction" and raised.errors == fields["errors"]
    elif kind == "import":
        assert "pkg.mod.X" in str(raised) and "no module named pkg" in str(raised)
    else:
        assert "job-3" in str(raised) and raised.error_type == "RuntimeError"
        assert "it broke" in raised.remote_traceback


def test_remote_error_keeps_what_an_execution_error_knew():
    original = ExecutionError(
        "summary text", error_type="KeyError", error_message="'k'", remote_traceback="Traceback: remote"
    )
    error = RemoteError.from_exception(original, "execution")
    assert (error.type, error.message, error.traceback) == ("KeyError", "'k'", "Traceback: remote")
    assert Outcome.unpack(Outcome(False, error=error).pack()).error == error


@pytest.mark.parametrize(
    "data",
    [
        "",
        "not json",
        b"\xff\xfe garbage",
        "[]",
        "null",
        '"ok"',
        "{}",
        '{"ok": "yes"}',
        '{"ok": 1, "result": 2}',
        '{"ok": false}',
        '{"ok": false, "error": "text"}',
        '{"ok": false, "error": {"kind": "execution"}}',
        '{"protocol": 2, "ok": true, "res',  # torn: the job died writing it
    ],
)
def test_outcome_unpack_of_garbage_returns_none(data):
    assert Outcome.unpack(data) is None


def test_names_and_ids_on_the_wire():
    assert api_wire.valid_job_id("raydrive_0123abc") and api_wire.valid_job_id("a.b:c-d_e")
    for bad in ("", "../etc", "a/b", "-x", "a b", "x" * 257, None, 3):
        assert not api_wire.valid_job_id(bad)
    assert api_wire.result_filename("job-1") == "raydrive/job-1.json"
    assert pipeline_wire.pipeline_actor_name("r1") == "raydrive-pipeline-r1"
    assert job_wire.REGISTRY_NAME.startswith("raydrive-job-registry-v")


def test_no_message_repr_shows_params_env_or_secrets():
    secret = "hunter2-wire-secret"
    messages = [
        wire.ActionCall("m.A", {"password": secret}, "j"),
        job_wire.PooledJob("m.A", {"password": secret}, "j", {"API_TOKEN": secret}),
        job_wire.JobSpec("task", "A", "m.A", {"password": secret}, {"API_TOKEN": secret}, [], {}, "k"),
        api_wire.Payload("m.A", {"password": secret}, {"X": secret}, {"API_TOKEN": secret}),
    ]
    for message in messages:
        assert secret not in repr(message) and secret not in str(message), type(message).__name__
