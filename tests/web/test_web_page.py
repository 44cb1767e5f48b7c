"""The runs page and the run page in a real headless Chromium, against a real service and Ray."""

from __future__ import annotations

import contextlib
import os
import re
import time
from pathlib import Path

import httpx
import pytest

from raydrive import PipelineDefinition
from raydrive.drivers.ray.wire import NAMESPACE
from raydrive.drivers.ray_pipeline.wire import pipeline_actor_name as actor_name
from tests.conditions import wait_for
from tests.web.conftest import actions

pytestmark = [pytest.mark.browser, pytest.mark.ray]
XSS = "<script>alert(1)</script><img src=x onerror=alert(2)>"
DOCS = Path(__file__).resolve().parents[2] / "docs"


def _bar(page, action: str) -> float:
    return float(page.eval_on_selector(f'#actions li[data-action="{action}"] progress', "e => e.value"))


def test_run_appears_live_bars_advance_and_result_shows(page, web_executor, web_service, tmp_path):
    page.goto(web_service.url + "/")
    page.evaluate("window.__sameDocument = true")
    pipeline = PipelineDefinition(
        name="web-etl", actions=actions("StepAction", "TotalAction"), description="two steps"
    )
    run_id = web_executor.submit(pipeline, {"steps": 12, "pause": 0.25, "message": "stepping along"})
    row = page.locator(f'tr[data-run-id="{run_id}"]')
    row.wait_for()  # appears without a reload
    assert page.evaluate("window.__sameDocument") is True
    assert row.locator("td.pipeline").inner_text() == "web-etl"
    page.wait_for_selector(f'tr[data-run-id="{run_id}"][data-status="running"]')
    page.screenshot(path=str(tmp_path / "runs-page.png"), full_page=True)

    row.get_by_role("link", name=run_id).click()
    page.wait_for_url(f"**/runs/{run_id}")
    page.wait_for_selector('#actions li[data-action="StepAction"]')
    page.evaluate("window.__sameDocument = true")
    first = wait_for(
        lambda: 0 < _bar(page, "StepAction") < 1 and _bar(page, "StepAction"), 60, "the bar to move"
    )
    wait_for(lambda: _bar(page, "StepAction") > first, 60, "the bar to advance")
    assert page.locator('#actions li[data-action="StepAction"] .step').inner_text().startswith("step ")
    page.screenshot(path=str(tmp_path / "run-page-running.png"), full_page=True)

    page.wait_for_selector('#run[data-status="completed"]', timeout=120_000)
    assert page.evaluate("window.__sameDocument") is True  # moved by the stream, not a reload
    assert page.locator("#run-status").inner_text().strip() == "completed"  # the word, not colour alone
    assert '"total": 66' in page.locator("#run-result").inner_text()
    assert [_bar(page, a) for a in ("StepAction", "TotalAction")] == [1.0, 1.0]
    page.wait_for_function("() => document.querySelectorAll('#checkpoints details').length === 2")
    page.locator("#checkpoints summary").first.click()  # collapsible, opens
    assert '"values"' in page.locator("#checkpoints details").first.inner_text()
    page.locator("#logs .line", has_text="stepping along").wait_for()
    assert page.locator("#cancel").is_hidden() and page.locator("#resume").is_hidden()
    page.screenshot(path=str(tmp_path / "run-page.png"), full_page=True)
    if os.environ.get("RAYDRIVE_UPDATE_SCREENSHOTS"):
        DOCS.mkdir(exist_ok=True)
        (DOCS / "web-run.png").write_bytes((tmp_path / "run-page.png").read_bytes())


def test_failed_run_shows_traceback_and_resume_command(page, web_executor, web_service):
    pipeline = PipelineDefinition(name="web-fails", actions=actions("FailAction"))
    run_id = web_executor.submit(pipeline, {"reason": "disk full"})
    page.goto(f"{web_service.url}/runs/{run_id}")
    page.wait_for_selector('#run[data-status="failed"]', timeout=120_000)
    error = page.locator("#run-error").inner_text()
    assert "Traceback" in error and "web test failure: disk full" in error
    assert page.locator("#resume-cmd").inner_text() == f"raydrive pipeline resume {run_id}"
    assert page.locator("#cancel").is_hidden()
    assert page.locator('#actions li[data-action="FailAction"]').get_attribute("data-status") == "failed"


def test_log_filters_by_level_and_action(page, web_service):
    client = httpx.Client(base_url=web_service.url)
    pipeline = client.post(
        "/api/v1/pipelines/", json={"name": "logs", "actions": [{"name": "a"}, {"name": "b"}]}
    )
    run = client.post(f"/api/v1/pipelines/{pipeline.json()['id']}/runs/", json={}).json()
    client.post(f"/api/v1/runs/{run['id']}/progress", json={"status": "running"})
    page.goto(f"{web_service.url}/runs/{run['id']}")
    page.wait_for_selector('#run[data-status="running"]')
    client.post(
        f"/api/v1/runs/{run['id']}/logs/",
        json={
            "entries": [
                {"message": "a says hi", "level": "info", "action_name": "a"},
                {"message": "b warns", "level": "warning", "action_name": "b"},
            ]
        },
    )
    page.locator("#logs .line", has_text="b warns").wait_for()  # the tail follows live
    page.select_option("#log-level", "warning")
    assert page.locator("#logs .line:visible").all_inner_texts()[0].endswith("b warns")
    page.select_option("#log-level", "")
    page.select_option("#log-action", "a")
    visible = page.locator("#logs .line:visible").all_inner_texts()
    assert len(visible) == 1 and visible[0].endswith("a says hi")


def test_cancel_button_stops_a_running_pipeline(page, web_executor, web_service, tmp_path):
    pid_file = tmp_path / "pid"
    pipeline = PipelineDefinition(name="web-spin", actions=actions("SpinAction"))
    run_id = web_executor.submit(pipeline, {"seconds": 90, "pid_file": str(pid_file)})
    try:
        page.goto(f"{web_service.url}/runs/{run_id}")
        page.wait_for_selector('#run[data-status="running"]', timeout=120_000)
        pid = int(wait_for(lambda: pid_file.exists() and pid_file.read_text(), 60, "the action to start"))
        page.get_by_role("button", name="Cancel run").click()
        page.wait_for_function(
            "() => document.getElementById('run').dataset.status === 'cancelled'"
            " || document.getElementById('cancel-msg').textContent.startsWith('could not')",
            timeout=10_000,
        )
        assert page.locator("#run").get_attribute("data-status") == "cancelled", page.locator(
            "#cancel-msg"
        ).inner_text()
        cancelled_at = time.monotonic()

        def gone() -> bool:
            try:
                os.kill(pid, 0)
            except OSError:
                return True
            return False

        # The bound is 2 s; the deadline leaves room for a loaded CI machine, and the
        # figure is printed (timings are not asserted).
        wait_for(gone, timeout=30, what="the cancelled action's process to end")
        print(f"actor process gone {time.monotonic() - cancelled_at:.2f} s after the page showed cancelled")
        wait_for(
            lambda: not web_executor.actor_exists(actor_name(run_id), NAMESPACE),
            timeout=30,
            what="the pipeline actor to be gone",
        )
        assert page.locator("#resume-cmd").inner_text() == f"raydrive pipeline resume {run_id}"
    finally:  # never leave a spinning action behind, whatever failed above
        with contextlib.suppress(Exception):
            web_executor.kill_actor(actor_name(run_id), NAMESPACE)


def test_xss_payload_in_names_logs_and_params_shows_as_text(page, dialogs, web_executor, web_service):
    # Through a real pipeline: the pipeline's name and an action's log line.
    pipeline = PipelineDefinition(name=XSS, actions=actions("StepAction"))
    run_id = web_executor.submit(pipeline, {"steps": 1, "pause": 0.0, "message": XSS})
    # Straight through the API: an action name, its step, message and error, a param value.
    client = httpx.Client(base_url=web_service.url)
    made = client.post("/api/v1/pipelines/", json={"name": XSS, "actions": [{"name": XSS}]}).json()
    other = client.post(f"/api/v1/pipelines/{made['id']}/runs/", json={"params": {"p": XSS}}).json()
    bad = {"name": XSS, "status": "running", "progress": 0.5, "progress_step": XSS, "message": XSS}
    client.post(f"/api/v1/runs/{other['id']}/progress", json={"status": "running", "action_progress": bad})
    client.post(f"/api/v1/runs/{other['id']}/logs/", json={"entries": [{"message": XSS, "action_name": XSS}]})

    page.goto(web_service.url + "/")
    page.locator(f'tr[data-run-id="{other["id"]}"]').wait_for()
    assert page.locator(f'tr[data-run-id="{other["id"]}"] td.pipeline').inner_text() == XSS

    page.goto(f"{web_service.url}/runs/{run_id}")
    page.wait_for_selector('#run[data-status="completed"]', timeout=120_000)
    assert page.locator("#pipeline-name").inner_text() == XSS
    page.locator("#logs .line .msg", has_text="<script>").wait_for()
    assert page.locator("#logs .line .msg").first.inner_text() == XSS

    page.goto(f"{web_service.url}/runs/{other['id']}")
    page.wait_for_selector(f'#actions li .name:text-is("{XSS}")')
    assert XSS in page.locator("#actions li .step").inner_text()
    page.locator("#logs .line .msg", has_text="<script>").wait_for()
    page.locator("details summary", has_text="Params").click()
    assert XSS in page.locator("#run-params").inner_text()
    # Nothing ran: no dialog, no element the payload would have made, only the page's own scripts.
    assert dialogs.seen == []
    assert page.locator("img[src=x]").count() == 0
    assert page.evaluate("[...document.scripts].map(s => new URL(s.src).pathname)") == [
        "/static/common.js",
        "/static/run.js",
    ]


def test_runs_page_filters_by_status_and_pipeline_and_pages(page, web_executor, web_service, tmp_path):
    client = httpx.Client(base_url=web_service.url)
    made = client.post("/api/v1/pipelines/", json={"name": "many", "actions": [{"name": "a"}]}).json()
    ids = [client.post(f"/api/v1/pipelines/{made['id']}/runs/", json={}).json()["id"] for _ in range(12)]
    client.patch(f"/api/v1/runs/{ids[0]}", json={"status": "failed", "error": "x"})
    for i, run_id in enumerate(ids[1:], 1):  # a mix of states (and a realistic picture)
        done = i % 4 == 1
        step = {"name": "a", "status": "completed" if done else "running", "progress": 1 if done else i / 12}
        if i % 4 != 3:
            client.post(
                f"/api/v1/runs/{run_id}/progress", json={"status": "running", "action_progress": step}
            )
        if i % 4 == 1:
            client.patch(f"/api/v1/runs/{run_id}", json={"status": "completed"})
        elif i % 4 == 2 and i < 8:
            client.patch(f"/api/v1/runs/{run_id}", json={"status": "cancelled"})

    page.goto(f"{web_service.url}/?pipeline=many&limit=5")
    page.wait_for_selector(f'tr[data-run-id="{ids[-1]}"]')  # newest first
    shown = lambda: page.eval_on_selector_all("#runs tr", "rows => rows.map(r => r.dataset.runId)")  # noqa: E731
    assert shown() == ids[::-1][:5]
    page.get_by_role("button", name="Older").click()
    page.wait_for_selector(f'tr[data-run-id="{ids[6]}"]')
    assert shown() == ids[::-1][5:10] and "skip=5" in page.url
    page.get_by_role("button", name="Older").click()
    page.wait_for_selector(f'tr[data-run-id="{ids[0]}"]')
    assert shown() == ids[::-1][10:] and page.locator("#next").is_disabled()

    page.select_option("#status", "failed")  # keyboard-reachable select, applied at once
    page.wait_for_function("() => document.querySelectorAll('#runs tr').length === 1")
    assert shown() == [ids[0]]
    assert page.locator("#runs tr .status").inner_text() == "failed"

    page.goto(web_service.url + "/")  # every run of this module, for the README's picture
    page.wait_for_selector(f'tr[data-run-id="{ids[-1]}"]')
    page.screenshot(path=str(tmp_path / "runs-page.png"))
    if os.environ.get("RAYDRIVE_UPDATE_SCREENSHOTS"):
        (DOCS / "web-runs.png").write_bytes((tmp_path / "runs-page.png").read_bytes())


def test_keyboard_reaches_filters_rows_and_pager(page, web_service):
    client = httpx.Client(base_url=web_service.url)
    made = client.post("/api/v1/pipelines/", json={"name": "keys", "actions": [{"name": "a"}]}).json()
    run_id = client.post(f"/api/v1/pipelines/{made['id']}/runs/", json={}).json()["id"]
    page.goto(f"{web_service.url}/?pipeline=keys")
    page.wait_for_selector(f'tr[data-run-id="{run_id}"]')
    reached = []
    for _ in range(12):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("document.activeElement.id || document.activeElement.textContent"))
    assert {"status", "pipeline"} <= set(reached) and run_id in reached
    for _ in range(12):
        if page.evaluate("document.activeElement.textContent") == run_id:
            break
        page.keyboard.press("Shift+Tab")
    page.keyboard.press("Enter")  # a link: Enter opens the run
    page.wait_for_url(f"**/runs/{run_id}")
    page.wait_for_selector('#run[data-status="pending"]')


def test_a_long_log_is_caught_up_to_its_tail(page, web_service):
    client = httpx.Client(base_url=web_service.url)
    made = client.post("/api/v1/pipelines/", json={"name": "chatty", "actions": [{"name": "a"}]}).json()
    run_id = client.post(f"/api/v1/pipelines/{made['id']}/runs/", json={}).json()["id"]
    for batch in range(3):
        entries = [{"message": f"line {batch * 1000 + i}"} for i in range(1000)]
        client.post(f"/api/v1/runs/{run_id}/logs/", json={"entries": entries})
    page.goto(f"{web_service.url}/runs/{run_id}")
    page.locator("#logs .line .msg", has_text="line 2999").wait_for(timeout=15_000)
    assert page.locator("#logs .line").count() == 3000


def _refreshed(page) -> None:
    """Wait for the runs page's next refresh (its "updated" line changes with each one)."""
    before = page.locator("#live").inner_text()
    page.wait_for_function("(before) => document.getElementById('live').textContent !== before", arg=before)


def test_the_focus_stays_on_a_run_link_across_refreshes(page, web_service):
    # The rows are rebuilt every second; a keyboard user must not be thrown back to the page top.
    client = httpx.Client(base_url=web_service.url)
    made = client.post("/api/v1/pipelines/", json={"name": "focus", "actions": [{"name": "a"}]}).json()
    run_id = client.post(f"/api/v1/pipelines/{made['id']}/runs/", json={}).json()["id"]
    page.goto(f"{web_service.url}/?pipeline=focus")
    page.locator(f'tr[data-run-id="{run_id}"] a').focus()
    for _ in range(2):
        _refreshed(page)
        assert page.evaluate("document.activeElement.textContent") == run_id


def test_an_open_checkpoint_stays_open_when_another_arrives(page, web_service):
    client = httpx.Client(base_url=web_service.url)
    actions = [{"name": "first"}, {"name": "second"}]
    made = client.post("/api/v1/pipelines/", json={"name": "open-ckpt", "actions": actions}).json()
    run_id = client.post(f"/api/v1/pipelines/{made['id']}/runs/", json={}).json()["id"]
    client.post(f"/api/v1/runs/{run_id}/progress", json={"status": "running"}).raise_for_status()

    def complete(index: int, name: str) -> None:
        checkpoint = {"action_name": name, "action_index": index, "result": {"step": name}}
        client.post(f"/api/v1/runs/{run_id}/checkpoints/", json=checkpoint).raise_for_status()
        done = {"action_progress": {"name": name, "status": "completed", "progress": 1.0}}
        client.post(f"/api/v1/runs/{run_id}/progress", json=done).raise_for_status()

    complete(0, "first")
    page.goto(f"{web_service.url}/runs/{run_id}")
    page.wait_for_function("() => document.querySelectorAll('#checkpoints details').length === 1")
    page.locator("#checkpoints summary").first.click()
    assert page.locator("#checkpoints details").first.get_attribute("open") is not None
    complete(1, "second")
    page.wait_for_function("() => document.querySelectorAll('#checkpoints details').length === 2")
    first, second = page.locator("#checkpoints details").all()
    assert first.get_attribute("open") is not None and second.get_attribute("open") is None


def test_each_log_line_shows_once_when_the_run_ends_during_a_poll(page, web_service):
    # The stream's end asks for a log poll while the page's first one is still loading: both
    # read from the same cursor, and each line showed twice (CI caught it on a fast run).
    client = httpx.Client(base_url=web_service.url)
    made = client.post("/api/v1/pipelines/", json={"name": "ends-fast", "actions": [{"name": "a"}]}).json()
    run_id = client.post(f"/api/v1/pipelines/{made['id']}/runs/", json={}).json()["id"]
    client.post(f"/api/v1/runs/{run_id}/progress", json={"status": "running"}).raise_for_status()
    entries = [{"message": "one"}, {"message": "two"}]
    client.post(f"/api/v1/runs/{run_id}/logs/", json={"entries": entries}).raise_for_status()
    held: list = []

    def hold_the_first_poll(route) -> None:
        if held:
            route.continue_()
        else:
            held.append(route)

    page.route(re.compile(r"/ui/api/runs/[^/]+/logs\?"), hold_the_first_poll)
    page.goto(f"{web_service.url}/runs/{run_id}")
    page.wait_for_selector('#run[data-status="running"]')
    wait_for(lambda: page.evaluate("true") and held, 30, "the first log poll")  # evaluate: events run
    client.post(f"/api/v1/runs/{run_id}/progress", json={"status": "completed"}).raise_for_status()
    page.wait_for_selector('#run[data-status="completed"]')  # the stream's end: it asked for a poll
    held[0].continue_()
    page.wait_for_function(
        """() => { const end = document.getElementById('log-end');
                   return (end && !end.hidden) || document.querySelectorAll('#logs .line').length > 2; }"""
    )
    assert page.locator("#logs .line .msg").all_inner_texts() == ["one", "two"]
    assert page.locator("#log-end").is_visible()  # the reader is told the log is complete
