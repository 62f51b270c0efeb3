"""The page shows what a queued job waits for and lists sweeps with their members ranked: Chromium
against a real uvicorn server over a service with fakes (no Ray)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from fakes import FakeCluster, FakeLauncher
from helpers import spec
from serving import ServerThread

from api.app import create_app
from api.backend import ServiceBackend
from scheduler.config import Settings
from scheduler.core.runner_events import Reported, Started
from scheduler.service import SchedulerService

pytestmark = [pytest.mark.slow]
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def page_of(make_core, tmp_path) -> Iterator[tuple[Any, SchedulerService, str]]:
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}")
    api = pytest.importorskip("playwright.sync_api")
    service = SchedulerService(make_core(FakeCluster({"CPU": 2}), FakeLauncher()),
                               Settings(storage_root=str(tmp_path / "storage"), db_path=":memory:"))
    with ServerThread(create_app(ServiceBackend(service), token=None)) as server, api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield browser.new_page(), service, server.url
        browser.close()


def test_the_page_shows_dependencies_and_ranked_sweeps(page_of) -> None:
    page, service, url = page_of
    core = service.core
    first = core.submit(spec(sweep={"parameters": {"lr": [1, 2]}, "metric": "loss", "mode": "min"}))
    sweep_id = first["spec"]["sweep_id"]
    for job_id, loss in ((f"{sweep_id}-0", 0.9), (f"{sweep_id}-1", 0.1)):
        core.on_runner_event(Started(job_id, 1))
        core.on_runner_event(Reported(job_id, 1, 1, core.clock(), {"loss": loss}, None, None))
    waiting = core.submit(spec(name="evaluate", depends_on=[{"job_id": f"{sweep_id}-0"}]))["job_id"]
    page.goto(url)
    row = page.locator(f'#jobs tr[data-job-id="{waiting}"]')
    row.wait_for()
    assert f"after {sweep_id}-0 completed" in row.inner_text()
    assert "dependency" in row.inner_text()
    sweep = page.locator(f'#sweeps [data-sweep-id="{sweep_id}"]')
    sweep.wait_for()
    members = sweep.locator("tr").evaluate_all("rows => rows.map(r => r.dataset.jobId)")
    assert members == [f"{sweep_id}-1", f"{sweep_id}-0"]  # best first by loss
    assert "best first by loss (min)" in sweep.inner_text()
    row.click()
    page.locator('#d-fields dd[data-field="depends on"]').wait_for()
    assert page.locator('#d-fields dd[data-field="depends on"]').inner_text() == f"{sweep_id}-0 completed"
