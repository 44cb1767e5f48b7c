"""``--retain-days``: prune finished runs in the background, never live ones."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

from starlette.concurrency import run_in_threadpool

from raydrive.core.pipeline import utcnow

__all__ = ["DEFAULT_PRUNE_INTERVAL_S", "prune_forever"]

#: Seconds between two pruning passes (the first runs when the service starts).
DEFAULT_PRUNE_INTERVAL_S = 600.0
_log = logging.getLogger(__name__)


async def prune_forever(store: Any, retain_days: float, interval: float = DEFAULT_PRUNE_INTERVAL_S) -> None:
    """Every ``interval`` seconds, delete runs that finished more than ``retain_days`` ago.

    Runs with their logs, checkpoints and events go (``store.prune_finished``); pending and
    running runs stay whatever their age. Every process of a service may prune: a run is
    deleted once, the others find nothing. A failed pass is logged and retried next interval.
    """
    while True:
        try:
            removed = await run_in_threadpool(store.prune_finished, utcnow() - timedelta(days=retain_days))
            if removed:
                _log.info("retention: pruned %d runs finished over %g days ago", removed, retain_days)
        except Exception as exc:  # keep serving; the next pass retries
            _log.warning("retention pass failed: %s: %s", type(exc).__name__, exc)
        await asyncio.sleep(interval)
