"""``subprocess``: a third-party raydrive driver that runs each action in a fresh Python process.

Process isolation without a cluster: the action cannot leak state into the caller, and a crash
of the action (even ``os._exit``) is an ExecutionError, not a dead caller. It shows everything a
driver author needs: an options model, the shared validation and error types, lifecycle events.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from pydantic import Field

from raydrive.core.action import action_entrypoint, action_name, resolve_action, validate_params
from raydrive.core.errors import ExecutionError, ExecutionTimeoutError, RaydriveError
from raydrive.core.executor import BaseExecutor
from raydrive.core.options import DriverOptions
from raydrive.core.runtime_env import resolve_environment

_CHILD = """
import json, pickle, sys
from raydrive.core.action import ensure_on_path, run_action
request = json.load(sys.stdin)
ensure_on_path(request["working_dir"])
try:
    result = {"ok": run_action(request["action"], request["params"], job_id=request["job_id"],
                               env=request["env"])}
except Exception as exc:
    result = {"error": pickle.dumps(exc).hex()}
sys.stdout.write("\\n" + json.dumps(result))
"""


class SubprocessOptions(DriverOptions):
    working_dir: Path | None = Field(default=None, description="Directory the action imports from.")
    python: str = Field(default=sys.executable, description="Interpreter that runs the action.")
    timeout: float | None = Field(default=None, gt=0, description="Seconds before the call fails.")


class SubprocessExecutor(BaseExecutor):
    """Runs each action in a fresh Python process: isolation without a cluster."""

    name = "subprocess"
    Options = SubprocessOptions
    options: SubprocessOptions

    def execute(self, action_cls: Any, params: dict[str, Any], **kwargs: Any) -> Any:
        """Run the action in a new process and return its result."""
        if not isinstance(action_cls, str):
            validate_params(resolve_action(action_cls), params)  # fail fast, here
        job_id = kwargs.get("job_id") or self.options.job_id or uuid.uuid4().hex
        env_vars, secrets = resolve_environment(self.plugins, self.options.env)
        request = {
            "action": action_entrypoint(action_cls),
            "params": params,
            "job_id": job_id,
            "env": {**env_vars, **secrets},  # on stdin: never on a command line
            "working_dir": str(self.options.working_dir.resolve()) if self.options.working_dir else None,
        }
        name = action_name(action_cls)
        self._emit_submitted(job_id, name)
        try:
            done = subprocess.run(
                [self.options.python, "-c", _CHILD],
                input=json.dumps(request), capture_output=True, text=True,
                timeout=self.options.timeout,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            self._emit_finished(job_id, "FAILED", "timeout")
            raise ExecutionTimeoutError(
                f"{name} did not finish within {self.options.timeout} s", job_id=job_id
            ) from None
        last = done.stdout.rstrip().rpartition("\n")[2] if done.stdout.strip() else ""
        try:
            outcome = json.loads(last)
        except json.JSONDecodeError:
            self._emit_finished(job_id, "FAILED", f"exit code {done.returncode}")
            raise ExecutionError(
                f"action {name!r} died (exit code {done.returncode})",
                error_type="ProcessDied",
                error_message=done.stderr[-2000:],
                job_id=job_id,
            ) from None
        if "error" in outcome:
            import pickle

            error = pickle.loads(bytes.fromhex(outcome["error"]))
            self._emit_finished(job_id, "FAILED", str(error).splitlines()[0])
            raise error if isinstance(error, RaydriveError) else ExecutionError(str(error))
        self._emit_finished(job_id, "SUCCEEDED")
        return outcome["ok"]
