"""The entrypoint of a ``ray-jobs-api`` job: ``python -m raydrive.drivers.ray_jobs_api.entry``.

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

Retries (``--attempt N``, ``--delay S``): attempt N of job ``--job-id`` runs under the submission
id :func:`~.wire.attempt_submission_id`; it first waits out the retry backoff (``--delay``), on
the cluster, so that a retry submitted at once still honours the backoff.

Deadline (the payload's ``timeout_s``): a watchdog thread starts with the action; at the
deadline it writes the Outcome with ExecutionTimeoutError (reason ``deadline exceeded``), flushes
the output and ends the process with ``os._exit(1)`` so that Ray marks the job FAILED, whether
or not anyone still watches the job.

The unpacked payload file is deleted on every way out (a ``finally``), including a failure
before it was read, so the secrets never stay on the node's disk; with retries left it is kept
while this attempt runs (a retry on this node reuses the same unpacked package) and deleted as
soon as the attempt ends in a way that is not retried. ``--delete-result ID`` is the clean-up job
that ``delete()`` runs on the driver's node to remove a job's outcome file.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from raydrive.drivers.ray_jobs_api.wire import (
    PAYLOAD_DIR_PREFIX,
    PAYLOAD_FILE,
    PAYLOAD_PREFIX,
    Outcome,
    Payload,
    RemoteError,
    attempt_submission_id,
    result_filename,
    valid_job_id,
)

__all__ = ["PrintSink", "main"]

_SUPERVISOR = os.getppid()  # Ray's job supervisor, which started this process

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


class _Watchdog:
    """Ends the attempt at its deadline: writes the deadline Outcome, then ``os._exit(1)``.

    A thread, not a signal: it fires even while the action blocks in C code or sleeps. The lock
    makes "the action finished" and "the deadline fired" exclusive: exactly one outcome is written.
    """

    def __init__(self, timeout_s: float | None, job_id: str, action: str, out: Path, keep: bool) -> None:
        self.timeout_s, self.job_id, self.action, self.out, self.keep = timeout_s, job_id, action, out, keep
        self.lock = threading.Lock()
        self.finished = False
        self.payload: str | None = None
        self._timer: threading.Timer | None = None

    def start(self, payload_package: str) -> None:
        self.payload = payload_package
        if self.timeout_s is not None:
            self._timer = threading.Timer(self.timeout_s, self._fire)
            self._timer.daemon = True
            self._timer.start()

    def finish(self) -> bool:
        """Called when the action returned: False when the deadline already fired."""
        with self.lock:
            if self._timer is not None:
                self._timer.cancel()
            done, self.finished = self.finished, True
            return not done

    def _fire(self) -> None:
        from raydrive.core.retry import deadline_error

        with self.lock:
            if self.finished:
                return
            self.finished = True
            assert self.timeout_s is not None
            error = deadline_error(self.job_id, self.timeout_s, self.action)
            try:
                remote = RemoteError.from_exception(error, "deadline", reason=error.reason)
                _write(self.out, Outcome(False, error=remote, run=self.payload).pack())
                print(f"raydrive: {error.message}", file=sys.stderr, flush=True)
            finally:
                if not self.keep and self.payload is not None:
                    _delete_payload(self.payload)
                with contextlib.suppress(Exception):
                    sys.stdout.flush()
                    sys.stderr.flush()
                os._exit(1)  # hard: the action's threads cannot hold the job past its deadline


def _retry_kept(payload: Payload, attempt: int, error: RemoteError | None) -> bool:
    """Whether a later attempt may read the payload again: attempts left and, once the attempt
    has ended with ``error``, an error the job's policy retries (None: not ended yet)."""
    if not payload.retry:
        return False
    from raydrive.core.retry import RetryPolicy

    policy = RetryPolicy.from_wire(payload.retry)
    if attempt > policy.retries:
        return False
    return error is None or policy.retryable(error.to_raydrive(""))


@contextlib.contextmanager
def _imported_then_frozen() -> Iterator[None]:
    """Import raydrive's own modules (and pydantic) without the cyclic garbage collector, then
    move what they made into the permanent generation (``gc.freeze()``), before the action's code
    runs.

    Why: those objects live until the process exits, and the collector's passes over them, during
    the imports and again at interpreter shutdown, are most of a job's 50 ms teardown and some
    10 ms of its imports; Ray sees the job end only once the process is gone. The action's own
    objects are not frozen: they are collected, and finalized at exit (files flushed), as in any
    Python process.
    """
    import gc

    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def _run(payload: Payload, job_id: str) -> Outcome:
    with _imported_then_frozen():
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
    parser = argparse.ArgumentParser(prog="raydrive.drivers.ray_jobs_api.entry")
    parser.add_argument("--job-id", help="the job's id (the submission id of its first attempt)")
    parser.add_argument("--payload", help="name of the payload package directory")
    parser.add_argument("--action", default=None, help="the action, for display only")
    parser.add_argument("--attempt", type=int, default=1, help="the attempt's number (1 = the first)")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to wait first (retry backoff)")
    parser.add_argument("--delete-result", default=None, help="delete this job's outcome file, then exit")
    try:
        args = parser.parse_args(argv)
    except SystemExit:
        _delete_payload(None)
        raise
    if args.delete_result is not None:
        return _delete_result(args.delete_result, args.job_id)
    keep = [False]  # set by _main while a later attempt may need the payload
    try:
        return _main(args, keep)
    finally:
        if not keep[0]:
            _delete_payload(args.payload)  # whatever happened: the secrets do not stay on disk


def _main(args: argparse.Namespace, keep: list[bool]) -> int:
    if not args.job_id or not args.payload or args.attempt < 1:
        print("raydrive: --job-id and --payload are required", file=sys.stderr, flush=True)
        return 2
    submission_id = attempt_submission_id(args.job_id, args.attempt)
    try:
        out = _logs_dir(submission_id) / result_filename(submission_id)
    except RuntimeError as exc:
        print(exc, file=sys.stderr, flush=True)
        return 2
    try:
        payload = _read_payload(args.payload)
    except Exception as exc:
        print(f"raydrive: cannot read the job's payload: {exc}", file=sys.stderr, flush=True)
        error = RemoteError.from_exception(exc, "payload")
        _write(out, Outcome(False, error=error, run=args.payload).pack())
        return 2
    keep[0] = _retry_kept(payload, args.attempt, None)
    if not keep[0]:
        _delete_payload(args.payload)  # read: not needed on disk any more
    if args.delay > 0:
        print(f"raydrive: attempt {args.attempt} starts in {args.delay:.3g} s (retry backoff)", flush=True)
        time.sleep(args.delay)
    if os.getppid() != _SUPERVISOR:
        # Ray's job supervisor (this process's parent: the entrypoint exec's itself) ends once
        # it has stopped the job; an entry that outlived it was stopped and must not start.
        print("raydrive: the job was stopped before its action started; not running it", flush=True)
        return 2
    deadline_keeps = keep[0] and _retry_kept(payload, args.attempt, _deadline_remote(payload, args.job_id))
    watchdog = _Watchdog(payload.timeout_s, args.job_id, payload.action, out, deadline_keeps)
    watchdog.start(args.payload)
    outcome = replace(_run(payload, args.job_id), run=args.payload)
    if not watchdog.finish():
        time.sleep(3600)  # the watchdog is ending the process (os._exit): wait for it here
    try:
        text = outcome.pack()
    except (TypeError, ValueError) as exc:
        outcome = replace(_not_json(payload.action, exc), run=args.payload)
        text = outcome.pack()
    if outcome.error is not None:
        # The traceback goes to the job's log as well, for whoever reads the logs.
        print((outcome.error.traceback or outcome.error.summary).rstrip(), file=sys.stderr, flush=True)
    keep[0] = keep[0] and not outcome.ok and _retry_kept(payload, args.attempt, outcome.error)
    _write(out, text)
    return 0 if outcome.ok else 1


def _deadline_remote(payload: Payload, job_id: str) -> RemoteError | None:
    if payload.timeout_s is None or not payload.retry:
        return None
    from raydrive.core.retry import deadline_error

    error = deadline_error(job_id, payload.timeout_s, payload.action)
    return RemoteError.from_exception(error, "deadline", reason=error.reason)


if __name__ == "__main__":
    sys.exit(main())
