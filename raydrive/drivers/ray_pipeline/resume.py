"""Safe resume for ``ray-pipeline``: a run's definition fingerprint, and where a resume starts.

Each run records a fingerprint of its definition (:func:`fingerprint`: per action, its name,
entrypoint and a hash of its params model's JSON schema). ``submit(..., resume_from=...)``
(:func:`resume_point`) refuses, naming the first action that differs, when the new definition
does not match the old run's up to its latest checkpoint (the actions whose results the new run
takes over without running them), unless ``force=True``; a run still running or pending, or one
that completed, is never resumed. Only pydantic and the standard library are imported here.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from raydrive.core.errors import SubmissionError
from raydrive.core.pipeline import ActionFingerprint, RunStatus
from raydrive.core.redaction import MASK
from raydrive.drivers.ray_pipeline.payload import restore_secrets

__all__ = ["fingerprint", "first_difference", "resume_point", "schema_hash", "schema_in_dir"]

_log = logging.getLogger("raydrive.pipeline")


def schema_hash(model: Any) -> str | None:
    """sha256 of the params model's JSON schema (keys sorted); None for an action without one."""
    if model is None:
        return None
    try:
        text = json.dumps(model.model_json_schema(), sort_keys=True, default=str)
    except Exception:  # a model pydantic cannot render a schema of: its fields and types
        fields = getattr(model, "model_fields", {})
        text = repr(sorted((name, repr(info.annotation)) for name, info in fields.items()))
    return hashlib.sha256(text.encode()).hexdigest()


def fingerprint(
    names: Sequence[str], actions: Sequence[Any], working_dir: Path | None = None
) -> list[ActionFingerprint]:
    """The definition's fingerprint: ``actions`` are prepared actions (``cls``, ``entrypoint``).

    An action given as a ``'module.Class'`` string that does not import here (its module is in
    the working dir that travels to the cluster) is imported from ``working_dir`` for its
    schema (:func:`schema_in_dir`), so that a resume compares schemas for both forms alike.
    """
    out = []
    for name, action in zip(names, actions, strict=True):
        cls = action.cls
        if cls is not None:
            schema = schema_hash(getattr(cls, "params_model", None))
        elif working_dir is not None:
            schema = schema_in_dir(action.entrypoint, working_dir)
        else:
            schema = None
        out.append(ActionFingerprint(name=name, entrypoint=action.entrypoint, params_schema=schema))
    return out


def schema_in_dir(entrypoint: str, directory: Path) -> str | None:
    """:func:`schema_hash` of ``module.Class``'s params model, its module imported from
    ``directory`` as the actor will (None when it does not import here, e.g. it needs packages
    only the cluster has).

    The import leaves no trace: the modules it loaded from ``directory`` are dropped from
    ``sys.modules`` again (the next submission reads the files afresh, as its actor will), and
    no bytecode is written into the directory (which would change the package that travels).
    """
    module_name, _, class_name = entrypoint.rpartition(".")
    root = Path(directory).expanduser().resolve()
    before = set(sys.modules)
    writes = sys.dont_write_bytecode
    sys.dont_write_bytecode = True
    sys.path.insert(0, str(root))
    try:
        importlib.invalidate_caches()
        module = importlib.import_module(module_name)
        return schema_hash(getattr(getattr(module, class_name, None), "params_model", None))
    except Exception as exc:  # any failure of the user's module: no schema, as before
        _log.info("params schema of %s not known here (%s: %s)", entrypoint, type(exc).__name__, exc)
        return None
    finally:
        sys.dont_write_bytecode = writes
        with contextlib.suppress(ValueError):
            sys.path.remove(str(root))
        for loaded in set(sys.modules) - before:
            path = getattr(sys.modules.get(loaded), "__file__", None)
            if path and Path(path).resolve().is_relative_to(root):
                sys.modules.pop(loaded, None)


def first_difference(
    old: Sequence[ActionFingerprint], new: Sequence[ActionFingerprint], upto: int
) -> str | None:
    """What differs first between two definitions in their actions ``0..upto`` (None: nothing)."""
    for index in range(upto + 1):
        if index >= len(new):
            return f"the new definition has no action #{index} (the run had {old[index].name!r})"
        if index >= len(old):
            return f"the run had no action #{index} (the new definition has {new[index].name!r})"
        was, now = old[index], new[index]
        if was.entrypoint != now.entrypoint:
            return f"action #{index} {now.name!r} is {now.entrypoint!r} where the run had {was.entrypoint!r}"
        if was.params_schema != now.params_schema and None not in (was.params_schema, now.params_schema):
            return (
                f"action #{index} {now.name!r} ({now.entrypoint}) has another params schema than in the run"
            )
    return None


def resume_point(
    client: Any,
    run_id: str,
    names: list[str],
    definition: list[ActionFingerprint],
    params: dict[str, Any],
    *,
    force: bool = False,
) -> tuple[int, dict[str, Any]]:
    """Where a resume of ``run_id`` starts and with which params (secret ones from ``params``).

    :raises JobNotFoundError: no such run.
    :raises SubmissionError: the run is pending, running or completed; the definition differs
        from the run's up to its checkpoint (unless ``force``); secret params are missing.
    """
    previous = client.get_run(run_id)  # JobNotFoundError for an unknown id
    if previous.status in (RunStatus.PENDING, RunStatus.RUNNING):
        raise SubmissionError(
            f"run {run_id!r} is {previous.status.value}; only a failed or cancelled run can be "
            "resumed (cancel it first)"
        )
    if previous.status is RunStatus.COMPLETED:
        raise SubmissionError(
            f"run {run_id!r} completed; only a failed or cancelled run can be resumed (submit "
            "the pipeline again without resume_from to run it again)"
        )
    checkpoint = client.get_latest_checkpoint(run_id)
    if checkpoint is None:
        start, stored = 0, {**previous.params, **params}
    else:
        index = checkpoint.action_index
        if index >= len(names):
            raise SubmissionError(
                f"run {run_id!r} was checkpointed after action {checkpoint.action_name!r} (#{index}), "
                f"which this pipeline of {len(names)} actions does not have"
            )
        if previous.fingerprint is None:  # a run of an older raydrive: only the names to compare
            if names[index] != checkpoint.action_name and not force:
                raise SubmissionError(
                    f"run {run_id!r} was checkpointed after action {checkpoint.action_name!r} "
                    f"(#{index}), which this pipeline does not have at that place (force=True resumes anyway)"
                )
        else:
            differs = first_difference(previous.fingerprint, definition, index)
            if differs is not None and not force:
                raise SubmissionError(
                    f"cannot resume run {run_id!r}: its definition differs up to its checkpoint "
                    f"(after action #{index} {checkpoint.action_name!r}): {differs}; the completed "
                    "actions would not be those this pipeline runs (force=True resumes anyway)"
                )
            if differs is not None:
                _log.warning("resuming run %s although %s (force=True)", run_id, differs)
        start, stored = index + 1, dict(checkpoint.params_snapshot)
    restored, missing = restore_secrets(stored, params)
    if missing:
        raise SubmissionError(
            f"run {run_id!r} had secret params that the service keeps only as {MASK}: pass "
            f"{', '.join(missing)} again in params to resume it"
        )
    return start, restored
