"""The entrypoint of a ``ray-jobs-api`` job: ``python -m raydrive.drivers.jobs_api_entry``.

It runs inside the job's driver process on the cluster and is kept light (no Ray import): it

1. reads the job's payload (action, params, secrets) from the one-off ``py_modules`` package the
   submitter uploaded (see :mod:`raydrive.drivers.ray_jobs_api`), then deletes the unpacked file so
   the secrets do not stay on the node's disk, and drops the package from the runtime env that
   ``ray.init()`` in the action would pass on to its tasks and actors;
2. puts the secrets in ``os.environ`` and runs the action through :func:`run_action` with a sink
   that prints log lines, progress and metrics to stdout (the job's log);
3. writes the outcome, a JSON document, next to the job's log file, in
   ``<logs dir>/raydrive/<submission id>.json``, where the submitter reads it through the
   dashboard's log API. The exit code is 0 on success, 1 when the action failed, 2 when the job
   could not even start the action (bad payload, no log directory).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["PAYLOAD_FILE", "PAYLOAD_PREFIX", "RESULT_DIR", "PrintSink", "main", "result_filename"]

PAYLOAD_FILE = "payload.json"
PAYLOAD_PREFIX = "_raydrive_payload_"  # of the payload package's gcs:// name
JOB_CONFIG_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"  # Ray: the job's runtime env, for ray.init()
RESULT_DIR = "raydrive"
PROTOCOL = 1


def result_filename(submission_id: str) -> str:
    """The outcome file's path relative to the Ray logs directory of the driver's node."""
    return f"{RESULT_DIR}/{submission_id}.json"


class PrintSink:
    """Prints what the action reports, one line each, flushed so that log streaming sees it now."""

    def log(self, level: str, message: str) -> None:
        print(f"[{level.upper()}] {message}", flush=True)

    def progress(self, current: float, total: float, step: str | None) -> None:
        print(f"[PROGRESS] {current:g}/{total:g}{f' ({step})' if step else ''}", flush=True)

    def metrics(self, values: Mapping[str, Any], step: str | int | None) -> None:
        at = f" at step {step}" if step is not None else ""
        print(f"[METRICS] {json.dumps(dict(values), default=str)}{at}", flush=True)


def _read_payload(package: str) -> dict[str, Any]:
    # Ray puts each py_modules package's unpacked directory on sys.path; ours holds one
    # directory named after the submission's nonce.
    for entry in sys.path:
        candidate = Path(entry or ".") / package / PAYLOAD_FILE
        if candidate.is_file():
            data = json.loads(candidate.read_text(encoding="utf-8"))
            with contextlib.suppress(OSError):
                # Not needed any more: the secrets should not outlive the job on this disk.
                candidate.unlink()
            return data
    raise RuntimeError(f"raydrive: payload package {package!r} is not on sys.path of the job")


def _forget_payload() -> None:
    """Drop the payload package from the runtime env that ``ray.init()`` in this job inherits.

    Ray hands the job's runtime env to its driver in ``RAY_JOB_CONFIG_JSON_ENV_VAR``; without
    this, every task or actor the action starts would download and unpack the payload (secrets
    included) on its node.
    """
    raw = os.environ.get(JOB_CONFIG_ENV)
    if not raw:
        return
    try:
        config = json.loads(raw)
        runtime_env = config.get("runtime_env") or {}
        modules = runtime_env.get("py_modules") or []
        kept = [m for m in modules if PAYLOAD_PREFIX not in str(m)]
        if len(kept) == len(modules):
            return
        if kept:
            runtime_env["py_modules"] = kept
        else:
            runtime_env.pop("py_modules", None)
        os.environ[JOB_CONFIG_ENV] = json.dumps(config)
    except (ValueError, AttributeError, TypeError):
        pass  # not the shape this version of Ray uses: leave it as it is


def _logs_dir(submission_id: str) -> Path:
    """Ray's log directory on this node: where the job's stdout (``job-driver-<id>.log``) goes."""
    expected = f"job-driver-{submission_id}.log"
    for fd in (1, 2):
        try:
            path = Path(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            continue
        if path.name == expected:
            return path.parent
    try:  # not Linux: ask psutil (a Ray dependency) which log file is open
        import psutil

        for opened in psutil.Process().open_files():
            if Path(opened.path).name == expected:
                return Path(opened.path).parent
    except Exception:
        pass
    raise RuntimeError(f"raydrive: cannot find Ray's log directory ({expected} is not this job's stdout)")


def _write_outcome(path: Path, outcome: Mapping[str, Any]) -> None:
    text = json.dumps(outcome)  # first: a result that is not JSON fails before any file exists
    path.parent.mkdir(parents=True, exist_ok=True)
    # Atomic: the submitter never reads a half-written file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.replace(tmp, path)


def _error(exc: BaseException, kind: str, **fields: Any) -> dict[str, Any]:
    tb = getattr(exc, "remote_traceback", None) or "".join(
        traceback.format_exception(type(exc), exc, exc.__traceback__)
    )
    return {
        "kind": kind,
        "type": getattr(exc, "error_type", None) or type(exc).__name__,
        "message": getattr(exc, "error_message", None) or str(exc),
        "summary": getattr(exc, "message", None) or str(exc),
        "traceback": tb,
        **fields,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="raydrive.drivers.jobs_api_entry")
    parser.add_argument("--job-id", required=True, help="the job's submission id")
    parser.add_argument("--payload", required=True, help="name of the payload package directory")
    parser.add_argument("--action", default=None, help="the action, for display only")
    args = parser.parse_args(argv)

    try:
        out = _logs_dir(args.job_id) / result_filename(args.job_id)
    except RuntimeError as exc:
        print(exc, file=sys.stderr, flush=True)
        return 2
    try:
        payload = _read_payload(args.payload)
        if payload.get("protocol") != PROTOCOL:
            raise RuntimeError(
                f"raydrive: payload protocol {payload.get('protocol')!r} is not {PROTOCOL}: "
                "the submitter and the cluster run different raydrive versions"
            )
    except Exception as exc:
        print(f"raydrive: cannot read the job's payload: {exc}", file=sys.stderr, flush=True)
        _write_outcome(out, {"ok": False, "error": _error(exc, "payload")})
        return 2

    from raydrive.core.errors import ActionImportError, ExecutionError, ValidationError

    _forget_payload()
    secrets: dict[str, str] = payload.get("secrets") or {}
    os.environ.update(secrets)
    env = {**(payload.get("env") or {}), **secrets}
    # `python -m` put the working dir (the job's cwd) first on sys.path already.
    from raydrive.core.action import run_action

    try:
        result = run_action(
            payload["action"], payload["params"], job_id=args.job_id, env=env, sink=PrintSink()
        )
    except ValidationError as exc:
        outcome = {"ok": False, "error": _error(exc, "validation", action=exc.action, errors=exc.errors)}
    except ActionImportError as exc:
        outcome = {
            "ok": False,
            "error": _error(exc, "import", entrypoint=exc.entrypoint, reason=exc.reason),
        }
    except ExecutionError as exc:
        outcome = {"ok": False, "error": _error(exc, "execution")}
    else:
        try:
            _write_outcome(out, {"ok": True, "result": result})
        except (TypeError, ValueError) as exc:
            err = ExecutionError(
                f"the result of action {payload['action']!r} is not JSON-serializable: {exc}",
                error_type=type(exc).__name__,
                error_message=str(exc),
            )
            _write_outcome(out, {"ok": False, "error": _error(err, "execution")})
            print(err.message, file=sys.stderr, flush=True)
            return 1
        return 0
    # The traceback goes to the job's log as well, for whoever reads the logs.
    print(outcome["error"]["traceback"].rstrip(), file=sys.stderr, flush=True)
    _write_outcome(out, outcome)
    return 1


if __name__ == "__main__":
    sys.exit(main())
