"""Idempotent creates, as Stripe does them: a ``POST`` carrying an ``Idempotency-Key`` header is
executed once; a repeat with the same key (a client retrying after a read timeout) gets the
first answer back, with ``Idempotent-Replayed: true``, and stores nothing new.

Keys live in the service's database (:meth:`~raydrive.service.db.SQLStore.claim_key`), so every
process of a ``--workers`` service and every restart shares them:

- the key is scoped to the path (with or without its trailing slash), so one key cannot replay
  another endpoint's answer;
- the first request claims the key by inserting its row (the primary key makes the claim atomic
  across processes); a repeat finds the row and waits while it is ``running`` (a repeat in this
  process is woken as soon as the first ends; one in another process polls), then gets its
  answer. A repeat still waiting after :data:`WAIT_S` answers **409** (Stripe's
  ``idempotency_key_in_use``): retry later;
- a repeat with a different body answers **422** (the key was reused for another request);
- an answer of 5xx is not kept: the row is deleted and the create may be retried for real; of
  several repeats waiting on it, exactly one claims the key again and runs, the others wait on
  that one;
- answers are kept :data:`TTL_S` (24 h); a ``running`` row whose process died is taken over
  after its :data:`LEASE_S` lease.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from typing import Any

from starlette.concurrency import run_in_threadpool as in_thread
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from raydrive.service.text import is_bad_text

__all__ = ["HEADER", "LEASE_S", "TTL_S", "WAIT_S", "IdempotencyKeys", "IdempotencyMiddleware"]

HEADER = "Idempotency-Key"
_HEADER = HEADER.lower().encode()
_MAX_KEY = 255
#: Seconds an answer is kept for repeats (Stripe: 24 hours).
TTL_S = 24 * 3600.0
#: Seconds a running request holds its key before another process may take it over.
LEASE_S = 120.0
#: Seconds a repeat waits for its first request before answering 409.
WAIT_S = 60.0
_POLL_S = (0.01, 0.5)  # first and longest pause between two looks at another process's request


class IdempotencyKeys:
    """The keys of one app, on its store. Counts (this process): :attr:`executed` (first
    requests run), :attr:`replayed`, :attr:`waiting` (repeats now waiting for their first)."""

    def __init__(
        self, store: Any, *, ttl: float = TTL_S, lease: float = LEASE_S, wait: float = WAIT_S
    ) -> None:
        self.store = store
        self.ttl, self.lease, self.wait = ttl, lease, wait
        self.executed = self.replayed = self.waiting = 0
        # Requests running in this process, by slot: their repeats here wake when they end.
        self.running: dict[str, asyncio.Event] = {}


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
        text = key.decode("latin-1")
        if not key or len(key) > _MAX_KEY or is_bad_text(text):
            await JSONResponse(
                {"detail": f"{HEADER} must be 1 to {_MAX_KEY} characters, without NUL"}, status_code=422
            )(scope, receive, send)
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
        digest = await in_thread(lambda: hashlib.sha256(body).hexdigest())  # 16 MiB: not on the loop
        slot = f"{scope['path'].rstrip('/')} {text}"
        owner = uuid.uuid4().hex
        keys = self.keys
        loop = asyncio.get_running_loop()
        deadline = loop.time() + keys.wait
        pause = _POLL_S[0]
        while True:
            record = await in_thread(
                keys.store.claim_key, slot, digest, owner, ttl=keys.ttl, lease=keys.lease
            )
            if record is None:
                break  # claimed: this request runs
            if record.digest != digest:
                await JSONResponse(
                    {"detail": f"this {HEADER} was used for a request with another body"}, status_code=422
                )(scope, receive, send)
                return
            if record.state == "done":
                keys.replayed += 1
                headers = [*record.headers, (b"idempotent-replayed", b"true")]
                await send({"type": "http.response.start", "status": record.status, "headers": headers})
                await send({"type": "http.response.body", "body": record.body})
                return
            if loop.time() > deadline:
                await JSONResponse(
                    {"detail": f"a request with this {HEADER} is still running; retry later"}, status_code=409
                )(scope, receive, send)
                return
            keys.waiting += 1
            try:
                local = keys.running.get(slot)
                if local is not None:
                    await asyncio.wait({asyncio.ensure_future(local.wait())}, timeout=_POLL_S[1])
                else:
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, _POLL_S[1])
            finally:
                keys.waiting -= 1
        await self._run(scope, receive, send, slot, owner, body)

    async def _run(
        self, scope: Scope, receive: Receive, send: Send, slot: str, owner: str, body: bytes
    ) -> None:
        keys = self.keys
        keys.executed += 1
        done = keys.running[slot] = asyncio.Event()
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        status = 0
        headers: list[tuple[bytes, bytes]] = []
        parts: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal status, headers
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                parts.append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, replay, capture)
        finally:
            try:
                if 0 < status < 500:
                    await in_thread(keys.store.finish_key, slot, owner, status, headers, b"".join(parts))
                else:
                    await in_thread(keys.store.drop_key, slot, owner)
            finally:
                keys.running.pop(slot, None)
                done.set()
