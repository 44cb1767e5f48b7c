"""Fixtures of the browser tests: system Chromium driven by Playwright, a real service, real Ray."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.plugin_dirs import plugin_module_dir

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
MODULE = "rd_web_actions"
HERE = Path(__file__).parent


def _need_chromium() -> None:
    if Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK):
        return
    message = f"the system Chromium ({CHROMIUM}) is not installed"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + " (CI installs it in .ci/run)")
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless system Chromium (the Playwright browser download is not used).

    Per module: Playwright's sync API keeps an event loop running in this thread while it is
    started, so a later test in the same process that calls ``asyncio.run`` would fail."""
    _need_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


class DialogWatch:
    """Records every JavaScript dialog (alert, confirm, prompt) a page opens."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, dialog: Any) -> None:
        self.seen.append(dialog.message)
        dialog.dismiss()


@pytest.fixture
def dialogs() -> DialogWatch:
    return DialogWatch()


@pytest.fixture
def page(browser: Any, dialogs: DialogWatch) -> Iterator[Any]:
    """A fresh browser context and page; any dialog it opens is recorded in ``dialogs``."""
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    context.set_default_timeout(60_000)
    the_page = context.new_page()
    the_page.on("dialog", dialogs)
    try:
        yield the_page
    finally:
        context.close()


@pytest.fixture(scope="module")
def web_plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A plugin working dir with the browser tests' actions, importable here and in the actor."""
    with plugin_module_dir(tmp_path_factory, HERE / "actions_web.py", MODULE) as root:
        yield root


@pytest.fixture(scope="module")
def web_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from raydrive.service.server import ServiceServer

    with ServiceServer(db=tmp_path_factory.mktemp("websvc") / "runs.db", token="") as server:
        yield server


@pytest.fixture(scope="module")
def web_executor(ray_cluster: Any, web_service: Any, web_plugin_dir: Path) -> Iterator[Any]:
    import raydrive

    with raydrive.get_executor(
        "ray-pipeline",
        ray_address=ray_cluster.address,
        working_dir=web_plugin_dir,
        pipeline_service_url=web_service.url,
        progress_interval=0.05,
    ) as executor:
        yield executor


def actions(*names: str) -> list[str]:
    return [f"{MODULE}.{n}" for n in names]
