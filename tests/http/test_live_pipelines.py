"""The CLI and the HTTP client for dependencies, sweeps and the dry run, against a real uvicorn
server over a service with fakes (no Ray)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeCluster, FakeLauncher
from helpers import spec
from test_live_api import TOKEN, LiveServer, _cli

from scheduler.config import Settings
from scheduler.core.runner_events import Reported, Started
from scheduler.http import Client
from scheduler.service import SchedulerService


@pytest.fixture
def live(make_core, tmp_path) -> Iterator[LiveServer]:
    settings = Settings(storage_root=str(tmp_path / "storage"), db_path=str(tmp_path / "trainq.db"))
    with LiveServer(lambda: SchedulerService(make_core(FakeCluster({"CPU": 2}), FakeLauncher()), settings)) as server:
        yield server


@pytest.fixture
def api(live) -> Iterator[Client]:
    with Client(live.url, TOKEN) as c:
        yield c


def _report(live: LiveServer, job_id: str, loss: float) -> None:
    core = live.service.core
    live.on_loop(lambda: core.on_runner_event(Started(job_id, 1)))
    live.on_loop(lambda: core.on_runner_event(Reported(job_id, 1, 1, core.clock(), {"loss": loss}, None, None)))


def test_cli_sweep_ranks_by_its_metric_and_acts_on_all(live, api, capsys, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("TRAINQ_API_TOKEN", raising=False)
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(spec(name="lr", sweep={"parameters": {"lr": [1, 2, 3]}, "metric": "loss"})))
    code, out, _ = _cli(live, capsys, "submit", str(path), "--set", "total=5")
    assert code == 0 and "sweep sweep_" in out
    sweep_id = out.split("sweep ")[1].split(":")[0]
    members = api.sweep(sweep_id)["jobs"]
    assert all(m["spec"]["config"]["total"] == 5 for m in members)
    for m, loss in zip(members[:2], [0.7, 0.2], strict=True):  # 2 CPUs: the third waits, with no metric
        _report(live, m["job_id"], loss)
    code, out, _ = _cli(live, capsys, "sweep", sweep_id)
    rows = [line for line in out.splitlines() if line.startswith(f"{sweep_id}-")]
    assert code == 0 and [r.split()[0] for r in rows] == [f"{sweep_id}-1", f"{sweep_id}-0", f"{sweep_id}-2"]
    assert "best first by loss" in out
    code, out, _ = _cli(live, capsys, "sweep", sweep_id, "cancel")
    assert code == 0 and out.count("running -> cancelled") == 2 and out.count("queued -> cancelled") == 1


def test_cli_depends_on_and_dry_run(live, api, capsys, monkeypatch) -> None:
    monkeypatch.delenv("TRAINQ_API_TOKEN", raising=False)
    first = api.submit(spec(num_workers=2))["job_id"]
    code, out, _ = _cli(live, capsys, "submit", "--entrypoint", "steps:count_steps",
                        "--depends-on", f"{first}:finished")
    assert code == 0
    waiting = out.split()[1]
    code, out, _ = _cli(live, capsys, "status", waiting)
    assert f"{first} finished" in out and "dependency" in out
    count = api.list()["total"]
    code, out, _ = _cli(live, capsys, "submit", "--entrypoint", "steps:count_steps", "--dry-run")
    assert code == 0 and out.startswith("would wait: resources")
    answer: dict[str, Any] = api.submit(spec(priority=1), dry_run=True)
    assert answer["dry_run"] is True and answer["would_start"] is False
    assert api.list()["total"] == count
    code, _, err = _cli(live, capsys, "submit", "--entrypoint", "steps:count_steps", "--depends-on", "job_x",
                        "--dry-run")
    assert code != 0 and "depends_on" in err
