"""Who may talk to the pipeline service: the bearer token, the page's session cookie, CSRF, Host.

- **Bearer token** (``RAYDRIVE_SERVICE_TOKEN``): every path but ``/health``, the login page and the
  page's static files needs ``Authorization: Bearer <token>`` or a valid session cookie.
- **Session cookie** (the web page): ``POST /login`` with the right token sets
  ``raydrive_session``, ``HttpOnly`` and ``SameSite=Strict``. Its value is not the token but an
  issue time and a random nonce signed with an HMAC key derived from the token, so a leaked cookie
  never reveals the token, it expires (:data:`SESSION_MAX_AGE`), and changing the token ends every
  session.
- **CSRF**: a state-changing request (anything but GET, HEAD, OPTIONS) authenticated by the cookie
  must also carry ``X-Raydrive-CSRF: 1``. A cross-site form cannot set a custom header and a
  cross-site ``fetch`` that sets one needs a CORS preflight that this service never grants
  (the OWASP "custom request header" defence, on top of ``SameSite=Strict``).
- **Host header** (DNS rebinding, checked with or without a token): a page on ``evil.example``
  whose name is re-pointed at 127.0.0.1 sends ``Host: evil.example``. Only the address the
  connection arrived on, the loopback names when that address is loopback, and the names given
  (``--host`` when it names a host, ``$RAYDRIVE_SERVICE_ALLOWED_HOSTS``) are accepted; anything
  else answers 400.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import math
import os
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, RedirectResponse
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = [
    "ALLOWED_HOSTS_ENV",
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "SESSION_MAX_AGE",
    "AuthMiddleware",
    "HostCheckMiddleware",
    "LoginThrottle",
    "SessionSigner",
    "Sessions",
    "client_of",
    "extra_allowed_hosts",
    "too_many_attempts",
]

#: Extra ``Host`` names to accept, comma-separated (a reverse proxy's public name, say).
ALLOWED_HOSTS_ENV = "RAYDRIVE_SERVICE_ALLOWED_HOSTS"
SESSION_COOKIE = "raydrive_session"
CSRF_HEADER = "X-Raydrive-CSRF"
#: Seconds a page session lasts (7 days); the token is asked again after that.
SESSION_MAX_AGE = 7 * 24 * 3600
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


class LoginThrottle:
    """Slows token guessing per client, as Grafana's brute-force protection does: after
    :attr:`max_failures` failed attempts (a wrong bearer token, a forged or revoked session, a
    wrong token at the login page) within :attr:`window` seconds, that client's attempts are
    answered 429 with ``Retry-After`` without being checked, until its failures age out. So a
    client gets at most ``max_failures`` guesses a window, the right token included. Kept in
    this process's memory (each worker counts its own), for at most ``max_clients`` clients.
    """

    def __init__(self, max_failures: int = 10, window: float = 60.0, max_clients: int = 10_000) -> None:
        self.max_failures, self.window, self.max_clients = max_failures, window, max_clients
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, client: str, now: float | None = None) -> float:
        """Seconds until ``client`` may try again; 0 when it may now."""
        failures = self._failures.get(client)
        if not failures:
            return 0.0
        now = time.monotonic() if now is None else now
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if len(failures) < self.max_failures:
            return 0.0
        return failures[-self.max_failures] + self.window - now

    def failed(self, client: str, now: float | None = None) -> None:
        """Count a failed attempt of ``client``."""
        failures = self._failures.pop(client, None) or deque(maxlen=self.max_failures)
        failures.append(time.monotonic() if now is None else now)
        self._failures[client] = failures
        while len(self._failures) > self.max_clients:
            self._failures.popitem(last=False)


def client_of(scope: Scope) -> str:
    """The client address of a request (what :class:`LoginThrottle` counts by)."""
    client = scope.get("client")
    return str(client[0]) if client else ""


def too_many_attempts(retry_after: float) -> JSONResponse:
    """The 429 a throttled client gets."""
    seconds = max(1, math.ceil(retry_after))
    return JSONResponse(
        {"detail": f"too many failed attempts from this client; retry in {seconds} s"},
        status_code=429,
        headers={"Retry-After": str(seconds)},
    )


class SessionSigner:
    """Issues and checks session values ``<issued>.<nonce>.<signature>`` for one token."""

    def __init__(self, token: str, max_age: int = SESSION_MAX_AGE) -> None:
        # A key of its own: the signature proves knowledge of the token without containing it.
        self._key = hmac.new(token.encode(), b"raydrive-session-v1", hashlib.sha256).digest()
        self.max_age = max_age

    def _sign(self, payload: str) -> str:
        mac = hmac.new(self._key, payload.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def issue(self, now: float | None = None) -> str:
        """A fresh session value."""
        payload = f"{int(now if now is not None else time.time())}.{secrets.token_urlsafe(16)}"
        return f"{payload}.{self._sign(payload)}"

    def nonce(self, value: str) -> str:
        """The nonce of a session value (what the store keeps while the session lives)."""
        return value.rpartition(".")[0].partition(".")[2]

    def valid(self, value: str, now: float | None = None) -> bool:
        """True when ``value`` was issued by this signer and has not expired."""
        payload, _, signature = value.rpartition(".")
        issued, _, _nonce = payload.partition(".")
        if not issued.isdigit() or not hmac.compare_digest(signature, self._sign(payload)):
            return False
        age = (now if now is not None else time.time()) - int(issued)
        return 0 <= age <= self.max_age


def _header(scope: Scope, name: bytes) -> bytes:
    return next((v for k, v in scope["headers"] if k == name), b"")


def _cookie(scope: Scope, name: str) -> str | None:
    raw = _header(scope, b"cookie").decode("latin-1")
    try:
        morsel = SimpleCookie(raw).get(name)
    except Exception:  # a malformed Cookie header is no session, not a 500
        return None
    return morsel.value if morsel is not None else None


def _wants_html(scope: Scope) -> bool:
    return scope["method"] == "GET" and b"text/html" in _header(scope, b"accept")


class Sessions:
    """The page's sessions: signed values (:class:`SessionSigner`) that are also live in the
    store, so logout ends a session on the server, as Django's ``flush`` does, and a copied
    cookie stops working. The methods block (they use the store): call them in a thread."""

    def __init__(self, token: str, store: Any) -> None:
        self.signer = SessionSigner(token)
        self.store = store

    @property
    def max_age(self) -> int:
        """Seconds a session lasts."""
        return self.signer.max_age

    def issue(self) -> str:
        """A new session value, remembered by the store."""
        value = self.signer.issue()
        expires = datetime.now(timezone.utc) + timedelta(seconds=self.signer.max_age)
        self.store.add_session(self.signer.nonce(value), expires)
        return value

    def valid(self, value: str) -> bool:
        """True for a value this service signed that has neither expired nor been revoked."""
        return self.signer.valid(value) and self.store.has_session(self.signer.nonce(value))

    def revoke(self, value: str) -> None:
        """End the session ``value`` (logout); a value that is no session is ignored."""
        if self.signer.valid(value):
            self.store.drop_session(self.signer.nonce(value))


class AuthMiddleware:
    """Require the bearer token or a session cookie (plus the CSRF header for changes); failed
    attempts are throttled per client (:class:`LoginThrottle`)."""

    def __init__(self, app: ASGIApp, token: str, sessions: Sessions, throttle: LoginThrottle) -> None:
        self.app = app
        self._token = token.encode()
        self.sessions = sessions
        self.throttle = throttle

    def check_token(self, candidate: str) -> bool:
        """True when ``candidate`` is the token (compared in constant time)."""
        return hmac.compare_digest(candidate.encode(), self._token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        # Open without a token: liveness, and what the login page itself needs.
        if path.rstrip("/") in ("/health", "/login") or path.startswith("/static/"):
            await self.app(scope, receive, send)
            return
        scheme, _, credentials = _header(scope, b"authorization").partition(b" ")
        session = _cookie(scope, SESSION_COOKIE)
        client = client_of(scope)
        if credentials or session:
            wait = self.throttle.retry_after(client)
            if wait > 0:  # checked before the credentials: a throttled guess learns nothing
                await too_many_attempts(wait)(scope, receive, send)
                return
        # compare_digest runs in time independent of where the values differ.
        if scheme.lower() == b"bearer" and hmac.compare_digest(credentials.strip(), self._token):
            await self.app(scope, receive, send)
            return
        if credentials:
            self.throttle.failed(client)
        live = session is not None and await run_in_threadpool(self.sessions.valid, session)
        if session and not live:
            self.throttle.failed(client)
        if live:
            if scope["method"] in _SAFE_METHODS or _header(scope, CSRF_HEADER.lower().encode()) == b"1":
                await self.app(scope, receive, send)
                return
            response = JSONResponse(
                {"detail": f"a change made with the session cookie must carry the {CSRF_HEADER}: 1 header"},
                status_code=403,
            )
        elif _wants_html(scope):
            # A person at the page: ask for the token, then come back here.
            target = path + (f"?{scope['query_string'].decode('latin-1')}" if scope["query_string"] else "")
            response = RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
        else:
            response = JSONResponse(
                {"detail": "missing or invalid bearer token"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        await response(scope, receive, send)


def _host_name(value: str) -> str:
    """The host part of a ``Host`` header value, lower case, without port or IPv6 brackets."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:].partition("]")[0]
    if value.count(":") > 1:  # a bare IPv6 address (not valid in Host, but be exact about it)
        return value
    return value.partition(":")[0]


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def extra_allowed_hosts(bind_host: str) -> list[str]:
    """The names to accept besides the connection's own address: ``bind_host`` when it names one,
    plus the comma-separated names of ``$RAYDRIVE_SERVICE_ALLOWED_HOSTS``.

    A wildcard bind (``0.0.0.0``, ``::``) names none: then only the address a client connected to
    (and the loopback names on loopback) passes, and any DNS name must be given explicitly.
    """
    host = bind_host.strip().strip("[]").lower()
    names = [] if host in ("", "0.0.0.0", "::") else [host]
    return names + [n.strip() for n in os.environ.get(ALLOWED_HOSTS_ENV, "").split(",") if n.strip()]


class HostCheckMiddleware:
    """Answer 400 to a request whose ``Host`` is not an address of this service (DNS rebinding)."""

    def __init__(self, app: ASGIApp, allowed_hosts: Iterable[str] = ()) -> None:
        self.app = app
        self._allowed = frozenset(h.strip().strip("[]").lower() for h in allowed_hosts if h.strip())

    def allows(self, host: str, server: tuple[str, int | None] | None) -> bool:
        """True when a request with ``Host: host`` that arrived on ``server`` may pass."""
        if "*" in self._allowed:
            return True
        name = _host_name(host)
        if name in self._allowed:
            return True
        local = (server[0] if server else "").strip("[]").lower()
        if name == local:
            return True
        return name in _LOOPBACK_NAMES and (_is_loopback(local) or not local)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = _header(scope, b"host").decode("latin-1")
        if self.allows(host, scope.get("server")):
            await self.app(scope, receive, send)
            return
        response = JSONResponse(
            {
                "detail": "the Host header does not name this service; start it with --host "
                "<that name> to serve it under that name"
            },
            status_code=400,
        )
        await response(scope, receive, send)
