"""The plugin manager: loads hook implementations and is the one place that calls hooks.

Operator switches:

- ``RAYDRIVE_DISABLE_PLUGINS=a,b`` blocks the named plugins (entry-point names, built-ins too).
- ``RAYDRIVE_TRACE_PLUGINS=1`` logs every hook call and its result under ``raydrive.plugins``
  (values of credentials are masked).
- ``RAYDRIVE_DISABLE_PLUGIN_AUTOLOAD=1`` loads no entry point at all (tests register their own).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Mapping
from typing import Any

import pluggy

from raydrive import hookspecs
from raydrive.core.policy_types import (
    EnvironmentRequest,
    JobEvent,
    PackageSet,
    PackagingRequest,
    ResourceRequest,
    merge_options,
)

__all__ = [
    "PLUGIN_GROUP",
    "PluginManager",
    "get_plugin_manager",
    "plugin_secret_names",
    "reset_plugin_manager",
]

PLUGIN_GROUP = "raydrive.plugins"
_log = logging.getLogger("raydrive.plugins")


def _env_list(name: str) -> set[str]:
    return {part.strip() for part in os.environ.get(name, "").split(",") if part.strip()}


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


class PluginManager:
    """A typed wrapper around pluggy's manager: one method per hook, nothing else calls hooks."""

    def __init__(self, *, autoload: bool | None = None) -> None:
        self._pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self._has_impls: dict[str, bool] = {}
        self._secret_names: frozenset[str] | None = None
        self._pm.add_hookspecs(hookspecs)
        if autoload is None:
            autoload = not _truthy("RAYDRIVE_DISABLE_PLUGIN_AUTOLOAD")
        blocked = _env_list("RAYDRIVE_DISABLE_PLUGINS")
        for name in blocked:
            self._pm.set_blocked(name)
        if autoload:
            self._pm.load_setuptools_entrypoints(PLUGIN_GROUP)
        # A misspelt hook name in a plugin fails here rather than being silently ignored.
        self._pm.check_pending()
        if _truthy("RAYDRIVE_TRACE_PLUGINS"):
            self._pm.add_hookcall_monitoring(self._trace_before, self._trace_after)

    # --- registration -----------------------------------------------------------------------
    def register(self, plugin: object, name: str | None = None) -> str | None:
        """Register a plugin object or module (e.g. from a test); returns its name."""
        registered = self._pm.register(plugin, name=name)
        self._has_impls.clear()
        self._secret_names = None
        self._pm.check_pending()
        return registered

    def unregister(self, plugin: object | None = None, name: str | None = None) -> None:
        self._pm.unregister(plugin=plugin, name=name)
        self._has_impls.clear()
        self._secret_names = None

    def plugins(self) -> list[tuple[str, object]]:
        """``(name, plugin)`` for every registered plugin."""
        return [(name, plugin) for name, plugin in self._pm.list_name_plugin() if plugin]

    def blocked(self) -> set[str]:
        return _env_list("RAYDRIVE_DISABLE_PLUGINS")

    def distinfo(self) -> dict[str, str]:
        """Plugin name -> distribution ``name version`` for plugins loaded from entry points."""
        return {
            self._pm.get_name(plugin) or "": f"{dist.project_name} {dist.version}"
            for plugin, dist in self._pm.list_plugin_distinfo()
        }

    def has_impls(self, hook_name: str) -> bool:
        """Whether any registered plugin implements ``hook_name``.

        Lets a hot path skip building an event nobody listens to (a warm Ray call is ~1 ms), so
        the answer is cached until a plugin is registered or unregistered.
        """
        try:
            return self._has_impls[hook_name]
        except KeyError:
            found = self._has_impls[hook_name] = bool(getattr(self._pm.hook, hook_name).get_hookimpls())
            return found

    def hook_names(self, plugin: object) -> list[str]:
        return [caller.name for caller in self._pm.get_hookcallers(plugin) or []]

    # --- typed hook calls ---------------------------------------------------------------------
    def collect_packages(self, request: PackagingRequest) -> PackageSet:
        merged = PackageSet()
        # pluggy calls the last registered first; reverse so that contributions keep
        # registration order (requirements before wheels, built-ins before third parties).
        for part in reversed(self._pm.hook.raydrive_collect_packages(request=request)):
            _extend_unique(merged.packages, part.packages)
            merged.options = merge_options(merged.options, part.options)
        return merged

    def package_manager_options(self, manager: str, packages: list[str]) -> list[str]:
        parts = self._pm.hook.raydrive_package_manager_options(manager=manager, packages=packages)
        return merge_options(*reversed(parts))

    def working_dir_excludes(self, request: PackagingRequest) -> list[str]:
        patterns: list[str] = []
        for part in reversed(self._pm.hook.raydrive_working_dir_excludes(request=request)):
            _extend_unique(patterns, part)
        return patterns

    def environment(self, request: EnvironmentRequest) -> dict[str, str]:
        env: dict[str, str] = {}
        for part in reversed(self._pm.hook.raydrive_environment(request=request)):
            env.update(part)
        return env

    def credentials(self, request: EnvironmentRequest, env: Mapping[str, str]) -> dict[str, str]:
        creds: dict[str, str] = {}
        for part in reversed(self._pm.hook.raydrive_credentials(request=request, env=env)):
            creds.update(part)
        # The caller's own values win over any plugin's.
        return {k: v for k, v in creds.items() if k not in env}

    def secret_names(self) -> frozenset[str]:
        """Extra secret-name fragments from ``raydrive_secret_names``, upper-cased.

        The redaction function asks for them for every key it looks at, so the answer is cached
        until a plugin is registered or unregistered.
        """
        names = self._secret_names
        if names is None:
            # Empty while the hooks run: a plugin that logs from the hook re-enters redaction.
            self._secret_names = frozenset()
            found: set[str] = set()
            for part in self._pm.hook.raydrive_secret_names():
                found.update(str(n).strip().upper() for n in part or () if str(n).strip())
            names = self._secret_names = frozenset(found)
        return names

    def context_client(self, env: Mapping[str, str]) -> object | None:
        """The backend client for an action's ``ctx.client``: the first non-None answer of
        ``raydrive_context_client`` (None when no plugin gives one)."""
        return self._pm.hook.raydrive_context_client(env=env)

    def adjust_resources(self, action: str, request: ResourceRequest) -> ResourceRequest:
        # pluggy's order: the last registered runs first; plugins order themselves with
        # tryfirst/trylast (a cap that must see everyone's changes uses trylast=True).
        self._pm.hook.raydrive_adjust_resources(action=action, request=request)
        return request

    def job_submitted(self, event: JobEvent) -> None:
        self._pm.hook.raydrive_job_submitted(event=event)

    def job_finished(self, event: JobEvent) -> None:
        self._pm.hook.raydrive_job_finished(event=event)

    # --- tracing ------------------------------------------------------------------------------
    def _trace_before(self, hook_name: str, hook_impls: list[Any], kwargs: Mapping[str, Any]) -> None:
        _log.info(
            "hook %s called with %s on %s",
            hook_name,
            sorted(kwargs),
            [impl.plugin_name for impl in hook_impls],
        )

    def _trace_after(
        self, outcome: Any, hook_name: str, hook_impls: list[Any], kwargs: Mapping[str, Any]
    ) -> None:
        result = outcome.get_result() if outcome.exception is None else outcome.exception
        if hook_name in {"raydrive_credentials", "raydrive_environment"} and isinstance(result, list):
            result = [sorted(part) for part in result]  # keys only: values may be secrets
        elif hook_name == "raydrive_context_client" and result is not None:
            result = type(result).__name__  # a client's repr may show its token
        _log.info("hook %s returned %r", hook_name, result)


def _extend_unique(target: list[str], items: Iterable[str]) -> None:
    for item in items:
        if item not in target:
            target.append(item)


_manager: PluginManager | None = None
_lock = threading.Lock()
_creating = threading.local()


def get_plugin_manager() -> PluginManager:
    """The process-wide plugin manager, created (and plugins loaded) on first use."""
    global _manager
    manager = _manager
    if manager is not None:  # the hot path: no lock
        return manager
    with _lock:
        if _manager is None:
            _creating.active = True
            try:
                _manager = PluginManager()
            finally:
                _creating.active = False
        return _manager


def plugin_secret_names() -> frozenset[str]:
    """The process-wide manager's :meth:`PluginManager.secret_names` (what redaction uses).

    Empty while this thread is loading the plugins (a plugin logging at import time would
    otherwise wait on itself).
    """
    manager = _manager
    if manager is None:
        if getattr(_creating, "active", False):
            return frozenset()
        manager = get_plugin_manager()
    return manager.secret_names()


def reset_plugin_manager(manager: PluginManager | None = None) -> None:
    """Replace the process-wide manager (None: rebuild from entry points on next use)."""
    global _manager
    with _lock:
        _manager = manager
