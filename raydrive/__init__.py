"""raydrive: run plugin actions on Ray clusters.

Importing raydrive is cheap: it loads no plugin, imports no Ray and contacts no cluster. The names
below are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # factory and registry
    "get_executor": "raydrive.core.factory",
    "available_drivers": "raydrive.core.factory",
    "effective_config": "raydrive.core.factory",
    "DriverInfo": "raydrive.core.registry",
    # hooks
    "hookimpl": "raydrive.hookspecs",
    "hookspec": "raydrive.hookspecs",
    # action model
    "BaseAction": "raydrive.core.action",
    "RuntimeContext": "raydrive.core.action",
    "ActionLogger": "raydrive.core.action",
    "ActionEnvironment": "raydrive.core.action",
    "LogLevel": "raydrive.core.action",
    "JobState": "raydrive.core.status",
    # packaging
    "package_report": "raydrive.core.preflight",
    "PackageReport": "raydrive.core.packaging",
    # policy types
    "EnvironmentRequest": "raydrive.core.policy_types",
    "JobEvent": "raydrive.core.policy_types",
    "PackageSet": "raydrive.core.policy_types",
    "PackagingRequest": "raydrive.core.policy_types",
    "ResourceRequest": "raydrive.core.policy_types",
    # errors
    "RaydriveError": "raydrive.core.errors",
    "DriverNotFoundError": "raydrive.core.errors",
    "DriverLoadError": "raydrive.core.errors",
    "InvalidOptionsError": "raydrive.core.errors",
    "ValidationError": "raydrive.core.errors",
    "ActionImportError": "raydrive.core.errors",
    "ResourceVetoError": "raydrive.core.errors",
    "SubmissionError": "raydrive.core.errors",
    "ClusterUnreachableError": "raydrive.core.errors",
    "WorkingDirError": "raydrive.core.errors",
    "InfeasibleResourcesError": "raydrive.core.errors",
    "DuplicateJobError": "raydrive.core.errors",
    "AuthenticationError": "raydrive.core.errors",
    "ExecutionError": "raydrive.core.errors",
    "ActorDiedError": "raydrive.core.errors",
    "JobNotFoundError": "raydrive.core.errors",
    "ExecutionTimeoutError": "raydrive.core.errors",
    "ServiceError": "raydrive.core.errors",
    "ServiceUnavailableError": "raydrive.core.errors",
    # executors
    "LocalExecutor": "raydrive.drivers.local",
    "RayActorExecutor": "raydrive.drivers.ray_actor",
    "RayTaskExecutor": "raydrive.drivers.ray_actor",
    "RayJobExecutor": "raydrive.drivers.ray_job",
    "RayJobsApiExecutor": "raydrive.drivers.ray_jobs_api",
    "RayPipelineExecutor": "raydrive.drivers.ray_pipeline",
    # pipelines
    "PipelineDefinition": "raydrive.core.pipeline",
    "PipelineProgress": "raydrive.core.pipeline",
    "RunStatus": "raydrive.core.pipeline",
    "ActionStatus": "raydrive.core.pipeline",
    "PipelineServiceClient": "raydrive.service.client",
    "AsyncPipelineServiceClient": "raydrive.service.client",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'raydrive' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from raydrive.core.action import ActionEnvironment, ActionLogger, BaseAction, LogLevel, RuntimeContext
    from raydrive.core.errors import (
        ActionImportError,
        ActorDiedError,
        AuthenticationError,
        ClusterUnreachableError,
        DriverLoadError,
        DriverNotFoundError,
        DuplicateJobError,
        ExecutionError,
        ExecutionTimeoutError,
        InfeasibleResourcesError,
        InvalidOptionsError,
        JobNotFoundError,
        RaydriveError,
        ResourceVetoError,
        ServiceError,
        ServiceUnavailableError,
        SubmissionError,
        ValidationError,
        WorkingDirError,
    )
    from raydrive.core.factory import available_drivers, effective_config, get_executor
    from raydrive.core.packaging import PackageReport
    from raydrive.core.preflight import package_report
    from raydrive.core.registry import DriverInfo
    from raydrive.core.status import JobState
    from raydrive.hookspecs import hookimpl, hookspec
