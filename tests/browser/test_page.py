"""The page in a real headless Chromium against a real ``trainq serve`` on the shared local Ray.

``trainq serve`` runs as a subprocess connected to the test session's Ray (it finds the
scheduler actor the session created). Chromium is Debian's (``scripts/setup.sh`` installs it);
Playwright drives it. Screenshots go to the test's temp folder; with
``TRAINQ_UPDATE_SCREENSHOT=1`` the job page is also saved as ``docs/dashboard.png`` for the README.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from helpers import JOBS_DIR

pytestmark = [pytest.mark.ray, pytest.mark.slow]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
TOKEN = "page-token-42"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def serve(client, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``trainq serve`` (with a token) over the session's Ray and scheduler actor; yields its URL."""
    import ray

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    env = {**os.environ, "TRAINQ_API_TOKEN": TOKEN, "PYTHONPATH": str(REPO)}
    address = ray.get_runtime_context().gcs_address
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "scheduler.cli", "serve", "--address", address,
                                 "--port", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"trainq serve exited {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            raise TimeoutError(f"trainq serve did not answer in 90 s: {log.read_text()[-2000:]}")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}: run scripts/setup.sh as root (it installs Debian's chromium)")
    playwright_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (test extras)")
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield b
        b.close()


def _spec(tmp_path: Path, name: str) -> dict:
    return {"name": name, "entrypoint": "steps:count_steps", "num_workers": 2, "backend": "none",
            "runtime_env": {"working_dir": JOBS_DIR},
            "config": {"total": 30, "every": 4, "step_s": 0.15, "log": str(tmp_path / f"{name}.log")}}


def _buttons(page, expected: list[str]) -> list[str]:
    """The job actions the page offers (its visible buttons, sorted), once they are ``expected``
    (they follow the job's state a moment after its badge); the caller asserts the answer."""
    offered = "[...document.querySelectorAll('#job-detail .actions button:not([hidden])')]" \
              ".map(b => b.id.replace('btn-', '')).sort()"
    with contextlib.suppress(Exception):  # a timeout: the caller's assertion shows what was offered
        page.wait_for_function(f"JSON.stringify({offered}) === JSON.stringify({json.dumps(sorted(expected))})",
                               timeout=10_000)
    return sorted(page.evaluate(offered))


def test_the_page_drives_a_job_through_pause_and_resume_live(serve, browser, tmp_path) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 1100})
    shots = tmp_path / "screenshots"
    shots.mkdir()
    try:
        page.goto(serve)
        # A token is configured: the page asks for it; a wrong one is refused clearly.
        page.wait_for_selector("#token-dialog:not([hidden])")
        page.fill("#token-input", "not-the-token")
        page.click("#token-form button[type=submit]")
        page.wait_for_function("document.querySelector('#token-error').textContent.includes('Wrong token')")
        page.screenshot(path=str(shots / "wrong-token.png"))
        page.fill("#token-input", TOKEN)
        page.click("#token-form button[type=submit]")
        page.wait_for_selector("#token-dialog", state="hidden")
        page.wait_for_selector("#live.on")
        page.evaluate("window.__sameDocument = true")  # gone if anything reloads the page

        # A bad submit shows the server's error next to the field.
        page.click("button[data-tab=submit]")
        page.fill("input[name=entrypoint]", "steps:count_steps")
        page.fill("input[name=num_workers]", "0")
        page.click("#submit-form button[type=submit]")
        error = page.wait_for_selector('[data-error-for="num_workers"]:not(:empty)')
        assert "num_workers" in error.text_content() and "a whole number from 1 to 4096" in error.text_content()
        page.screenshot(path=str(shots / "field-error.png"))

        # Submit through the JSON box; the page shows the job and follows it to running.
        page.fill("input[name=num_workers]", "1")
        page.click("#submit-form details summary")
        # A time limit far beyond its run gives the jobs queued behind it an estimated start; 60 steps
        # (~9 s) leave room for the checks below before it is paused.
        job_spec = _spec(tmp_path, "page-job") | {"time_limit_s": 3600}
        job_spec["config"]["total"] = 60
        page.fill("#spec-json", json.dumps(job_spec))
        page.click("#submit-form button[type=submit]")
        page.wait_for_function("document.querySelector('#submit-result').textContent.startsWith('submitted job_')")
        job_id = page.text_content("#submit-result").split()[1]
        row = f'#jobs tr[data-job-id="{job_id}"]'
        page.wait_for_selector(row)
        page.wait_for_selector(f'{row} .status [data-status="running"]', timeout=120_000)
        # Running: no resume (and no checkpoint-now: its train function does not use the hook).
        assert _buttons(page, ["cancel", "pause"]) == ["cancel", "pause"]

        # A job queued behind it shows its estimated start, and on hover what it rests on.
        with httpx.Client(base_url=serve, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) as http:
            waiting = http.post("/api/training/jobs", json=_spec(tmp_path, "waiting") | {"num_workers": 1}).json()
            queued = next(j for j in http.get("/api/training/queue").json() if j["job_id"] == waiting["job_id"])
            assert queued["eta"] and "time limit" in queued["eta_basis"]
            page.wait_for_selector(f'#jobs tr[data-job-id="{waiting["job_id"]}"] .eta[data-eta]:not([data-eta=""])')
            text, title, at = page.eval_on_selector(f'#jobs tr[data-job-id="{waiting["job_id"]}"] .eta',
                                                    "n => [n.textContent, n.title, n.dataset.eta]")
            # What the page shows is its own latest answer: once page-job's step rate is known the
            # estimate moves from its time limit to its steps to go, so compare with the page's eta.
            minutes = (datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp() - time.time()) / 60
            shown = re.fullmatch(r"in ~(\d+) min", text)
            assert shown and abs(int(shown[1]) - minutes) <= 1, (text, minutes)
            assert title in (queued["eta_basis"], *(j["eta_basis"] for j in http.get("/api/training/queue").json()
                                                   if j["job_id"] == waiting["job_id"]))
            assert http.post(f"/api/training/cancel/{waiting['job_id']}").status_code == 200
        page.wait_for_function("document.querySelectorAll('#chart circle.pt').length >= 4", timeout=60_000)

        # Pause: the server's answer, then paused with its checkpoint, without reloading.
        page.click("#btn-pause")
        page.wait_for_function("document.querySelector('#action-result').textContent.includes('pausing')")
        page.wait_for_selector('#d-status[data-status="paused"]', timeout=120_000)
        page.wait_for_selector(f'{row} .status [data-status="paused"]')
        page.wait_for_selector('#d-fields dd[data-field="checkpoint"]')
        page.wait_for_selector("#checkpoints tbody tr")
        page.wait_for_selector('#chart line[data-mark="paused"]', state="attached")  # a 0-wide line
        paused_checkpoint = page.text_content('#d-fields dd[data-field="checkpoint"]')
        assert job_id in paused_checkpoint
        assert _buttons(page, ["cancel", "resume"]) == ["cancel", "resume"]  # paused: no pause, no checkpoint now
        assert page.query_selector_all("#checkpoints button.resume-here")
        page.screenshot(path=str(shots / "paused.png"), full_page=True)

        # Resume, and see it complete; the chart holds both attempts.
        page.click("#btn-resume")
        page.wait_for_function("document.querySelector('#action-result').textContent.includes('queued')")
        page.wait_for_selector(f'{row} .status [data-status="completed"]', timeout=180_000)
        page.wait_for_selector('#d-status[data-status="completed"]')
        assert _buttons(page, []) == [] and not page.query_selector_all("#checkpoints button.resume-here")
        page.wait_for_selector('#chart circle.pt[data-attempt="2"]')
        points = page.eval_on_selector_all("#chart circle.pt", "ns => ns.length")
        assert points >= 8
        timeline = page.eval_on_selector_all("#timeline li", "ns => ns.map(n => n.dataset.to)")
        assert timeline[-1] == "completed" and "paused" in timeline and timeline.count("running") == 2
        page.wait_for_function("document.querySelector('#logs').textContent.includes('==> runner <==')")
        assert page.evaluate("window.__sameDocument") is True
        # Each attempt's Ray Train run is named, and linked to the Ray dashboard's Train API.
        links = page.eval_on_selector_all('#d-fields dd[data-field="ray train runs"] a',
                                          "as => as.map(a => [a.textContent, a.href])")
        assert len(links) == 2 and all("/api/train/v2/runs/v1" in href for _, href in links)
        page.screenshot(path=str(shots / "completed.png"), full_page=True)
        if os.environ.get("TRAINQ_UPDATE_SCREENSHOT") == "1":
            (REPO / "docs").mkdir(exist_ok=True)
            page.screenshot(path=str(REPO / "docs" / "dashboard.png"), full_page=True)

        # The cluster view: what is free now that nothing runs.
        page.click("button[data-tab=cluster]")
        cpu = page.wait_for_selector('#resources tr[data-resource="CPU"]')
        assert cpu.text_content().startswith("CPU")
        # Per node, real resources only: none of Ray's placement-group bookkeeping (CPU_group_<id> ...)
        node = page.wait_for_selector("#nodes tr[data-node]")
        assert "(head)" in node.text_content() and "CPU" in node.text_content()
        shown = page.text_content("#resources") + page.text_content("#nodes")
        assert "_group_" not in shown and "bundle_group" not in shown
    finally:
        page.close()
    assert sorted((shots).iterdir())


def test_the_page_pulls_a_model_with_live_progress_and_deletes_it(serve, browser) -> None:
    """From the session's local hub (slow on purpose, so progress shows between 0 and 100%)."""
    # The page's server shares the session's scheduler, whose model cache may already hold the
    # model (test_hf_e2e pulls it): start from an empty cache so the pull is a real download.
    r = httpx.delete(f"{serve}/api/models/tiny/gpt2", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    assert r.status_code in (200, 404), r.text
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        page.goto(serve)
        page.fill("#token-input", TOKEN)
        page.click("#token-form button[type=submit]")
        page.wait_for_selector("#live.on")
        page.click("button[data-tab=models]")
        # Record every percentage the row shows, to see the bar move (not just 0 and 100%).
        page.evaluate("""() => { window.__seen = [];
            new MutationObserver(() => document.querySelectorAll('#models tr[data-model="tiny/gpt2"] .bar-label')
              .forEach(n => window.__seen.push(n.textContent)))
              .observe(document.querySelector('#models tbody'), {childList: true, subtree: true}); }""")
        page.fill("#pull-model", "tiny/gpt2")
        page.click("#pull-form button[type=submit]")
        row = '#models tr[data-model="tiny/gpt2"]'
        page.wait_for_selector(f'{row} [data-status="ready"]', timeout=60_000)
        seen = page.evaluate("window.__seen")
        # The bar was live before the download finished (the byte progress in between is checked
        # at the API in test_hf_e2e; a loaded machine may redraw only the ends here).
        assert seen[-1] == "100%" and seen.index("100%") > 0, seen
        page.click(f"{row} button.danger")
        page.wait_for_selector(row, state="detached")
        assert "deleted tiny/gpt2" in page.text_content("#pull-result")
    finally:
        page.close()


def test_the_python_http_client_against_trainq_serve(serve, tmp_path) -> None:
    from scheduler.errors import IllegalTransition, InvalidSpec, JobNotFound, Unauthorized
    from scheduler.http import Client

    with Client(serve, TOKEN) as api:
        job = api.submit(_spec(tmp_path, "http-client") | {"num_workers": 1})
        job_id = job["job_id"]
        events = api.events(job_id)
        assert next(events).event == "snapshot"
        assert api.wait(job_id, "running", timeout_s=120)["status"] == "running"
        assert api.pause(job_id)["status"] == "pausing"
        paused = api.wait(job_id, timeout_s=120)
        assert paused["status"] == "paused" and paused["checkpoint_path"]
        followed = []
        for ev in events:  # the stream followed it: running (maybe), pausing, paused
            if ev.event == "status":
                followed.append(ev.data["status"])
                if ev.data["status"] == "paused":
                    break
        assert followed[-2:] == ["pausing", "paused"]
        events.close()
        assert api.cancel(job_id)["status"] == "cancelled"
        with pytest.raises(IllegalTransition) as conflict:
            api.pause(job_id)
        assert conflict.value.fields["status"] == "cancelled"
        with pytest.raises(JobNotFound):
            api.get("job_nope")
        with pytest.raises(InvalidSpec) as bad:
            api.submit({"entrypoint": "steps:count_steps", "num_workers": 0})
        assert bad.value.fields["field"] == "num_workers"
    with Client(serve, "wrong") as bad_token, pytest.raises(Unauthorized):
        bad_token.list()


def test_trainq_runs_appear_in_the_ray_dashboard_train_api(serve) -> None:
    """Ray Train's state tracking is on for trainq's runs, so the dashboard lists them by run name."""
    ui = httpx.get(f"{serve}/api/ui/config").json()
    assert ui["token_required"] is True and ui["ray_dashboard_url"]
    with httpx.Client(base_url=serve, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        jobs = http.get("/api/training/jobs", params=[("status", "completed"), ("status", "cancelled")]).json()["jobs"]
        assert jobs, "the tests above run a job first"
        names = {a["run_name"] for a in http.get(f"/api/training/jobs/{jobs[0]['job_id']}/history").json()["attempts"]}
        assert names
    # Ray 2.60 turns on token auth for local clusters; its own HTTP clients send these headers.
    from ray._private.authentication.http_token_authentication import get_auth_headers_if_auth_enabled

    r = httpx.get(f"{ui['ray_dashboard_url']}/api/train/v2/runs/v1", timeout=30,
                  headers=get_auth_headers_if_auth_enabled({}))
    assert r.status_code == 200, r.text
    runs = r.json()["train_runs"]
    assert names <= {run["name"] for run in runs}
    assert all(run["status"] for run in runs if run["name"] in names)
