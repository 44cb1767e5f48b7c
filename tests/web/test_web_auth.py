"""The page with RAYDRIVE_SERVICE_TOKEN set: asked once, a session cookie, CSRF on changes."""

from __future__ import annotations

import httpx
import pytest

from raydrive.service.server import ServiceServer

pytestmark = pytest.mark.browser
TOKEN = "s3cr3t-web-token"


@pytest.fixture(scope="module")
def token_service(tmp_path_factory):
    with ServiceServer(db=tmp_path_factory.mktemp("tokensvc") / "runs.db", token=TOKEN) as server:
        yield server


def _fetch(page, method: str, path: str, headers: dict | None = None) -> int:
    return page.evaluate(
        "async ([m, p, h]) => (await fetch(p, {method: m, headers: h, credentials: 'same-origin'})).status",
        [method, path, headers or {}],
    )


def test_token_page_asks_once_refuses_a_wrong_token_and_sets_a_strict_cookie(page, token_service):
    api = httpx.Client(base_url=token_service.url, headers={"Authorization": f"Bearer {TOKEN}"})
    made = api.post("/api/v1/pipelines/", json={"name": "guarded", "actions": [{"name": "a"}]}).json()
    run = api.post(f"/api/v1/pipelines/{made['id']}/runs/", json={}).json()

    page.goto(f"{token_service.url}/runs/{run['id']}")
    page.wait_for_url("**/login?next=*")
    page.fill("#token", "not-the-token")
    page.get_by_role("button", name="Sign in").click()
    assert page.locator("#login-error").inner_text() == "That token is not right."
    assert page.context.cookies() == []

    page.fill("#token", TOKEN)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"**/runs/{run['id']}")  # back where the person was going
    page.wait_for_selector('#run[data-status="pending"]')
    assert page.locator("#pipeline-name").inner_text() == "guarded"
    # The live stream works on the cookie too: a report made elsewhere moves the page.
    report = {"status": "running", "action_progress": {"name": "a", "status": "running", "progress": 0.5}}
    api.post(f"/api/v1/runs/{run['id']}/progress", json=report)
    page.wait_for_selector('#run[data-status="running"]')
    page.wait_for_function("() => document.querySelector('#actions li progress').value === 0.5")
    (cookie,) = page.context.cookies()
    assert cookie["name"] == "raydrive_session" and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert TOKEN not in cookie["value"]
    assert page.evaluate("document.cookie") == ""  # HttpOnly: the page's script cannot read it

    # Asked once: another page of the service opens straight away.
    page.goto(token_service.url + "/")
    page.locator(f'tr[data-run-id="{run["id"]}"]').wait_for()
    # The API takes the cookie for reads; a change with the cookie needs the CSRF header.
    assert _fetch(page, "GET", "/api/v1/runs/") == 200
    assert _fetch(page, "GET", "/metrics") == 200
    patch = f"/api/v1/runs/{run['id']}"
    assert _fetch(page, "DELETE", patch) == 403
    assert api.get(patch).status_code == 200  # the refused request changed nothing
    # The page's own change (Cancel) carries the header, so it goes through on the cookie.
    page.goto(f"{token_service.url}/runs/{run['id']}")
    page.get_by_role("button", name="Cancel run").click()
    page.wait_for_selector('#run[data-status="cancelled"]')
    assert api.get(patch).json()["status"] == "cancelled"
    assert _fetch(page, "DELETE", patch, {"X-Raydrive-CSRF": "1"}) == 204


def test_without_a_session_the_api_and_metrics_stay_closed(token_service):
    plain = httpx.Client(base_url=token_service.url)
    assert plain.get("/api/v1/runs/").status_code == 401
    assert plain.get("/metrics").status_code == 401
    assert plain.get("/ui/api/runs").status_code == 401
    forged = {"Cookie": "raydrive_session=9999999999.abc.def"}
    assert plain.get("/api/v1/runs/", headers=forged).status_code == 401
    assert plain.get("/", headers={"Accept": "text/html"}).status_code == 303
    assert plain.get("/health").status_code == 200
    assert plain.get("/static/app.css").status_code == 200
