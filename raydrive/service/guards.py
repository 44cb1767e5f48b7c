"""How the HTTP layer of the pipeline service answers what goes wrong, and the small checks it
shares: bounds on times, the stream's ``reset`` event, and the error handlers (every error is
JSON ``{"detail": ...}``, its text masked by the one redaction rule)."""

from __future__ import annotations

import json
import logging
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from raydrive.core.pipeline import RunStatus
from raydrive.core.redaction import redact_text
from raydrive.service.limits import LimitError
from raydrive.service.rules import InvalidReportError, RunConflictError
from raydrive.service.store import RecordNotFoundError, RunEvent

__all__ = [
    "RESET_EVENT",
    "CatchAllMiddleware",
    "install_error_handlers",
    "refusal",
    "reset_event",
    "status_of",
    "stream_ends",
    "utc_or_422",
]

_log = logging.getLogger("raydrive.service")

#: Name of the stream event sent instead of a replay whose events were pruned: its data is the
#: run's current state (its id that of the newest event), the changes in between are gone.
RESET_EVENT = "reset"


def reset_event(latest: RunEvent) -> RunEvent:
    """The ``reset`` event that stands for ``latest`` (the run's current state)."""
    return RunEvent(latest.seq, RESET_EVENT, latest.data)


def status_of(event: RunEvent) -> RunStatus:
    """The run status an event's progress view holds."""
    return RunStatus(json.loads(event.data)["status"])


def stream_ends(event: RunEvent) -> bool:
    """True when the stream ends after ``event`` (a terminal event, or a reset to an end state)."""
    if event.event == RESET_EVENT:
        return status_of(event).is_terminal()
    return event.terminal


def utc_or_422(value: datetime | None, name: str) -> datetime | None:
    """``value`` in UTC (naive means UTC); 422 for a time that overflows once converted."""
    # "0001-01-01T00:00:00+05:00" is a valid time that no UTC clock can show: converting it
    # overflows. Such a bound is refused rather than answered with a 500.
    if value is None:
        return None
    try:
        return value.astimezone(timezone.utc) if value.tzinfo else value.replace(tzinfo=timezone.utc)
    except (OverflowError, ValueError):
        error = {
            "loc": ("query", name),
            "msg": "time out of range once converted to UTC",
            "type": "value_error",
        }
        raise RequestValidationError([error]) from None


def refusal(exc: Exception) -> tuple[int, dict[str, Any]] | None:
    """The status and JSON body an error of a request is answered with, or None for an error
    that is not the client's (a 500). One table for the handlers and for each report of a batch."""
    if isinstance(exc, RecordNotFoundError):
        return 404, {"detail": str(exc), "missing": exc.kind}
    if isinstance(exc, RunConflictError):
        return 409, {"detail": str(exc)}
    if isinstance(exc, InvalidReportError):
        error = {"loc": exc.loc, "msg": str(exc), "type": "value_error"}
        return 422, {"detail": [error]}
    if isinstance(exc, LimitError):
        return 422, exc.body
    if isinstance(exc, RequestValidationError):
        # FastAPI's default echoes the offending input: a secret param or a 16 MiB value would
        # come back in the error. Say where and what, not the value.
        errors = [
            {
                "loc": [_printable(part) for part in item.get("loc", ())],
                "msg": redact_text(str(item.get("msg", ""))),
                "type": item.get("type", "value_error"),
            }
            for item in exc.errors()
            if isinstance(item, dict)
        ]
        return 422, {"detail": errors}
    return None


def _printable(part: Any) -> Any:
    # A key holding a lone surrogate is named escaped ("\\udcff"): no encoder takes it as it is.
    if isinstance(part, str):
        return redact_text(part.encode("utf-8", "backslashreplace").decode("utf-8"))
    return part


def install_error_handlers(app: FastAPI) -> None:
    """404 naming what is missing, 409 for conflicts, 422 without echoed input (:func:`refusal`)."""

    async def _answer(request: Request, exc: Exception) -> JSONResponse:
        answer = refusal(exc)
        if answer is None:  # only the types registered below come here
            raise exc
        return JSONResponse(answer[1], status_code=answer[0])

    for kind in (
        RecordNotFoundError,
        RunConflictError,
        InvalidReportError,
        LimitError,
        RequestValidationError,
    ):
        app.add_exception_handler(kind, _answer)


_INTERNAL = json.dumps({"detail": "internal error of the pipeline service"}).encode()


class CatchAllMiddleware:
    """Answers an unexpected exception with a generic JSON 500 and logs it redacted.

    The goal is that no input reaches this; when something does, the client learns nothing of
    the internals, and the log has the cause (type, message, where) with secrets masked, instead
    of uvicorn's unredacted traceback. Added outermost, so it also covers the other middlewares.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking)
        except Exception as exc:
            frame = traceback.extract_tb(exc.__traceback__)[-1:]
            where = f" at {Path(frame[0].filename).name}:{frame[0].lineno}" if frame else ""
            _log.error(
                "unexpected error on %s %s%s: %s",
                scope.get("method"),
                scope.get("path"),
                where,
                redact_text(f"{type(exc).__name__}: {exc}"),
            )
            if started:
                return  # the answer is under way: the client sees the connection end
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(_INTERNAL)).encode()),
            ]
            await send({"type": "http.response.start", "status": 500, "headers": headers})
            await send({"type": "http.response.body", "body": _INTERNAL})
