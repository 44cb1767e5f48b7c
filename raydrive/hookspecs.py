"""Hook specifications: how plugins change packaging, credentials, resources, give actions their
backend client and see lifecycle events.

A plugin is a module or object with functions marked ``@hookimpl`` and named like a spec below,
registered through the ``raydrive.plugins`` entry-point group::

    [project.entry-points."raydrive.plugins"]
    my-policy = "my_package.policy"

The built-in policies are plugins of this kind (``raydrive plugins`` lists them) and can be
blocked by name with ``RAYDRIVE_DISABLE_PLUGINS=name,name``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from raydrive.core.policy_types import (
        EnvironmentRequest,
        JobEvent,
        PackageSet,
        PackagingRequest,
        ResourceRequest,
    )

PROJECT_NAME = "raydrive"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


# -------------------------------------------------------------------------------------------------
# packaging
# -------------------------------------------------------------------------------------------------


@hookspec
def raydrive_collect_packages(request: PackagingRequest) -> PackageSet | None:
    """Contribute packages and package-manager options for the job's environment.

    Every implementation is called; their contributions are concatenated in call order, with
    duplicates dropped. The built-in ``requirements`` and ``wheels`` plugins implement it.

    :param request: the working dir, requirements file, wheels dir and package manager in use.
    :returns: a :class:`~raydrive.core.policy_types.PackageSet`, or None to contribute nothing.
    """


@hookspec
def raydrive_package_manager_options(manager: str, packages: list[str]) -> list[str] | None:
    """Contribute default options for the package manager, placed before the user's options.

    Called only when there are packages to install. The built-in ``package-manager-defaults``
    plugin returns ``--upgrade`` for pip and ``--no-cache`` for uv.

    :param manager: ``"pip"`` or ``"uv"``.
    :param packages: the packages that will be installed.
    :returns: options to add, or None.
    """


@hookspec
def raydrive_working_dir_excludes(request: PackagingRequest) -> list[str] | None:
    """Contribute gitignore-style patterns left out of the uploaded working directory.

    Every implementation is called and the patterns are combined with the user's ``excludes``
    (``.gitignore`` / ``.rayignore`` files apply as well; the ``include`` option wins over all of
    them). The built-in ``default-excludes`` plugin leaves out ``.git``, ``__pycache__``,
    virtualenvs, ``*.pyc`` and credential files (``.env``, ``.env.*``, ``*.pem``, ``*.key``,
    ``id_rsa*``, ``.ssh/``, ``.aws/``, ``.netrc``, ``.git-credentials``, ``.pypirc``,
    ``.docker/config.json``...).

    :param request: the packaging request.
    :returns: patterns, or None.
    """


# -------------------------------------------------------------------------------------------------
# credentials and environment
# -------------------------------------------------------------------------------------------------


@hookspec
def raydrive_environment(request: EnvironmentRequest) -> dict[str, str] | None:
    """Choose the environment variables that travel with the job (not secrets).

    All results are merged, later plugins winning on the same key. The built-in ``environment``
    plugin returns the caller's explicit ``env`` as given, or, with ``env=None``, only the keys of
    the submitter's environment that start with ``SYNAPSE_`` or ``RAY_``, less the submitter's
    connection settings (``RAY_ADDRESS``, ``RAY_AUTH_*``, ``RAY_TLS_*``...). A chosen variable
    whose name or value looks secret is delivered out of band like a credential.

    :param request: the caller's explicit env (or None) and the submitter's environment.
    :returns: variables to send, or None.
    """


@hookspec
def raydrive_credentials(request: EnvironmentRequest, env: Mapping[str, str]) -> dict[str, str] | None:
    """Supply credentials to inject into the job's environment.

    Credentials are secrets: drivers deliver them to the action's ``os.environ`` out of band and
    never put them where Ray's state API or dashboard would show them, and raydrive never prints
    or logs their values. A key already present in ``env`` (set by the caller) is not overridden.
    The built-in ``credentials`` plugin supplies ``SYNAPSE_HOST`` and ``SYNAPSE_ACCESS_TOKEN``.

    :param request: the caller's explicit env (or None) and the submitter's environment.
    :param env: the environment chosen so far by :func:`raydrive_environment`.
    :returns: secret variables, or None.
    """


@hookspec
def raydrive_secret_names() -> list[str] | None:
    """Name fragments that mark a key or environment variable as secret, besides the built-in ones.

    Every implementation is called and the fragments are combined; matching is case-insensitive
    and by substring of the name (``"VAULT"`` makes ``MY_VAULT_ADDR`` secret). A key that counts as
    secret is masked (``***``) in every repr, log line, error message and CLI output, and an
    environment variable that does is delivered to the job out of band, never in the runtime env
    that Ray's dashboard shows. The built-in rule (whole words: ``TOKEN``, ``SECRET``,
    ``PASSWORD``, ``API_KEY``, ``AUTH``, ``PWD``, ``COOKIE``, ``DSN``, ``CREDENTIALS``..., not
    ``token_count`` or ``max_tokens``) is in :mod:`raydrive.core.redaction` and
    ``docs/secrets.md``; use this hook for names that hold a secret only by convention
    (``SLACK_WEBHOOK_URL``, ``KAGGLE_KEY``). The result is cached until a plugin is (un)registered.

    :returns: name fragments, or None.
    """


# -------------------------------------------------------------------------------------------------
# the action's runtime
# -------------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def raydrive_context_client(env: Mapping[str, str]) -> object | None:
    """Provide the backend client an action reads as ``self.ctx.client``.

    The reference SDK puts its backend client (the Synapse ``BackendClient``, built from
    ``SYNAPSE_HOST`` and ``SYNAPSE_ACCESS_TOKEN``) on the runtime context; this hook is how a
    plugin does the same here. It is called where the action runs (the worker, on Ray drivers),
    the first time an action reads ``ctx.client``, and the answer is kept for the rest of that
    run. The first implementation that returns something other than None wins (pluggy's
    ``firstresult``; order with ``tryfirst`` / ``trylast``). With no answer, reading
    ``ctx.client`` raises :class:`~raydrive.core.context.ContextClientError` naming this hook.

    :param env: the action's environment (``ctx.env``): the variables and credentials that
        travelled with the job, e.g. ``SYNAPSE_HOST`` and ``SYNAPSE_ACCESS_TOKEN``.
    :returns: the client, or None to leave it to another plugin.
    """


# -------------------------------------------------------------------------------------------------
# resources
# -------------------------------------------------------------------------------------------------


@hookspec
def raydrive_adjust_resources(action: str, request: ResourceRequest) -> None:
    """Adjust or veto the resources requested for an action before it is submitted.

    Change ``request`` in place (``num_cpus``, ``num_gpus``, ``memory``, ``resources``) to adjust
    it; raise :class:`~raydrive.core.errors.ResourceVetoError` to refuse it. Every implementation
    is called, in registration order, each seeing the previous ones' changes.

    :param action: the action's name.
    :param request: the mutable resource request.
    """


# -------------------------------------------------------------------------------------------------
# lifecycle
# -------------------------------------------------------------------------------------------------


@hookspec
def raydrive_job_submitted(event: JobEvent) -> None:
    """Called after a driver submitted (or started) a job.

    :param event: driver name, job id and action name; ``status`` is None.
    """


@hookspec
def raydrive_job_finished(event: JobEvent) -> None:
    """Called when a driver learns that a job reached a terminal status.

    Drivers call it at most once per job and executor, when they observe the end (a synchronous
    call returning, ``wait`` or ``get_result`` seeing it).

    :param event: driver name, job id, action name, final ``status`` and ``error`` text if any.
    """
