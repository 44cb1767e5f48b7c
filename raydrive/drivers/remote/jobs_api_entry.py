"""The entrypoint of a ``ray-jobs-api`` job: ``python -m raydrive.drivers.remote.jobs_api_entry``.

It runs inside the job's driver process on the cluster and is kept light (no Ray import unless
the action travelled by value): it

1. reads the job's :class:`~.wire.Payload` (action, params, secrets) from the one-off
   ``py_modules`` package the submitter uploaded and drops the package from the runtime env that
   ``ray.init()`` in the action would pass on to its tasks and actors;
2. puts the secrets in ``os.environ`` and runs the action through :func:`run_action` with a sink
   that prints log lines, progress and metrics to stdout (the job's log);
3. writes the :class:`~.wire.Outcome` next to the job's log file, in
   ``<logs dir>/raydrive/<submission id>.json``, where the submitter reads it through the
   dashboard's log API. The exit code is 0 on success, 1 when the action failed, 2 when the job
   could not even start the action (bad payload, no log directory).

The unpacked payload file is deleted on every way out (a ``finally``), including a failure
before it was read, so the secrets never stay on the node's disk. ``--delete-result ID`` is the
clean-up job that ``delete()`` runs on the driver's node to remove a job's outcome file.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from raydrive.drivers.wire import (
    PAYLOAD_DIR_PREFIX,
    PAYLOAD_FILE,
    PAYLOAD_PREFIX,
    Outcome,
    Payload,
    RemoteError,
    result_filename,
    valid_job_id,
)

__all__ = ["PrintSink", "main"]

JOB_CONFIG_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"  # Ray: the job's runtime env, for ray.init()


class PrintSink:
    """Prints what the action reports, one line each, flushed so that log streaming sees it now."""

    def log(self, level: str, message: str) -> None:
        print(f"[{level.upper()}] {message}", flush=True)

    def progress(self, current: float, total: float, step: str | None) -> None:
        print(f"[PROGRESS] {current:g}/{total:g}{f' ({step})' if step else ''}", flush=True)

    def metrics(self, values: Mapping[str, Any], step: str | int | None) -> None:
        at = f" at step {step}" if step is not None else ""
        print(f"[METRICS] {json.dumps(dict(values), default=str)}{at}", flush=True)


def _payload_files(package: str | None) -> Iterator[Path]:
    """The unpacked payload file(s) on ``sys.path`` (Ray puts each ``py_modules`` package there);
    every raydrive payload there when the package's name is unknown (bad arguments)."""
    for entry in list(sys.path):
        base = Path(entry or ".")
        if package is not None:
            candidate = base / package / PAYLOAD_FILE
            if candidate.is_file():
                yield candidate
        elif "runtime_resources" in base.parts or base.name.startswith(PAYLOAD_PREFIX):
            with contextlib.suppress(OSError):
                yield from base.glob(f"{PAYLOAD_DIR_PREFIX}*/{PAYLOAD_FILE}")


def _delete_payload(package: str | None) -> None:
    for path in _payload_files(package):
        with contextlib.suppress(OSError):
            path.unlink()


def _read_payload(package: str) -> Payload:
    for path in _payload_files(package):
        return Payload.unpack(path.read_text(encoding="utf-8"))
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


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Atomic: the submitter never reads a half-written file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.replace(tmp, path)


def _run(payload: Payload, job_id: str) -> Outcome:
    from raydrive.core.action import run_action
    from raydrive.core.errors import ActionImportError, ExecutionError, ValidationError

    _forget_payload()
    os.environ.update(payload.secrets)
    env = {**payload.env, **payload.secrets}
    # `python -m` put the working dir (the job's cwd) first on sys.path already.
    try:
        result = run_action(payload.target(), payload.params, job_id=job_id, env=env, sink=PrintSink())
    except ValidationError as exc:
        return Outcome(
            False, error=RemoteError.from_exception(exc, "validation", action=exc.action, errors=exc.errors)
        )
    except ActionImportError as exc:
        error = RemoteError.from_exception(exc, "import", entrypoint=exc.entrypoint, reason=exc.reason)
        return Outcome(False, error=error)
    except ExecutionError as exc:
        return Outcome(False, error=RemoteError.from_exception(exc, "execution"))
    return Outcome(True, result)


def _not_json(action: str, exc: Exception) -> Outcome:
    from raydrive.core.errors import ExecutionError

    err = ExecutionError(
        f"the result of action {action!r} is not JSON data: {exc}",
        error_type=type(exc).__name__,
        error_message=str(exc),
    )
    return Outcome(False, error=RemoteError.from_exception(err, "execution"))


def _delete_result(job_id: str, own: str | None) -> int:
    """The clean-up job ``own``: remove ``job_id``'s outcome file from this node's log directory."""
    if not valid_job_id(job_id) or not own:
        print(f"raydrive: {job_id!r} is not a job id (or --job-id is missing)", file=sys.stderr, flush=True)
        return 2
    try:
        path = _logs_dir(own) / result_filename(job_id)
    except RuntimeError as exc:
        print(exc, file=sys.stderr, flush=True)
        return 2
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    print(f"raydrive: deleted the outcome of job {job_id}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="raydrive.drivers.remote.jobs_api_entry")
    parser.add_argument("--job-id", help="the job's submission id")
    parser.add_argument("--payload", help="name of the payload package directory")
    parser.add_argument("--action", default=None, help="the action, for display only")
    parser.add_argument("--delete-result", default=None, help="delete this job's outcome file, then exit")
    try:
        args = parser.parse_args(argv)
    except SystemExit:
        _delete_payload(None)
        raise
    if args.delete_result is not None:
        return _delete_result(args.delete_result, args.job_id)
    try:
        return _main(args)
    finally:
        _delete_payload(args.payload)  # whatever happened: the secrets do not stay on disk


def _main(args: argparse.Namespace) -> int:
    if not args.job_id or not args.payload:
        print("raydrive: --job-id and --payload are required", file=sys.stderr, flush=True)
        return 2
    try:
        out = _logs_dir(args.job_id) / result_filename(args.job_id)
    except RuntimeError as exc:
        print(exc, file=sys.stderr, flush=True)
        return 2
    try:
        payload = _read_payload(args.payload)
    except Exception as exc:
        print(f"raydrive: cannot read the job's payload: {exc}", file=sys.stderr, flush=True)
        _write(out, Outcome(False, error=RemoteError.from_exception(exc, "payload")).pack())
        return 2
    _delete_payload(args.payload)  # read: not needed on disk any more
    outcome = _run(payload, args.job_id)
    try:
        text = outcome.pack()
    except (TypeError, ValueError) as exc:
        outcome = _not_json(payload.action, exc)
        text = outcome.pack()
    if outcome.error is not None:
        # The traceback goes to the job's log as well, for whoever reads the logs.
        print((outcome.error.traceback or outcome.error.summary).rstrip(), file=sys.stderr, flush=True)
    _write(out, text)
    return 0 if outcome.ok else 1


if __name__ == "__main__":
    sys.exit(main())
