"""Text no database stores: NUL characters (PostgreSQL refuses them in ``text``) and lone
surrogates (``"\\udcff"``, what ``json.dumps`` makes of a non-UTF-8 file name; no UTF-8
encoder takes them, so SQLite's driver fails on them). The service refuses both with 422 naming
where they are, in a body, a path or a query, on every backend alike, instead of answering 500.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["BAD_TEXT_MSG", "TextGuardMiddleware", "find_bad_text", "is_bad_text"]

_BAD = re.compile("[\x00\ud800-\udfff]")
#: The message of a 422 for such text.
BAD_TEXT_MSG = "text may not hold a NUL character or a lone surrogate (\\u0000, \\ud800-\\udfff)"


def is_bad_text(text: str) -> bool:
    """True when ``text`` holds a NUL character or a lone surrogate."""
    return _BAD.search(text) is not None


def find_bad_text(value: Any, loc: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
    """Where in the JSON value ``value`` the first string or key with bad text is, or None.

    Iterative, so any nesting depth costs no recursion.
    """
    stack: list[tuple[Any, tuple[Any, ...]]] = [(value, loc)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if _BAD.search(item):
                return where
        elif isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, str) and _BAD.search(key):
                    return (*where, key)
                stack.append((child, (*where, key)))
        elif isinstance(item, list):
            stack.extend((child, (*where, index)) for index, child in enumerate(item))
    return None


def _refusal(loc: list[Any]) -> JSONResponse:
    return JSONResponse({"detail": [{"loc": loc, "msg": BAD_TEXT_MSG, "type": "string_invalid"}]}, 422)


class TextGuardMiddleware:
    """Answers 422 to a request whose path or query holds bad text (see the module docs)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = None
            if is_bad_text(scope["path"]):
                refusal = _refusal(["path"])
            else:
                query = scope.get("query_string", b"").decode("latin-1")
                if "%" in query:
                    for name, value in parse_qsl(query, keep_blank_values=True, errors="surrogateescape"):
                        if is_bad_text(name) or is_bad_text(value):
                            refusal = _refusal(["query", name.encode("utf-8", "replace").decode()])
                            break
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)
