"""Issue 9 and 11, the service's web side: Host header (DNS rebinding), session cookie, redirects."""

from __future__ import annotations

import http.client
import time

import pytest

from raydrive.service.auth import HostCheckMiddleware, SessionSigner
from raydrive.service.server import ServiceServer
from tests.pg import pg_server, pg_url  # noqa: F401


def _status(url_port: int, path: str, host: str, host_ip: str = "127.0.0.1", **headers: str) -> int:
    # http.client sends the Host header we name, as a rebinding browser would.
    conn = http.client.HTTPConnection(host_ip, url_port, timeout=10)
    try:
        conn.request("GET", path, headers={"Host": host, **headers})
        return conn.getresponse().status
    finally:
        conn.close()


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    with ServiceServer(db=tmp_path_factory.mktemp("hostsvc") / "runs.db", token="") as server:
        yield server


@pytest.mark.parametrize("path", ["/", "/api/v1/runs/", "/metrics", "/health"])
def test_a_rebound_host_name_is_refused_on_a_loopback_service(service, path):
    assert _status(service.port, path, "evil.example") == 400
    assert _status(service.port, path, f"evil.example:{service.port}") == 400
    assert _status(service.port, path, "127.0.0.1.evil.example") == 400


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "LOCALHOST", "[::1]"])
def test_the_loopback_names_pass(service, host):
    assert _status(service.port, "/api/v1/runs/", f"{host}:{service.port}") == 200


def test_a_host_named_with_host_is_accepted(tmp_path):
    with ServiceServer("localhost", db=tmp_path / "runs.db", token="") as server:
        assert _status(server.port, "/health", f"localhost:{server.port}") == 200
        assert _status(server.port, "/health", "evil.example") == 400
    middleware = HostCheckMiddleware(None, ["pipelines.internal"])  # type: ignore[arg-type]
    assert middleware.allows("pipelines.internal:8100", ("10.0.0.5", 8100))
    assert middleware.allows("10.0.0.5:8100", ("10.0.0.5", 8100))
    assert not middleware.allows("localhost:8100", ("10.0.0.5", 8100))  # not loopback there
    assert not middleware.allows("evil.example", ("10.0.0.5", 8100))


def test_session_values_are_signed_expire_and_die_with_the_token():
    signer = SessionSigner("token-one", max_age=60)
    value = signer.issue()
    assert signer.valid(value) and "token-one" not in value
    assert not SessionSigner("token-two").valid(value)
    assert not signer.valid(value[:-2] + "xx")
    assert not signer.valid(value, now=time.time() + 61)
    assert not signer.valid("garbage") and not signer.valid("") and not signer.valid("1.2.3.4")


def test_login_redirects_only_to_paths_of_the_service(tmp_path):
    import httpx

    with ServiceServer(db=tmp_path / "runs.db", token="tok") as server:
        client = httpx.Client(base_url=server.url)
        for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
            answer = client.post("/login", data={"token": "tok", "next": target})
            assert answer.status_code == 303 and answer.headers["location"] == "/"
        answer = client.post("/login", data={"token": "tok", "next": "/runs/x?y=1"})
        assert answer.headers["location"] == "/runs/x?y=1"
        assert (
            "HttpOnly" in answer.headers["set-cookie"] and "SameSite=strict" in answer.headers["set-cookie"]
        )
        big = client.post("/login", content=b"token=" + b"x" * 2_000_000)
        assert big.status_code == 401
        fresh = httpx.Client(base_url=server.url)
        for garbage in ('raydrive_session="\\"; ;;==', "raydrive_session", "=;=;", "raydrive_session=1.2"):
            assert fresh.get("/api/v1/runs/", headers={"Cookie": garbage}).status_code == 401


def test_names_from_the_environment_are_accepted(tmp_path, monkeypatch):
    monkeypatch.setenv("RAYDRIVE_SERVICE_ALLOWED_HOSTS", "pipelines.example, proxy.internal")
    with ServiceServer(db=tmp_path / "runs.db", token="") as server:
        assert _status(server.port, "/health", "pipelines.example") == 200
        assert _status(server.port, "/health", f"proxy.internal:{server.port}") == 200
        assert _status(server.port, "/health", "evil.example") == 400


@pytest.fixture(params=["sqlite", "postgresql"])
def _db(request, tmp_path):
    return str(tmp_path / "runs.db") if request.param == "sqlite" else request.getfixturevalue("pg_url")


def test_logout_ends_the_session_on_the_server(_db):
    # Issue 24 #8: after logout the cookie still worked for its full 7 days.
    import httpx

    token = "a-token-long-enough-1234"
    with ServiceServer(db=_db, token=token) as server, ServiceServer(db=_db, token=token) as other:
        page = httpx.Client(base_url=server.url)
        assert page.post("/login", data={"token": token, "next": "/"}).status_code == 303
        cookie = page.cookies.get("raydrive_session")
        assert cookie
        copied = {"Cookie": f"raydrive_session={cookie}"}
        assert httpx.get(f"{server.url}/api/v1/runs/", headers=copied).status_code == 200
        assert httpx.get(f"{other.url}/api/v1/runs/", headers=copied).status_code == 200  # another process
        assert page.post("/logout", headers={"X-Raydrive-CSRF": "1"}).status_code == 200
        assert httpx.get(f"{server.url}/api/v1/runs/", headers=copied).status_code == 401
        assert httpx.get(f"{other.url}/api/v1/runs/", headers=copied).status_code == 401


def test_token_guessing_is_slowed_per_client(tmp_path):
    # Issue 24 #12: 200 wrong tokens in 0.2 s, then the right one worked.
    import httpx

    token = "the-right-token-9876"
    with ServiceServer(db=tmp_path / "runs.db", token=token) as server:
        answers = [
            httpx.get(
                f"{server.url}/api/v1/runs/", headers={"Authorization": f"Bearer guess-{i}"}
            ).status_code
            for i in range(200)
        ]
        assert answers.count(401) == server.app.state.throttle.max_failures and answers.count(429) > 150
        right = httpx.get(f"{server.url}/api/v1/runs/", headers={"Authorization": f"Bearer {token}"})
        assert right.status_code == 429 and int(right.headers["retry-after"]) >= 1
        login = httpx.post(f"{server.url}/login", data={"token": token})
        assert login.status_code == 429
        assert httpx.get(f"{server.url}/health").status_code == 200  # liveness needs no token
