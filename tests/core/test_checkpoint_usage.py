"""Checkpoint bytes held on storage in the usage report, over HTTP and in ``trainq usage`` (no Ray)."""

from __future__ import annotations

from fakes import FakeCheckpointFS, FakeClock, FakeCluster, FakeLauncher, RunnerSim
from helpers import spec

from scheduler.config import Settings


def _with_checkpoints(core, owner: str, keep: int | None, n: int, gone: bool = False) -> str:
    """A job of ``owner`` whose first attempt reported ``n`` checkpoints (and with ``gone``, one more
    whose folder could not be measured when it was recorded)."""
    job_id = core.submit(spec(keep_checkpoints=keep), owner=owner)["job_id"]
    root = core.job_root(core.store.get_job(job_id))
    sim = RunnerSim(core, job_id, 1)
    sim.started()
    paths = [f"{root}/attempt-1/checkpoint_{step:03d}" for step in range(n)]
    if gone:
        core.ctx.checkpoint_fs.missing.add(f"{root}/attempt-1/checkpoint_gone")
        paths.append(f"{root}/attempt-1/checkpoint_gone")
    for step, path in enumerate(paths):
        sim.report(step, checkpoint=path, read_checkpoint=True)
    return job_id


def _core(make_core, fs: FakeCheckpointFS):
    clock = FakeClock()
    core = make_core(FakeCluster({"CPU": 8}), FakeLauncher(), clock=clock, checkpoint_fs=fs,
                     settings=Settings(keep_checkpoints=None))
    return core, clock


def test_usage_counts_the_checkpoint_bytes_each_user_and_job_holds(make_core) -> None:
    fs = FakeCheckpointFS(size_of=1000)
    core, clock = _core(make_core, fs)
    a = _with_checkpoints(core, "alice", keep=2, n=3)  # one deleted by retention: 2 held
    b = _with_checkpoints(core, "bob", keep=None, n=1, gone=True)
    c = _with_checkpoints(core, "bob", keep=None, n=0)  # ran, saved nothing
    assert [ck["bytes"] for ck in core.checkpoints(b)] == [None, 1000]
    clock.advance(60)

    by_user = core.usage("user")
    assert {r["user"]: r["checkpoint_bytes"] for r in by_user["rows"]} == {"alice": 2000, "bob": 1000}
    assert by_user["checkpoint_bytes"] == 3000  # the unmeasurable one counts nothing, not a guess
    by_job = core.usage("job")
    assert {r["job_id"]: r["checkpoint_bytes"] for r in by_job["rows"]} == {a: 2000, b: 1000, c: 0}
    assert by_job["checkpoint_bytes"] == 3000

    for job_id in (a, b, c):
        RunnerSim(core, job_id, 1).exit("completed")
    clock.advance(60)
    assert core.usage("user")["checkpoint_bytes"] == 3000  # a finished job's checkpoints stay held
    later = core.usage("user", since=clock() - 1)  # nobody ran since: no rows, nothing counted
    assert later["rows"] == [] and later["checkpoint_bytes"] == 0


def test_usage_over_http_passes_the_bytes_through(make_core, tmp_path) -> None:
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.backend import ServiceBackend
    from scheduler.service import SchedulerService

    core, _ = _core(make_core, FakeCheckpointFS(size_of=1500))
    service = SchedulerService(core, Settings(storage_root=str(tmp_path / "storage"), db_path=":memory:"))
    _with_checkpoints(core, "carol", keep=None, n=2)
    with TestClient(create_app(ServiceBackend(service), token=None)) as http:
        body = http.get("/api/usage").json()
        assert body["checkpoint_bytes"] == 3000 and body["rows"][0]["checkpoint_bytes"] == 3000
        assert http.get("/api/usage", params={"by": "job"}).json()["rows"][0]["checkpoint_bytes"] == 3000
        schema = http.get("/openapi.json").json()["components"]["schemas"]
        assert "checkpoint_bytes" in schema["Usage"]["properties"] and "checkpoint_bytes" in schema["UsageRow"][
            "properties"]


def test_cli_usage_shows_checkpoint_bytes_in_human_units(capsys) -> None:
    from scheduler import cli
    from scheduler.cli.commands import cmd_usage

    gib = 1024 ** 3

    class FakeApi:
        def usage(self, by, since):
            rows = [{"user": "alice", "jobs": 2, "attempts": 3, "gpu_hours": 1.0, "cpu_hours": 2.0,
                     "lost_work_s": 0.0, "preemptions": 0, "fair_share_usage": 0.5,
                     "checkpoint_bytes": int(1.2 * gib)},
                    {"user": "bob", "jobs": 1, "attempts": 1, "gpu_hours": 0.0, "cpu_hours": 1.0,
                     "lost_work_s": 0.0, "preemptions": 0, "fair_share_usage": 0.1, "checkpoint_bytes": 1536}]
            if by == "job":
                rows = [{**r, "job_id": f"job_{r['user']}", "name": "n"} for r in rows]
            return {"by": by, "since": None, "until": "2026-12-01T00:00:00Z", "rows": rows,
                    "checkpoint_bytes": int(1.2 * gib) + 1536}

    parser = cli.build_parser()
    assert cmd_usage(FakeApi(), parser.parse_args(["usage"])) == 0
    out = capsys.readouterr().out
    assert "CHECKPOINTS" in out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith(("alice", "bob"))}
    assert "1.2 GB" in lines["alice"] and "1.5 KB" in lines["bob"]
    assert "checkpoints on storage: 1.2 GB" in out
    assert cmd_usage(FakeApi(), parser.parse_args(["usage", "--by", "job"])) == 0
    assert "1.5 KB" in capsys.readouterr().out
    assert cmd_usage(FakeApi(), parser.parse_args(["--json", "usage"])) == 0
    assert '"checkpoint_bytes": 1288490188' in capsys.readouterr().out


def test_cli_usage_with_nothing_run_still_says_what_is_held(capsys) -> None:
    from scheduler import cli
    from scheduler.cli.commands import cmd_usage

    class FakeApi:
        def usage(self, by, since):
            return {"by": by, "since": "2026-11-01T00:00:00Z", "until": "2026-12-01T00:00:00Z", "rows": [],
                    "checkpoint_bytes": 0}

    assert cmd_usage(FakeApi(), cli.build_parser().parse_args(["usage", "--since", "2026-11-01"])) == 0
    out = capsys.readouterr().out
    assert "nothing ran" in out and "checkpoints on storage: 0 B" in out
