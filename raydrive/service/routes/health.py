"""``GET /health``: liveness, never behind the token."""

from __future__ import annotations

from fastapi import APIRouter

from raydrive.service.routes.common import SlashRoutes

__all__ = ["router"]


def router() -> APIRouter:
    """The liveness route."""
    routes = APIRouter()

    @SlashRoutes(routes)("GET", "/health")
    async def health() -> dict[str, str]:
        """Liveness check; never needs a token."""
        return {"status": "ok"}

    return routes
