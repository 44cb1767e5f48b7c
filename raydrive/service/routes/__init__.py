"""The HTTP routes of the pipeline service, one :class:`fastapi.APIRouter` per resource.

Each module has a ``router(service)`` factory taking the :class:`~.common.ServiceContext` of one
app (its store, broker, report writer, metrics and limits) and returning its router;
:func:`raydrive.service.app.create_app` only builds the context and includes the routers:

- :mod:`.health`: ``GET /health``;
- :mod:`.pipelines`: ``/api/v1/pipelines/...``;
- :mod:`.runs`: runs, their creation, updates, cancel, progress reports and the report batch;
- :mod:`.stream`: the run's Server-Sent Events stream;
- :mod:`.checkpoints`, :mod:`.logs`: what a run stores besides itself;
- :mod:`.prometheus`: ``GET /metrics``.

The web page's routes stay in :mod:`raydrive.service.web.router`.
"""

from __future__ import annotations

from raydrive.service.routes.common import ServiceContext

__all__ = ["ServiceContext"]
