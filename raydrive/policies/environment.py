"""Environment policy: what of the submitter's environment travels with the job.

An explicit ``env`` travels as given. With ``env=None`` only keys starting with ``SYNAPSE_`` or
``RAY_`` travel, never the whole environment; Ray's own connection settings (``RAY_ADDRESS``
and friends, ``RAY_AUTH_*``, ``RAY_TLS_*`` / ``RAY_USE_TLS``, ``RAY_REDIS_*``) stay behind, since
they describe how the submitter reaches the cluster, not what the job needs. (A chosen variable
whose name or value looks secret is then delivered out of band by the runtime-env builder.)
"""

from __future__ import annotations

from raydrive.core.policy_types import EnvironmentRequest
from raydrive.hookspecs import hookimpl

PREFIXES = ("SYNAPSE_", "RAY_")
SUBMITTER_ONLY = frozenset(
    {
        "RAY_ADDRESS",
        "RAY_API_SERVER_ADDRESS",
        "RAY_JOB_HEADERS",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER",
        # Set by `import ray` in every process: it describes the submitter, and shipping it would
        # give every job a runtime env of its own, which no prestarted worker could serve.
        "RAY_CLIENT_MODE",
        "RAY_USE_TLS",
        "RAY_NAMESPACE",
        "RAY_RUNTIME_ENV_IGNORE_GITIGNORE",
    }
)
# The submitter's credentials and transport settings for the cluster itself (Ray token auth,
# TLS certificates and keys, the GCS's Redis) are not the job's.
SUBMITTER_ONLY_PREFIXES = ("RAY_AUTH_", "RAY_TLS_", "RAY_REDIS_")


@hookimpl
def raydrive_environment(request: EnvironmentRequest) -> dict[str, str] | None:
    if request.env is not None:
        return {str(k): str(v) for k, v in request.env.items()}
    return {
        key: value
        for key, value in request.os_environ.items()
        if key.startswith(PREFIXES)
        and key not in SUBMITTER_ONLY
        and not key.startswith(SUBMITTER_ONLY_PREFIXES)
    }
