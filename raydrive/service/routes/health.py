"""``GET /health``: liveness, never behind the token."""

from __future__ import annotations

from fastapi import APIRouter

__all__ = ["router"]


def router() -> APIRouter:
    """The liveness route."""
    routes = APIRouter()

    async def health() -> dict[str, str]:
        """Liveness check; never needs a token."""
        return {"status": "ok"}

    routes.add_api_route("/health", health, methods=["GET"])
    routes.add_api_route("/health/", health, methods=["GET"], include_in_schema=False)
    return routes
