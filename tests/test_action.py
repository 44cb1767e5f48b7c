from __future__ import annotations

import pickle

import pytest
from pydantic import BaseModel

from raydrive import ActionImportError, BaseAction, ExecutionError, ValidationError
from raydrive.core.action import action_entrypoint, resolve_action, run_action, validate_params
from tests.actions_for_tests import AddAction, AddParams, BoomAction


def test_params_model_comes_from_the_generic_argument():
    assert AddAction.params_model is AddParams
    assert AddAction.name == "AddAction"


def test_params_model_is_inherited_by_subclasses():
    class Child(AddAction):
        pass

    assert Child.params_model is AddParams


def test_class_and_entrypoint_string_resolve_to_the_same_class():
    assert resolve_action(AddAction) is AddAction
    assert resolve_action("tests.actions_for_tests.AddAction") is AddAction
    assert resolve_action("tests.actions_for_tests:AddAction") is AddAction
    assert resolve_action(action_entrypoint(AddAction)) is AddAction


@pytest.mark.parametrize(
    ("entrypoint", "reason"),
    [
        ("no_such_module_xyz.Action", "ModuleNotFoundError"),
        ("tests.actions_for_tests.Missing", "has no attribute 'Missing'"),
        ("tests.actions_for_tests.AddParams", "not a BaseAction subclass"),
        ("justaname", "expected 'package.module.Class'"),
    ],
)
def test_bad_entrypoints_say_why(entrypoint, reason):
    with pytest.raises(ActionImportError) as info:
        resolve_action(entrypoint)
    assert reason in str(info.value)
    assert entrypoint in str(info.value)


def test_validation_error_names_the_field():
    with pytest.raises(ValidationError) as info:
        validate_params(AddAction, {"a": "not-a-number"})
    assert "a:" in str(info.value)
    assert info.value.errors[0]["loc"] == ["a"]
    assert info.value.action == "AddAction"


def test_run_action_returns_json_and_checks_result_model():
    assert run_action(AddAction, {"a": 2, "b": 3}) == {"total": 5}

    class Bad(BaseAction[AddParams]):
        class Result(BaseModel):
            total: int

        result_model = Result

        def execute(self):
            return {"total": "many"}

    with pytest.raises(ExecutionError) as info:
        run_action(Bad, {"a": 1})
    assert info.value.error_type == "ValidationError"


def test_action_exception_becomes_execution_error_with_traceback():
    with pytest.raises(ExecutionError) as info:
        run_action(BoomAction, {"message": "kaput"}, job_id="j1")
    err = info.value
    assert err.error_type == "RuntimeError"
    assert err.error_message == "kaput"
    assert "raise RuntimeError(self.params.message)" in err.remote_traceback
    assert err.job_id == "j1"
    assert "kaput" in str(err)


def test_errors_pickle_with_their_fields():
    err = ExecutionError("failed", error_type="KeyError", remote_traceback="tb", job_id="x")
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is ExecutionError
    assert (copy.error_type, copy.remote_traceback, copy.job_id, copy.message) == (
        "KeyError",
        "tb",
        "x",
        "failed",
    )
    verr = pickle.loads(pickle.dumps(ValidationError("bad", action="A", errors=[{"loc": ["a"]}])))
    assert isinstance(verr, ValueError) and verr.errors == [{"loc": ["a"]}]


def test_keyboard_interrupt_is_not_swallowed():
    class Interrupt(BaseAction[AddParams]):
        def execute(self):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_action(Interrupt, {"a": 1})


def test_context_repr_hides_env_values():
    from raydrive.core.action import RuntimeContext

    ctx = RuntimeContext(job_id="j", env={"SYNAPSE_ACCESS_TOKEN": "s3cr3t-value"})
    assert "s3cr3t-value" not in repr(ctx)
    assert "SYNAPSE_ACCESS_TOKEN" in repr(ctx)


# --- issue 14: import errors, the shared action check, one result rule ---------------------------
def test_module_raising_at_import_is_an_action_import_error_naming_module_and_message():
    with pytest.raises(ActionImportError) as info:
        resolve_action("tests.actions_import_raises.Anything")
    assert "tests.actions_import_raises" in str(info.value)
    assert "RuntimeError" in str(info.value) and "missing MODEL_DIR" in str(info.value)


def test_try_resolve_leaves_a_locally_broken_module_to_the_worker():
    from raydrive.core.action import try_resolve_action

    assert try_resolve_action("tests.actions_import_raises.Anything") is None


class _NotAnAction:
    def execute(self) -> int:
        return 1


@pytest.mark.parametrize("bad", [_NotAnAction, int, 42, None, "", "NoModule"])
def test_require_action_refuses_non_actions(bad):
    from raydrive.core.action import require_action

    with pytest.raises(ActionImportError):
        require_action(bad)


def test_require_action_accepts_classes_and_entrypoints_without_importing():
    from raydrive.core.action import require_action

    assert require_action(AddAction) is AddAction
    assert require_action("not_importable_here.mod.Action") == "not_importable_here.mod.Action"


class _Model(BaseModel):
    when: __import__("datetime").datetime


def _returning(value):
    class Returns(BaseAction[AddParams]):
        def execute(self):
            return value

    return Returns


def test_results_follow_pydantics_json_mode():
    import datetime
    import decimal
    import enum
    import pathlib
    import uuid

    class Color(enum.Enum):
        RED = "red"

    when = datetime.datetime(2024, 5, 1, 12, 30, tzinfo=datetime.timezone.utc)
    uid = uuid.UUID("12345678-1234-5678-1234-567812345678")
    cases = [
        ((1, "a"), [1, "a"]),
        (when, "2024-05-01T12:30:00Z"),
        (datetime.date(2024, 5, 1), "2024-05-01"),
        (decimal.Decimal("1.5"), "1.5"),
        (uid, str(uid)),
        (pathlib.Path("/x/y"), "/x/y"),
        (Color.RED, "red"),
        (b"ab", "ab"),
        ({1: when}, {"1": "2024-05-01T12:30:00Z"}),
        (_Model(when=when), {"when": "2024-05-01T12:30:00Z"}),
        ({"nested": [{"a": (1,)}]}, {"nested": [{"a": [1]}]}),
    ]
    for value, expected in cases:
        assert run_action(_returning(value), {"a": 1}) == expected, value


@pytest.mark.parametrize("kind", ["object", "ndarray", "int64", "set", "frozenset"])
def test_non_json_results_are_an_execution_error_naming_the_type(kind):
    import numpy as np

    value = {
        "object": object(),
        "ndarray": np.array([1, 2]),
        "int64": np.int64(3),
        "set": [{1, 2}],
        "frozenset": (frozenset({3}),),
    }[kind]
    with pytest.raises(ExecutionError) as info:
        run_action(_returning({"out": value}), {"a": 1})
    assert info.value.error_type == "ResultSerializationError"
    assert kind in str(info.value) and "Returns" in str(info.value)
