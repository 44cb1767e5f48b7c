"""``package_report``: a pre-flight look at what a driver would upload from a working dir.

Apart from :mod:`raydrive.core.packaging` (which packs) because it takes the options as an
executor would (config, registry, the runtime-env builder), all of which build on the packer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from raydrive.core.errors import WorkingDirError
from raydrive.core.factory import effective_config
from raydrive.core.options import RayOptions, validate_options
from raydrive.core.packaging import DASHBOARD_UPLOAD_LIMIT, PackageReport
from raydrive.core.registry import get_registry
from raydrive.core.runtime_env import RuntimeEnvBuilder

__all__ = ["PackageReport", "package_report"]


def package_report(
    working_dir: str | Path | None = None,
    *,
    executor: str | None = None,
    limit_bytes: int | None = None,
    **options: Any,
) -> PackageReport:
    """What ``executor`` would upload from ``working_dir``, before anything is uploaded.

    Excludes, ``include`` and ``include_gitignore`` are taken as the executor would take them
    (hooks, options, ``RAYDRIVE_*`` variables, config file); the limit is the dashboard's 100 MiB
    upload limit for ``ray-jobs-api`` and Ray's package limit (512 MiB) otherwise, unless
    ``limit_bytes`` is given.

    :raises WorkingDirError: no working dir given or configured, or one that cannot be packaged.
    """
    if working_dir is not None:
        options["working_dir"] = str(working_dir)
    config = effective_config(executor, **options)
    model = getattr(get_registry().get(config.driver), "Options", None)
    values = config.options
    if not (isinstance(model, type) and issubclass(model, RayOptions)):
        # A driver that ships no working dir (local): the Ray drivers' options, with the config
        # file's options for that driver left aside but a misspelt argument still refused.
        model = RayOptions
        values = {
            k: v
            for k, v in values.items()
            if k in RayOptions.model_fields or config.sources.get(k) == "argument"
        }
    opts = validate_options(config.driver, model, values)
    assert isinstance(opts, RayOptions)
    if opts.working_dir is None:
        raise WorkingDirError("no working dir: pass --working-dir or set working_dir in the config")
    packager = RuntimeEnvBuilder(opts).packager(Path(opts.working_dir))
    if limit_bytes is None and config.driver == "ray-jobs-api":
        return packager.report(DASHBOARD_UPLOAD_LIMIT, "the Ray dashboard's upload limit")
    return packager.report(limit_bytes, None if limit_bytes is None else "the given limit")
