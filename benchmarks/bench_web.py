"""Web page benchmark: the runs list with 10,000 runs stored, and report -> bar moved in a browser.

1. runs list: 10,000 runs (five pipelines, every status) in a SQLite store behind a real service
   on loopback. Timed server-side (the service's own ``raydrive_http_request_duration_seconds``
   histogram, read from ``/metrics``: time from request to response inside the service) and as a
   loopback round trip: ``GET /`` (the page) and ``GET /ui/api/runs`` (the page's first data: 50
   rows, newest first), a status-filtered page, a pipeline-filtered page and a deep page.
   Target: server time <= 100 ms for a page.
2. report -> bar: a run page open in headless system Chromium; a reporter posts progress reports
   one at a time; each sample is the time from starting the POST to the moment the action's bar
   in the page shows the new value (a MutationObserver stamps it with ``Date.now()``, the same
   clock as ``time.time()`` here). Target: p95 <= 250 ms.

Run: ``python benchmarks/bench_web.py [--runs 10000] [--samples 100]``. Figures depend on the
machine; nothing here asserts them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from raydrive.core.pipeline import ActionProgress, ActionStatus, RunStatus
from raydrive.service.db.sqlite import SQLiteStore
from raydrive.service.models import ActionSpec, PipelineCreate, ProgressReport, RunCreate
from raydrive.service.server import ServiceServer

PAGE_TARGET_MS = 100.0
BAR_TARGET_P95_MS = 250.0
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def fill(store: SQLiteStore, runs: int) -> None:
    actions = [ActionSpec(name=f"step{i}") for i in range(4)]
    pipelines = [store.create_pipeline(PipelineCreate(name=f"pipe-{i}", actions=actions)) for i in range(5)]
    statuses = [RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.RUNNING, None]
    for i in range(runs):
        run = store.create_run(pipelines[i % 5].id, RunCreate(params={"i": i, "source": f"s3://b/{i}"}))
        status = statuses[i % 5]
        if status is None:
            continue
        store.report_progress(
            run.id,
            ProgressReport(
                status=RunStatus.RUNNING,
                current_action="step1",
                action_progress=ActionProgress(name="step0", status=ActionStatus.COMPLETED, progress=1.0),
            ),
        )
        if status is not RunStatus.RUNNING:
            store.report_progress(run.id, ProgressReport(status=status))


def server_ms(client: httpx.Client, route: str) -> tuple[float, float]:
    """(count, mean ms) of the service's own timing of GET ``route``."""
    text = client.get("/metrics").text
    count = total = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.labels.get("route") == route and s.labels.get("method") == "GET":
                if s.name.endswith("_count"):
                    count += s.value
                elif s.name.endswith("_sum"):
                    total += s.value
    return count, total


def bench_list(url: str, repeat: int) -> None:
    client = httpx.Client(base_url=url)
    pages = {
        "GET / (the page)": ("/", "/"),
        "first 50 runs": ("/ui/api/runs", "/ui/api/runs"),
        "status=failed": ("/ui/api/runs?status=failed", "/ui/api/runs"),
        "pipeline=pipe-3": ("/ui/api/runs?pipeline=pipe-3", "/ui/api/runs"),
        "deep page skip=9000": ("/ui/api/runs?skip=9000", "/ui/api/runs"),
    }
    print(f"{'page':<24}{'round trip median':>20}{'p95':>10}{'server mean':>14}")
    for label, (path, route) in pages.items():
        client.get(path)  # warm
        before = server_ms(client, route)
        trips = []
        for _ in range(repeat):
            start = time.perf_counter()
            answer = client.get(path)
            trips.append((time.perf_counter() - start) * 1000)
            answer.raise_for_status()
        after = server_ms(client, route)
        server = (after[1] - before[1]) / max(1.0, after[0] - before[0]) * 1000
        print(f"{label:<24}{statistics.median(trips):>17.1f} ms{_p95(trips):>7.1f} ms{server:>11.1f} ms")
    print(f"target: server time <= {PAGE_TARGET_MS:.0f} ms per page (not asserted)")


def bench_browser(url: str, samples: int) -> None:
    if not Path(CHROMIUM).exists():
        print(f"report -> bar: skipped, {CHROMIUM} is not installed")
        return
    from playwright.sync_api import sync_playwright

    client = httpx.Client(base_url=url)
    made = client.post("/api/v1/pipelines/", json={"name": "bench", "actions": [{"name": "a"}]}).json()
    run = client.post(f"/api/v1/pipelines/{made['id']}/runs/", json={}).json()
    client.post(f"/api/v1/runs/{run['id']}/progress", json={"status": "running"})
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page()
        start = time.perf_counter()
        page.goto(f"{url}/")
        page.wait_for_selector("#runs tr")
        shown = 1000 * (time.perf_counter() - start)
        print(f"runs page in the browser: rows shown {shown:.0f} ms after navigating")
        page.goto(f"{url}/runs/{run['id']}")
        page.wait_for_selector('#run[data-status="running"]')
        page.evaluate(
            """() => { window.__seen = {};
            new MutationObserver(() => {
              const bar = document.querySelector('#actions li[data-action="a"] progress');
              if (bar && !(bar.value in window.__seen)) window.__seen[bar.value] = Date.now();
            }).observe(document.getElementById('actions'), {childList: true, subtree: true}); }"""
        )
        latencies = []
        for i in range(1, samples + 1):
            value = round(i / (samples + 1), 6)
            sent = time.time()
            report = {"action_progress": {"name": "a", "status": "running", "progress": value}}
            client.post(f"/api/v1/runs/{run['id']}/progress", json=report).raise_for_status()
            page.wait_for_function(f"() => {value} in window.__seen", polling=5)
            latencies.append(page.evaluate(f"window.__seen[{value}]") - sent * 1000)
        browser.close()
    print(
        f"report -> bar moved ({samples} reports): median {statistics.median(latencies):.1f} ms, "
        f"p95 {_p95(latencies):.1f} ms, max {max(latencies):.1f} ms "
        f"(target p95 <= {BAR_TARGET_P95_MS:.0f} ms, not asserted)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-web-") as tmp:
        store = SQLiteStore(Path(tmp) / "runs.db")
        start = time.perf_counter()
        fill(store, args.runs)
        print(f"stored {args.runs} runs in {time.perf_counter() - start:.1f} s")
        try:
            with ServiceServer(store=store, token="") as service:
                bench_list(service.url, args.repeat)
                bench_browser(service.url, args.samples)
        finally:
            store.close()


if __name__ == "__main__":
    sys.exit(main())
