"""Driver options as pydantic models: code, environment and config files are validated alike.

A driver declares ``Options = SomeModel``; unknown keys are refused (``extra='forbid'``), so a
misspelt option fails in ``get_executor`` naming the field, before anything reaches Ray.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator
from pydantic import ValidationError as PydanticValidationError

from raydrive.core.errors import InvalidOptionsError
from raydrive.core.redaction import redact
from raydrive.core.retry import JobPolicyOptions

__all__ = ["DriverOptions", "RayOptions", "UserPath", "validate_options"]

UserPath = Annotated[Path, AfterValidator(lambda path: path.expanduser())]
"""A path option: ``~`` and ``~user`` are expanded when the option is validated, as a shell does,
so every driver and the runtime-env builder see the same absolute-or-relative path."""


def _user_path_or_flag(value: bool | str) -> bool | str:
    # A CA bundle path given as an option (``verify='~/ca.pem'``): expanded like any path option.
    return os.path.expanduser(value) if isinstance(value, str) else value


UserPathOrFlag = Annotated[bool | str, AfterValidator(_user_path_or_flag)]
"""``True``/``False`` or a path (expanded as :data:`UserPath`), e.g. TLS ``verify``."""


class DriverOptions(BaseModel):
    """Options every driver accepts."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, frozen=True)

    env: dict[str, str] | None = Field(
        default=None,
        description="Environment for the action; None takes SYNAPSE_* and RAY_* from os.environ.",
    )
    job_id: str | None = Field(default=None, description="Default job identifier.")

    @field_validator("env", mode="before")
    @classmethod
    def _env_from_mapping(cls, value: Any) -> Any:
        # The guide's PluginEnvironment (anything with to_dict/dict) is accepted as a mapping.
        for attr in ("to_dict", "model_dump"):
            if value is not None and hasattr(value, attr) and not isinstance(value, dict):
                return getattr(value, attr)()
        return value

    def __repr__(self) -> str:
        # Tokens, headers, URLs with passwords and runtime-env values go through the one
        # redaction function; env shows its keys only.
        shown = redact(self.model_dump(exclude={"env"}))
        env = None if self.env is None else sorted(self.env)
        args = ", ".join(f"{k}={v!r}" for k, v in shown.items())
        return f"{type(self).__name__}({args}, env_keys={env!r})"

    __str__ = __repr__


class RayOptions(JobPolicyOptions, DriverOptions):
    """Options shared by every Ray driver (the guide's BaseRayExecutor parameters and more)."""

    ray_address: str = Field(
        default="auto",
        description="'auto' (running cluster), 'host:port', 'ray://host:port' or 'local'.",
    )
    runtime_env: dict[str, Any] | None = Field(default=None, description="Ray runtime env to merge.")
    working_dir: UserPath | None = Field(default=None, description="Plugin directory shipped to Ray.")
    requirements_file: UserPath | None = Field(default=None, description="requirements.txt to install.")
    package_manager: Literal["pip", "uv"] = "pip"
    package_manager_options: list[str] | None = None
    wheels_dir: str = Field(default="wheels", description="Wheels directory, under working_dir.")
    excludes: list[str] | None = Field(default=None, description="Extra working-dir excludes.")
    include: list[str] | None = Field(
        default=None,
        description="Working-dir patterns kept even when an exclude or an ignore file drops them.",
    )
    include_gitignore: bool = Field(
        default=True,
        description="Honour .gitignore files in the working dir, as Ray does (.rayignore always).",
    )
    num_cpus: float | None = Field(default=None, ge=0)
    num_gpus: float | None = Field(default=None, ge=0)
    memory: int | None = Field(default=None, ge=0, description="Memory in bytes.")
    resources: dict[str, float] | None = Field(default=None, description="Custom resources.")
    include_sdk: bool = Field(default=False, description="Ship the local raydrive package too.")
    connect_timeout: float = Field(
        default=30.0, gt=0, description="Seconds to wait for the cluster before giving up."
    )


def validate_options(driver: str, model: type[BaseModel], values: dict[str, Any]) -> BaseModel:
    """Validate ``values`` against ``model``; raise InvalidOptionsError naming each bad field."""
    try:
        return model.model_validate(values)
    except PydanticValidationError as exc:
        errors = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "<options>"
            problem = "unknown option" if err["type"] == "extra_forbidden" else err["msg"]
            errors.append((field, problem))
        raise InvalidOptionsError(driver, errors) from None
