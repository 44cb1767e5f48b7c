"""Idempotent creates, as Stripe does them: a ``POST`` carrying an ``Idempotency-Key`` header is
executed once; a repeat with the same key (a client retrying after a read timeout) gets the
first answer back, with ``Idempotent-Replayed: true``, and stores nothing new.

- the key is scoped to the path (with or without its trailing slash), so one key cannot replay
  another endpoint's answer;
- a repeat that arrives while the first is still running waits for it and gets its answer;
- a repeat with a different body answers **422** (the key was reused for another request);
- answers of 5xx are not kept (the create may be retried for real); others are kept for
  ``ttl`` seconds (24 h), at most ``max_entries`` keys and ``max_bytes`` of answers.

Keys live in the memory of this service process: a restart, or another process of a
``--workers`` service, does not know them (a store-backed table would; see the README).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["HEADER", "IdempotencyKeys", "IdempotencyMiddleware"]

HEADER = "Idempotency-Key"
_HEADER = HEADER.lower().encode()
_MAX_KEY = 255


@dataclass
class _Entry:
    digest: str
    created: float
    done: asyncio.Event = field(default_factory=asyncio.Event)
    status: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    kept: bool = False


def _json(status: int, text: str) -> list[Message]:
    body = ('{"detail": "' + text.replace('"', "'") + '"}').encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    return [
        {"type": "http.response.start", "status": status, "headers": headers},
        {"type": "http.response.body", "body": body},
    ]


class IdempotencyKeys:
    """The keys this process has seen. Counts: :attr:`executed` (first requests run),
    :attr:`replayed`, :attr:`waiting` (repeats now waiting for their first request)."""

    def __init__(
        self, *, ttl: float = 24 * 3600.0, max_entries: int = 10_000, max_bytes: int = 64 * 1024 * 1024
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self._bytes = 0
        self.executed = self.replayed = self.waiting = 0

    def _expire(self, now: float) -> None:
        while self._entries:
            key, oldest = next(iter(self._entries.items()))
            over = len(self._entries) > self.max_entries or self._bytes > self.max_bytes
            if not over and now - oldest.created < self.ttl:
                return
            if not oldest.done.is_set():
                return  # never drop a request in flight: its repeats wait on it
            del self._entries[key]
            self._bytes -= len(oldest.body)


class IdempotencyMiddleware:
    """Executes a ``POST`` with an ``Idempotency-Key`` once (see the module docs)."""

    def __init__(self, app: ASGIApp, keys: IdempotencyKeys) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = None
        if scope["type"] == "http" and scope["method"] == "POST":
            key = next((value for name, value in scope.get("headers", ()) if name == _HEADER), None)
        if key is None:
            await self.app(scope, receive, send)
            return
        if not key or len(key) > _MAX_KEY:
            for message in _json(422, f"{HEADER} must be 1 to {_MAX_KEY} characters"):
                await send(message)
            return
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        digest = hashlib.sha256(body).hexdigest()
        slot = (scope["path"].rstrip("/"), key.decode("latin-1"))
        now = time.monotonic()
        keys = self.keys
        keys._expire(now)
        entry = keys._entries.get(slot)
        if entry is not None:
            if entry.digest != digest:
                for message in _json(422, f"this {HEADER} was used for a request with another body"):
                    await send(message)
                return
            keys.waiting += 1
            try:
                await entry.done.wait()
            finally:
                keys.waiting -= 1
            if entry.kept:
                keys.replayed += 1
                headers = [*entry.headers, (b"idempotent-replayed", b"true")]
                await send({"type": "http.response.start", "status": entry.status, "headers": headers})
                await send({"type": "http.response.body", "body": entry.body})
                return
            # The first attempt failed with a 5xx: this one runs for real.
        entry = keys._entries[slot] = _Entry(digest, now)
        keys.executed += 1
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        parts: list[bytes] = []

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                entry.status = message["status"]
                entry.headers = list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                parts.append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, replay, capture)
        finally:
            if 0 < entry.status < 500:
                entry.body = b"".join(parts)
                entry.kept = True
                keys._bytes += len(entry.body)
            else:
                keys._entries.pop(slot, None)
            entry.done.set()
