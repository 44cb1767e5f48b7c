"""The options of ``ray-jobs-api`` (:class:`JobsApiOptions`)."""

from __future__ import annotations

from pydantic import Field, field_validator

from raydrive.core.options import RayOptions, UserPathOrFlag

__all__ = ["JobsApiOptions"]


class JobsApiOptions(RayOptions):
    """Options of ``ray-jobs-api`` (``ray_address`` is not used: the dashboard address is)."""

    dashboard_address: str = Field(
        default="http://localhost:8265", description="HTTP(S) address of the Ray dashboard."
    )
    python_executable: str = Field(
        default="python",
        description="Command that starts the cluster's Python in the job (shell words allowed).",
    )
    log_poll_interval: float = Field(
        default=0.1, gt=0, le=10, description="Seconds between reads of a followed log at the end."
    )
    poll_interval: float = Field(
        default=0.5, gt=0, description="Longest wait between status polls in get_result()."
    )
    request_timeout: float = Field(
        default=30.0, gt=0, description="Seconds for one HTTP request once the dashboard has answered."
    )
    headers: dict[str, str] | None = Field(default=None, description="Extra HTTP headers (proxies).")
    verify: UserPathOrFlag = Field(default=True, description="TLS: verify, or a CA bundle path.")
    metadata: dict[str, str] | None = Field(default=None, description="Extra job metadata (shown).")

    @field_validator("dashboard_address")
    @classmethod
    def _http_address(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if value.startswith("ray://"):
            raise ValueError("the Jobs API needs the dashboard's HTTP address (http://host:8265), not ray://")
        if "://" not in value:
            value = f"http://{value}"
        if not value.startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// address")
        return value

    def __repr__(self) -> str:
        from raydrive.core.redaction import redact_url

        # Header values may be credentials (Authorization, cookies): keys only.
        shown = self.model_dump(exclude={"env", "headers"})
        shown["dashboard_address"] = redact_url(self.dashboard_address)
        headers = None if self.headers is None else sorted(self.headers)
        env = None if self.env is None else sorted(self.env)
        args = ", ".join(f"{k}={v!r}" for k, v in shown.items())
        return f"{type(self).__name__}({args}, header_keys={headers!r}, env_keys={env!r})"

    __str__ = __repr__
