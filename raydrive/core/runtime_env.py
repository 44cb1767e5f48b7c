"""The runtime-env builder: the one place every driver turns options and hooks into a Ray runtime env.

The result is split in two:

- ``runtime_env``: what Ray may show (state API, dashboard): working dir, packages, and the
  environment variables that the environment policy chose, minus anything secret;
- ``secrets``: what the credentials hook returned, plus any variable whose name or value looks
  like a secret (:func:`raydrive.core.redaction.is_secret_key` / ``looks_secret_value``).
  Drivers deliver these to the action's ``os.environ`` by another route.

``repr()`` of a built env never shows a secret value.

``setup_timeout_s`` becomes Ray's ``config: {"setup_timeout_seconds": N}`` (rounded up to whole
seconds), so every Ray driver bounds the setup of packages (pip/uv) and working dir the same way.
Ray tries a failed setup up to ``RUNTIME_ENV_RETRY_TIMES`` (3) times, each bounded by it.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raydrive.core.options import RayOptions
from raydrive.core.packaging import PackagedDir, WorkingDirPackager
from raydrive.core.plugins import PluginManager, get_plugin_manager
from raydrive.core.policy_types import EnvironmentRequest, PackagingRequest, merge_options
from raydrive.core.redaction import is_secret_key, looks_secret_value, redact

__all__ = ["BuiltRuntimeEnv", "RuntimeEnvBuilder", "is_secret_key", "resolve_environment"]

# Ray's own switch for .gitignore files (``RAY_RUNTIME_ENV_IGNORE_GITIGNORE=1``) is honoured too.
_RAY_IGNORE_GITIGNORE = "RAY_RUNTIME_ENV_IGNORE_GITIGNORE"


@dataclass(frozen=True)
class BuiltRuntimeEnv:
    """A runtime env safe to hand to Ray, and the secrets to deliver out of band."""

    runtime_env: dict[str, Any]
    secrets: dict[str, str] = field(default_factory=dict)
    package: PackagedDir | None = None  # the zipped working dir, when packaged locally

    @property
    def env(self) -> dict[str, str]:
        """Everything the action's ``os.environ`` should receive: env vars and secrets."""
        return {**self.runtime_env.get("env_vars", {}), **self.secrets}

    def __repr__(self) -> str:
        return (
            f"BuiltRuntimeEnv(runtime_env={redact(self.runtime_env)!r}, "
            f"secret_keys={sorted(self.secrets)!r}, package={self.package!r})"
        )

    __str__ = __repr__


def resolve_environment(
    plugins: PluginManager,
    env: Mapping[str, str] | None,
    os_environ: Mapping[str, str] | None = None,
    *,
    extra: Mapping[str, Any] | None = None,
) -> tuple[dict[str, str], dict[str, str]]:
    """Run the environment and credentials hooks: ``(plain variables, secrets)`` for a job.

    ``extra`` (a user runtime env's ``env_vars``) wins over the environment policy. A variable
    whose name looks secret, or whose value does (a URL with a password, a ``Bearer`` value, a
    private key), is moved to the secrets, wherever it came from.
    """
    request = EnvironmentRequest(env=env, os_environ=dict(os.environ if os_environ is None else os_environ))
    chosen = plugins.environment(request)
    chosen.update({str(k): str(v) for k, v in (extra or {}).items()})
    secrets = {k: v for k, v in chosen.items() if is_secret_key(k) or looks_secret_value(v)}
    secrets.update(plugins.credentials(request, chosen))
    return {k: v for k, v in chosen.items() if k not in secrets}, secrets


class RuntimeEnvBuilder:
    """Builds the runtime env for one executor, caching the working-dir package between builds."""

    def __init__(self, options: RayOptions, plugins: PluginManager | None = None) -> None:
        self.options = options
        self._plugins = plugins
        self._packager: WorkingDirPackager | None = None

    @property
    def plugins(self) -> PluginManager:
        return self._plugins or get_plugin_manager()

    def _packaging_request(self) -> PackagingRequest:
        opts = self.options
        working_dir = Path(opts.working_dir).expanduser().resolve() if opts.working_dir else None
        requirements = opts.requirements_file
        if requirements is not None and not Path(requirements).is_absolute() and working_dir:
            # A relative requirements file is looked up in the working dir, then the cwd.
            candidate = working_dir / requirements
            requirements = candidate if candidate.exists() else Path(requirements).resolve()
        return PackagingRequest(
            working_dir=working_dir,
            requirements_file=Path(requirements) if requirements else None,
            wheels_dir=opts.wheels_dir,
            package_manager=opts.package_manager,
        )

    def packager(self, working_dir: Path, request: PackagingRequest | None = None) -> WorkingDirPackager:
        """The packager for ``working_dir`` with this executor's excludes and include rules (cached)."""
        opts = self.options
        gitignore = opts.include_gitignore and os.environ.get(_RAY_IGNORE_GITIGNORE, "0") != "1"
        wanted = (str(working_dir), self.excludes(request), list(opts.include or []), gitignore)
        if self._packager is None or self._packager.settings != wanted:
            self._packager = WorkingDirPackager(
                working_dir, wanted[1], include=wanted[2], include_gitignore=gitignore
            )
        return self._packager

    def excludes(self, request: PackagingRequest | None = None) -> list[str]:
        patterns = self.plugins.working_dir_excludes(request or self._packaging_request())
        return patterns + [p for p in (self.options.excludes or []) if p not in patterns]

    def build(self, *, package: bool = False, os_environ: Mapping[str, str] | None = None) -> BuiltRuntimeEnv:
        """Build the runtime env.

        :param package: zip the working dir here (content-addressed, cached) and refer to it by
            its ``gcs://`` URI, for drivers that upload it themselves; otherwise the local path
            and ``excludes`` are passed for Ray to upload.
        :param os_environ: the submitter's environment (default ``os.environ``).
        """
        opts = self.options
        request = self._packaging_request()
        user = copy.deepcopy(opts.runtime_env or {})
        runtime_env: dict[str, Any] = {k: v for k, v in user.items() if k not in {"pip", "uv"}}
        packaged: PackagedDir | None = None

        if request.working_dir is not None:
            excludes = self.excludes(request)
            if package:
                packaged = self.packager(request.working_dir, request).package()
                runtime_env["working_dir"] = packaged.uri
            else:
                if not request.working_dir.is_dir():
                    # Same error as the packager's, before anything is submitted.
                    WorkingDirPackager(request.working_dir).scan()
                runtime_env["working_dir"] = str(request.working_dir)
                runtime_env["excludes"] = list(dict.fromkeys(user.get("excludes", []) + excludes))

        self._add_packages(runtime_env, user, request)
        if opts.setup_timeout_s is not None:
            # Ray's own bound on the setup (RuntimeEnvConfig.setup_timeout_seconds, whole seconds):
            # the option wins over a ``config`` the user's runtime_env carries.
            config = dict(runtime_env.get("config") or {})
            config["setup_timeout_seconds"] = max(1, math.ceil(opts.setup_timeout_s))
            runtime_env["config"] = config

        if opts.include_sdk:
            sdk_dir = str(Path(__file__).parents[1])  # the raydrive package
            modules = list(runtime_env.get("py_modules", []))
            runtime_env["py_modules"] = [*modules, sdk_dir] if sdk_dir not in modules else modules

        env_vars, secrets = resolve_environment(
            self.plugins, opts.env, os_environ, extra=user.get("env_vars") or {}
        )
        if env_vars:
            runtime_env["env_vars"] = env_vars
        else:
            runtime_env.pop("env_vars", None)
        return BuiltRuntimeEnv(runtime_env=runtime_env, secrets=secrets, package=packaged)

    def _add_packages(
        self, runtime_env: dict[str, Any], user: dict[str, Any], request: PackagingRequest
    ) -> None:
        manager = self.options.package_manager
        options_key = "pip_install_options" if manager == "pip" else "uv_pip_install_options"
        contributed = self.plugins.collect_packages(request)
        user_section = user.get(manager)
        if isinstance(user_section, list | tuple):
            user_section = {"packages": list(user_section)}
        user_section = dict(user_section or {})
        packages = list(dict.fromkeys([*user_section.pop("packages", []), *contributed.packages]))
        if not packages:
            return  # no empty section: Ray would build an empty virtualenv for it
        options = merge_options(
            self.plugins.package_manager_options(manager, packages),
            contributed.options,
            user_section.pop(options_key, []),
            self.options.package_manager_options or [],
        )
        section = {**user_section, "packages": packages}
        if options:  # none at all: leave Ray's own defaults in place
            section[options_key] = options
        runtime_env[manager] = section
