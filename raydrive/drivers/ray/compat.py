"""The one place where raydrive uses Ray's private modules (``ray._private``, ``ray._common``).

No other module of raydrive names them (``tests/test_ray_compat.py`` scans the source and fails if
one does), so a Ray upgrade that moves or changes one of them breaks here, and is checked here:
each function has a test against a real local cluster in that file.

Checked on Ray: 2.60.0 (``CHECKED_RAY_VERSIONS``; add a version once the compat tests pass on it).

Each private API, and why no public one does the job:

``ray._private.runtime_env.packaging.package_exists`` / ``upload_package_to_gcs``
    raydrive zips the working dir itself (content address, hooks, exclusions) and uploads it once
    per content. Ray's public API uploads only from a local path, inside ``ray.init`` or a job
    submission, and cannot say whether a ``gcs://`` package is already there.
``ray._private.runtime_env.packaging.pin_runtime_env_uri``
    Ray deletes a package when the last detached actor that used it ends; pinning it for a few
    seconds covers the start of the next one. There is no public way to hold a package.
``ray._private.runtime_env.py_modules.upload_py_modules_if_needed``
    Turns local ``py_modules`` into ``gcs://`` URIs before submission, so that work submitted
    later by an actor on another node does not depend on the submitter's paths. Ray does this
    publicly only implicitly, in the driver process, at each submission.
``ray._private.grpc_utils.init_grpc_channel``
    The reachability probe opens a gRPC channel as Ray would (``RAY_USE_TLS``, token auth);
    ``grpc.insecure_channel`` would not. Callers fall back to an insecure channel on any error.
``ray._common.utils.get_ray_address_file``
    Where Ray records this machine's current cluster, which is what ``address='auto'`` means.
    ``ray.init(address='auto')`` reads it but also connects; raydrive must know the address first
    (to probe it within a bounded time and to name it in errors).
``ray._private.services.find_gcs_addresses``
    The clusters running on this machine, only for a hint in an error message.
``ray._private.ray_constants`` (``ENABLE_RAY_CLUSTER``)
    Ray reads ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` once, when this module is imported; to make an
    already-loaded Ray a loopback client the constant itself must be set. No public setting.
``ray._private.worker`` (its logger's name)
    ``ray.init`` from a helper thread logs "SIGTERM handler is not set" there; raydrive filters
    that line while it connects. Ray offers no public name for that logger.
``ray.experimental.internal_kv`` (``_internal_kv_put`` / ``_get`` / ``_list`` / ``_del``)
    ray-job's registry journal (:mod:`raydrive.drivers.ray_job.journal`) keeps its records in
    the GCS's key-value store, where Ray keeps its own cluster state (Ray Serve and Ray's job
    manager use these same functions). Ray has no public key-value API.
``ray._private.state.actors``
    Whether the GCS holds an actor's creation yet (state other than ``DEPENDENCIES_UNREADY``), read
    straight from the GCS. ``ray.util.state.get_actor`` goes through the dashboard, which may be
    absent, and answers later.

Nothing here imports Ray at module import: each function imports what it needs when called, so
importing raydrive never loads Ray.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

__all__ = [
    "CHECKED_RAY_VERSIONS",
    "WORKER_LOGGER_NAME",
    "actor_id_of",
    "actor_info",
    "find_gcs_addresses",
    "get_ray_address_file",
    "init_grpc_channel",
    "kv_del",
    "kv_get",
    "kv_list",
    "kv_put",
    "loaded_ray_constants",
    "package_exists",
    "pin_runtime_env_uri",
    "pin_runtime_env_uri_on_cluster",
    "upload_package_to_gcs",
    "upload_py_modules_if_needed",
]

CHECKED_RAY_VERSIONS = ("2.60.0",)

#: The logger of ``ray._private.worker``, through which ``ray.init`` reports from a helper thread.
WORKER_LOGGER_NAME = "ray._private.worker"

_RAY_CONSTANTS = "ray._private.ray_constants"


def package_exists(uri: str) -> bool:
    """Whether the cluster's GCS holds the ``gcs://`` package ``uri``. Needs a connection."""
    from ray._private.runtime_env.packaging import package_exists as exists

    return bool(exists(uri))


def upload_package_to_gcs(uri: str, data: bytes) -> None:
    """Store the zipped package ``data`` in the GCS under ``uri``. Needs a connection."""
    from ray._private.runtime_env.packaging import upload_package_to_gcs as upload

    upload(uri, data)


def pin_runtime_env_uri(uri: str, expiration_s: int) -> None:
    """Keep the package ``uri`` in the GCS for at least ``expiration_s`` seconds."""
    from ray._private.runtime_env.packaging import pin_runtime_env_uri as pin

    pin(uri, expiration_s=expiration_s)


def pin_runtime_env_uri_on_cluster(uri: str, expiration_s: int, timeout: float) -> None:
    """:func:`pin_runtime_env_uri` run by a task on the cluster, for a Ray client (``ray://``).

    Ray's client server never answers the client's own ``PinRuntimeEnvURI`` call (Ray 2.60: the
    call blocks forever), so a client asks a worker, which pins through its GCS connection. The
    task is a nested function: pickled by value, it needs nothing of raydrive on the cluster.

    :raises ray.exceptions.GetTimeoutError: the task did not answer within ``timeout`` s.
    """
    import ray

    @ray.remote(num_cpus=0, max_retries=0)
    def pin_on_worker(uri: str, expiration_s: int) -> None:
        from ray._private.runtime_env.packaging import pin_runtime_env_uri as pin

        pin(uri, expiration_s=expiration_s)

    ref = pin_on_worker.remote(uri, expiration_s)
    try:
        ray.get(ref, timeout=timeout)
    except BaseException:
        ray.cancel(ref, force=True)
        raise


def upload_py_modules_if_needed(
    runtime_env: dict[str, Any], *, include_gitignore: bool, scratch_dir: str | None = None
) -> dict[str, Any]:
    """``runtime_env`` with its local ``py_modules`` uploaded and replaced by ``gcs://`` URIs."""
    from ray._private.runtime_env.py_modules import upload_py_modules_if_needed as upload

    return upload(runtime_env, include_gitignore=include_gitignore, scratch_dir=scratch_dir)


def init_grpc_channel(target: str) -> Any:
    """A gRPC channel to ``host:port`` opened as Ray opens its own (TLS and token settings)."""
    from ray._private.grpc_utils import init_grpc_channel as init

    return init(target)


def get_ray_address_file(temp_dir: str | None = None) -> str:
    """The file where Ray records this machine's current cluster (``temp_dir`` None: Ray's default)."""
    from ray._common.utils import get_ray_address_file as address_file

    return str(address_file(temp_dir))


def find_gcs_addresses() -> set[str]:
    """The GCS addresses of the Ray clusters running on this machine (found from the process list)."""
    from ray._private.services import find_gcs_addresses as find

    return set(find())


def loaded_ray_constants() -> ModuleType | None:
    """Ray's constants module when Ray is already imported, else None (never imports Ray)."""
    return sys.modules.get(_RAY_CONSTANTS)


def actor_info(actor_id: str) -> dict[str, Any]:
    """The GCS's record of the actor with hex id ``actor_id`` (``'State'`` and more); ``{}`` if none."""
    import ray._private.state as ray_state

    return dict(ray_state.actors(actor_id=actor_id) or {})


def actor_id_of(handle: Any) -> str:
    """The hex id of the actor behind ``handle`` (Ray 2.60 keeps it on the handle's private
    ``_actor_id``; reading it here keeps that reach inside this module)."""
    return handle._actor_id.hex()


def kv_put(key: bytes, value: bytes, namespace: str) -> None:
    """Store ``value`` under ``key`` in the GCS internal KV (overwriting). Needs a connection."""
    from ray.experimental.internal_kv import _internal_kv_put

    _internal_kv_put(key, value, overwrite=True, namespace=namespace)


def kv_get(key: bytes, namespace: str) -> bytes | None:
    """The value under ``key`` in the GCS internal KV, None if none. Needs a connection."""
    from ray.experimental.internal_kv import _internal_kv_get

    return _internal_kv_get(key, namespace=namespace)


def kv_list(prefix: bytes, namespace: str) -> list[bytes]:
    """The keys of the GCS internal KV that start with ``prefix``. Needs a connection."""
    from ray.experimental.internal_kv import _internal_kv_list

    return list(_internal_kv_list(prefix, namespace=namespace))


def kv_del(key: bytes, namespace: str, *, by_prefix: bool = False) -> None:
    """Delete ``key`` (every key starting with it when ``by_prefix``) from the GCS internal KV."""
    from ray.experimental.internal_kv import _internal_kv_del

    _internal_kv_del(key, del_by_prefix=by_prefix, namespace=namespace)
