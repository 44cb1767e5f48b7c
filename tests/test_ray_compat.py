"""Ray's private modules are used only behind raydrive/drivers/ray/compat.py, and each of its
functions works on the installed Ray against a real local cluster."""

from __future__ import annotations

import importlib
import io
import logging
import os
import re
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path

import pytest

from raydrive.drivers.ray import compat
from raydrive.drivers.ray.connection import connect
from tests.conditions import wait_for

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "raydrive"
COMPAT = PACKAGE / "drivers" / "ray" / "compat.py"

# `ray._private.x`, `ray . _common`, `from ray import _raylet`, and the dotted name in a string.
_PRIVATE = re.compile(
    r"\bray\s*\.\s*_(?:private|common|raylet)\b"
    r"|\bfrom\s+ray\s+import\s+\(?[^\n)]*\b_(?:private|common|raylet)\b"
)


# --- the boundary (no cluster) ------------------------------------------------------------------
def test_no_module_but_compat_names_ray_private_modules() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == COMPAT:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if _PRIVATE.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "use raydrive/drivers/ray/compat.py instead:\n" + "\n".join(offenders)


def test_the_scan_catches_every_spelling() -> None:
    for line in (
        "from ray._private.services import find_gcs_addresses",
        "import ray._private.state as ray_state",
        "from ray._common.utils import get_ray_address_file",
        'sys.modules.get("ray._private.ray_constants")',
        "from ray import _raylet",
        "from ray import (_private",
    ):
        assert _PRIVATE.search(line), line
    assert not _PRIVATE.search("from ray.util.state import get_actor")
    assert not _PRIVATE.search("x_private = ray_common")


def test_every_private_module_compat_uses_is_documented() -> None:
    source = COMPAT.read_text(encoding="utf-8")
    used = set(re.findall(r"\bray\._(?:private|common|raylet)(?:\.\w+)*", source.split('"""', 2)[2]))
    assert used, "the scan found nothing: is the pattern still right?"
    doc = compat.__doc__ or ""
    assert not [name for name in used if name not in doc], "document each private module in the docstring"
    for version in compat.CHECKED_RAY_VERSIONS:
        assert version in doc


def test_importing_compat_or_raydrive_does_not_import_ray() -> None:
    code = (
        "import sys, raydrive, raydrive.drivers.ray.compat, raydrive.drivers.ray.connection;"
        "print('ray' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "False"


def test_the_installed_ray_is_one_compat_was_checked_on() -> None:
    import ray

    checked = {v.rsplit(".", 1)[0] for v in compat.CHECKED_RAY_VERSIONS}
    assert ray.__version__.rsplit(".", 1)[0] in checked, (
        f"Ray {ray.__version__} is not among compat.CHECKED_RAY_VERSIONS {compat.CHECKED_RAY_VERSIONS}: "
        "run tests/test_ray_compat.py on it, then add it there and in compat's docstring"
    )


def test_ray_constants_and_worker_logger_are_where_compat_says() -> None:
    import ray  # noqa: F401  (loads the constants module)

    constants = compat.loaded_ray_constants()
    assert constants is not None and isinstance(constants.ENABLE_RAY_CLUSTER, bool)
    worker = importlib.import_module(compat.WORKER_LOGGER_NAME)
    assert isinstance(worker.logger, logging.Logger) and worker.logger.name == compat.WORKER_LOGGER_NAME
    assert compat.get_ray_address_file(None).endswith("ray_current_cluster")
    assert compat.get_ray_address_file("/somewhere") == os.path.join("/somewhere", "ray_current_cluster")


# --- against the cluster ------------------------------------------------------------------------
def _zip(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


@pytest.mark.ray
def test_package_upload_exists_and_pin(ray_cluster) -> None:
    connect(ray_cluster.address)
    uri = f"gcs://_ray_pkg_raydrive_compat_{uuid.uuid4().hex}.zip"
    assert compat.package_exists(uri) is False
    compat.upload_package_to_gcs(uri, _zip({"hello.txt": "hi"}))
    assert compat.package_exists(uri) is True
    compat.pin_runtime_env_uri(uri, expiration_s=5)
    assert compat.package_exists(uri) is True


@pytest.mark.ray
def test_py_modules_become_gcs_uris(ray_cluster, tmp_path) -> None:
    connect(ray_cluster.address)
    module = tmp_path / f"rd_compat_mod_{uuid.uuid4().hex[:8]}"
    module.mkdir()
    (module / "__init__.py").write_text(f"TOKEN = {uuid.uuid4().hex!r}\n")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    converted = compat.upload_py_modules_if_needed(
        {"py_modules": [str(module)], "env_vars": {"A": "1"}},
        include_gitignore=False,
        scratch_dir=str(scratch),
    )
    assert converted["env_vars"] == {"A": "1"}
    [uri] = converted["py_modules"]
    assert uri.startswith("gcs://") and compat.package_exists(uri)


@pytest.mark.ray
def test_grpc_channel_reaches_the_gcs(ray_cluster) -> None:
    import grpc

    channel = compat.init_grpc_channel(ray_cluster.address)
    try:
        grpc.channel_ready_future(channel).result(timeout=60)
    finally:
        channel.close()


@pytest.mark.ray
def test_find_gcs_addresses_sees_the_cluster(ray_cluster) -> None:
    port = ray_cluster.address.rpartition(":")[2]
    found = wait_for(
        lambda: {a for a in compat.find_gcs_addresses() if a.rpartition(":")[2] == port},
        what=f"the test cluster's GCS (port {port}) among this machine's",
    )
    assert all(isinstance(a, str) for a in found)


@pytest.mark.ray
def test_actor_info_reads_the_gcs(ray_cluster) -> None:
    import ray

    connect(ray_cluster.address)

    @ray.remote(num_cpus=0)
    class Probe:
        def actor_id(self) -> str:
            return ray.get_runtime_context().get_actor_id()

    probe = Probe.remote()
    actor_id = ray.get(probe.actor_id.remote(), timeout=120)
    assert compat.actor_id_of(probe) == actor_id  # the handle's id is the one the actor sees
    assert compat.actor_info(actor_id)["State"] == "ALIVE"
    ray.kill(probe)
    wait_for(
        lambda: compat.actor_info(actor_id).get("State") == "DEAD", what="the killed actor DEAD in the GCS"
    )
    assert compat.actor_info("ff" * 16) == {}


@pytest.mark.ray
def test_a_pipeline_actor_learns_its_attempt_without_ray_deprecation_warnings(ray_cluster) -> None:
    # Ray 2.60's was_current_actor_reconstructed reads its own deprecated actor_id: the warning
    # reached the user's console from every pipeline actor (seen in `raydrive demo`).
    import ray

    connect(ray_cluster.address)

    @ray.remote(num_cpus=0)
    class Probe:
        def attempt(self) -> tuple[int, list[str]]:
            import warnings

            from raydrive.drivers.ray_pipeline.actor import _attempt

            with warnings.catch_warnings(record=True) as seen:
                warnings.simplefilter("always")
                number = _attempt()
            return number, [f"{w.category.__name__}: {w.message}" for w in seen]

    probe = Probe.remote()
    try:
        number, seen = ray.get(probe.attempt.remote(), timeout=120)
    finally:
        ray.kill(probe)
    assert number == 1
    assert not [w for w in seen if "Deprecat" in w], seen


@pytest.mark.ray
def test_internal_kv_put_get_list_delete(ray_cluster) -> None:
    connect(ray_cluster.address)
    namespace = f"raydrive-compat-{uuid.uuid4().hex[:8]}"
    compat.kv_put(b"a/1", b"one", namespace)
    compat.kv_put(b"a/2", b"two", namespace)
    compat.kv_put(b"b/1", b"three", namespace)
    assert compat.kv_get(b"a/1", namespace) == b"one" and compat.kv_get(b"none", namespace) is None
    assert sorted(compat.kv_list(b"a/", namespace)) == [b"a/1", b"a/2"]
    compat.kv_del(b"a/", namespace, by_prefix=True)
    assert compat.kv_list(b"a/", namespace) == [] and compat.kv_get(b"b/1", namespace) == b"three"
    compat.kv_del(b"b/1", namespace)
    assert compat.kv_get(b"b/1", namespace) is None


@pytest.mark.ray
def test_pin_by_a_task_on_the_cluster(ray_cluster) -> None:
    # What a Ray client (ray://) uses instead of pin_runtime_env_uri, which its server never answers.
    connect(ray_cluster.address)
    uri = f"gcs://_ray_pkg_raydrive_compat_{uuid.uuid4().hex}.zip"
    compat.upload_package_to_gcs(uri, _zip({"hello.txt": "hi"}))
    compat.pin_runtime_env_uri_on_cluster(uri, 5, timeout=120)
    assert compat.package_exists(uri) is True
