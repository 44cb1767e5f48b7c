"""A real pipeline service for a test module: the one way the service tests start theirs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from raydrive.service.server import ServiceServer, start_service


@contextmanager
def tokenless_service(directory: Path, **options: Any) -> Iterator[ServiceServer]:
    """A service on loopback on a fresh database in ``directory``, with auth off whatever
    ``$RAYDRIVE_SERVICE_TOKEN`` says (``options`` go to :func:`start_service`)."""
    with pytest.MonkeyPatch.context() as env:
        env.delenv("RAYDRIVE_SERVICE_TOKEN", raising=False)
        with start_service(db=directory / "service.db", **options) as svc:
            yield svc
