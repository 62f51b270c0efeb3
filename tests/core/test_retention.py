"""Checkpoint retention without Ray: the pure choice, the core applying it, resume refusing what is gone."""

from __future__ import annotations

import sqlite3

import pytest
from fakes import FakeCheckpointFS, FakeCluster, FakeLauncher, RunnerSim
from helpers import spec
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.checkpoint_fs import BackgroundDeletes, StorageFS
from scheduler.config import Settings
from scheduler.errors import CheckpointMissing, CheckpointRefused
from scheduler.policy.retention import Stored, choose_deletions, protected_paths
from scheduler.store import MIGRATIONS, SCHEMA_VERSION, SQLiteStore


def stored(n: int, **kw) -> list[Stored]:
    """c<n-1> ... c0: newest first, as the store lists them."""
    return [Stored(f"c{i}", attempt=1 + i // 3, **kw) for i in reversed(range(n))]


# -- the pure choice -------------------------------------------------------------------------------
def test_keeps_the_newest_and_deletes_the_rest() -> None:
    assert choose_deletions(stored(5), 2, set()) == ["c2", "c1", "c0"]
    assert choose_deletions(stored(2), 2, set()) == []
    assert choose_deletions(stored(5), None, set()) == []


def test_pinned_and_protected_are_kept_in_addition_to_the_newest() -> None:
    cks = stored(5)
    cks[3] = Stored("c1", 1, pinned=True)
    assert choose_deletions(cks, 2, {"c0"}) == ["c2"]


def test_deleted_ones_are_not_counted_nor_chosen_again() -> None:
    cks = [Stored("c4", 2, deleted=True), *stored(4)]
    assert choose_deletions(cks, 2, set()) == ["c1", "c0"]


def test_protected_paths_depend_on_the_state() -> None:
    assert protected_paths("paused", "latest", "older") == {"latest"}
    assert protected_paths("running", "latest", "older") == {"latest", "older"}
    assert protected_paths("queued", None, "older") == {"older"}
    assert protected_paths("completed", "final", None) == {"final"}


checkpoint_lists = st.lists(st.tuples(st.booleans(), st.booleans()), max_size=12).map(
    lambda flags: [Stored(f"c{i}", 1, pinned=p, deleted=d) for i, (p, d) in enumerate(flags)])


@settings(max_examples=300, deadline=None)
@given(checkpoint_lists, st.one_of(st.none(), st.integers(0, 6)), st.sets(st.integers(0, 11)))
def test_retention_properties(cks: list[Stored], keep: int | None, protected_ix: set[int]) -> None:
    protected = {f"c{i}" for i in protected_ix}
    doomed = choose_deletions(cks, keep, protected)
    by_path = {c.path: c for c in cks}
    live = [c for c in cks if not c.deleted]
    assert len(doomed) == len(set(doomed))
    for path in doomed:  # never deletes a pinned, protected or already deleted checkpoint
        assert not by_path[path].pinned and path not in protected and not by_path[path].deleted
    if keep is None:
        assert doomed == []
        return
    newest = {c.path for c in live[:keep]}
    assert not newest & set(doomed)  # the keep newest always stay
    left = [c for c in live if c.path not in doomed]
    unguarded_left = [c for c in left if not c.pinned and c.path not in protected]
    assert {c.path for c in unguarded_left} <= newest  # everything else unguarded is deleted
    assert len(left) == min(keep, len(live)) + len([c for c in live[keep:] if c.pinned or c.path in protected])
    again = [Stored(c.path, c.attempt, c.pinned, c.deleted or c.path in doomed) for c in cks]
    assert choose_deletions(again, keep, protected) == []  # applying it once is enough


# -- the core applies it ----------------------------------------------------------------------------
def _core(make_core, fs=None, keep_setting: int | None = 3):
    fs = fs or FakeCheckpointFS()
    core = make_core(FakeCluster({"CPU": 2}), FakeLauncher(), checkpoint_fs=fs,
                     settings=Settings(keep_checkpoints=keep_setting))
    return core, fs


def _attempt(core, job_id: str):
    """The job's current attempt as a runner would drive it: ``checkpoints(steps)`` reports a
    checkpoint per step and returns their paths."""
    job = core.get(job_id)
    sim = RunnerSim(core, job_id, job["attempt"])
    sim.started()
    root = core.job_root(core.store.get_job(job_id))

    def checkpoints(steps: range) -> list[str]:
        paths = [f"{root}/attempt-{job['attempt']}/checkpoint_{step:03d}" for step in steps]
        for step, path in zip(steps, paths):
            sim.report(step, checkpoint=path, read_checkpoint=True)
        return paths

    return checkpoints


def test_the_setting_is_the_default_and_null_keeps_all(make_core) -> None:
    core, _ = _core(make_core, keep_setting=4)
    assert core.submit(spec())["spec"]["keep_checkpoints"] == 4
    assert core.submit(spec(keep_checkpoints=None))["spec"]["keep_checkpoints"] is None
    assert core.submit(spec(keep_checkpoints=2))["spec"]["keep_checkpoints"] == 2


def test_retention_counts_across_attempts_and_keeps_the_resume_point(make_core) -> None:
    core, fs = _core(make_core)
    job_id = core.submit(spec(keep_checkpoints=2))["job_id"]
    first = _attempt(core, job_id)(range(3))
    assert fs.deleted == [first[0]]  # the third checkpoint pushed the first out
    core.pause(job_id)
    RunnerSim(core, job_id, 1).exit("paused")
    assert core.get(job_id)["status"] == "paused"
    core.resume(job_id, checkpoint_path=first[1])  # the older of the two kept
    second = _attempt(core, job_id)(range(2, 5))
    # attempt 2 made three: the two newest stay, and first[1] stays while attempt 2 may still need it
    states = {c["path"]: c["state"] for c in core.checkpoints(job_id)}
    assert states == {second[2]: "kept", second[1]: "kept", second[0]: "deleted", first[2]: "deleted",
                      first[1]: "kept", first[0]: "deleted"}
    RunnerSim(core, job_id, 2).exit("completed", checkpoint=second[2])
    assert core.get(job_id)["status"] == "completed"
    states = {c["path"]: c["state"] for c in core.checkpoints(job_id)}
    assert [p for p, s in states.items() if s != "deleted"] == [second[2], second[1]]
    assert sorted(fs.deleted) == sorted([first[0], first[2], second[0], first[1]])
    assert core.get(job_id)["checkpoint_bytes"] == 2 * fs.size_of


def test_pinning_keeps_a_checkpoint_and_unpinning_lets_the_rule_delete_it(make_core) -> None:
    core, fs = _core(make_core)
    job_id = core.submit(spec(keep_checkpoints=1))["job_id"]
    checkpoints = _attempt(core, job_id)
    paths = checkpoints(range(1))
    pinned = core.pin_checkpoint(job_id, paths[0])
    assert pinned["state"] == "pinned" and pinned["pinned"] is True
    paths += checkpoints(range(1, 3))
    assert {c["path"]: c["state"] for c in core.checkpoints(job_id)} == {
        paths[2]: "kept", paths[1]: "deleted", paths[0]: "pinned"}
    unpinned = core.pin_checkpoint(job_id, paths[0], pinned=False)
    assert unpinned["state"] == "deleted" and fs.deleted == [paths[1], paths[0]]
    with pytest.raises(CheckpointRefused, match="deleted"):
        core.pin_checkpoint(job_id, paths[0])
    with pytest.raises(CheckpointRefused, match="never recorded"):
        core.pin_checkpoint(job_id, paths[0] + "x")
    with pytest.raises(CheckpointRefused, match="outside"):
        core.pin_checkpoint(job_id, "/etc")


def _paused_with(core, fs, keep=None) -> tuple[str, list[str]]:
    job_id = core.submit(spec(keep_checkpoints=keep))["job_id"]
    paths = _attempt(core, job_id)(range(3))
    core.pause(job_id)
    RunnerSim(core, job_id, 1).exit("paused")
    return job_id, paths


def test_resume_refuses_a_named_checkpoint_that_is_gone_and_changes_nothing(make_core) -> None:
    core, fs = _core(make_core)
    job_id, paths = _paused_with(core, fs)
    fs.missing.add(paths[1])
    before = core.get(job_id)
    with pytest.raises(CheckpointMissing) as err:
        core.resume(job_id, checkpoint_path=paths[1])
    assert err.value.code == "conflict"
    assert err.value.fields["checkpoint_path"] == paths[1] and err.value.fields["newest_existing"] == paths[2]
    assert paths[1] in err.value.message and paths[2] in err.value.message
    assert core.get(job_id) == before


def test_plain_resume_falls_back_to_the_newest_existing_checkpoint(make_core) -> None:
    core, fs = _core(make_core)
    job_id, paths = _paused_with(core, fs)
    fs.missing.add(paths[2])
    result = core.resume(job_id)
    assert result["checkpoint_path"] == paths[1] and result["status"] in ("queued", "pending")
    assert paths[2] in result["message"] and f"resumes from {paths[1]}" in result["message"]
    assert core.store.get_job(job_id).resume_from == paths[1]


def test_resume_refuses_when_no_checkpoint_exists_and_a_deleted_one_is_never_offered(make_core) -> None:
    core, fs = _core(make_core)
    job_id, paths = _paused_with(core, fs, keep=2)
    assert fs.deleted == [paths[0]]
    with pytest.raises(CheckpointMissing, match="deleted it at"):
        core.resume(job_id, checkpoint_path=paths[0])
    fs.missing.update(paths)
    with pytest.raises(CheckpointMissing, match="no recorded checkpoint of this job still exists") as err:
        core.resume(job_id)
    assert err.value.fields["newest_existing"] is None
    assert core.get(job_id)["status"] == "paused"


# -- storage and schema ----------------------------------------------------------------------------
def test_storage_fs_on_a_local_folder(tmp_path) -> None:
    ck = tmp_path / "checkpoint_1"
    (ck / "sub").mkdir(parents=True)
    (ck / "state.json").write_text("x" * 10)
    (ck / "sub" / "w.bin").write_bytes(b"y" * 90)
    fs = StorageFS()
    assert fs.complete(str(ck)) and fs.size(str(ck)) == 100
    (tmp_path / "empty").mkdir()
    assert not fs.complete(str(tmp_path / "empty")) and not fs.complete(str(tmp_path / "nope"))
    background = BackgroundDeletes(fs)
    background.delete(str(ck))
    background.delete(str(tmp_path / "nope"))  # already gone: fine
    background.drain(10)
    assert not ck.exists() and fs.size(str(ck)) is None


def test_storage_fs_through_pyarrow_uris(tmp_path) -> None:
    ck = tmp_path / "checkpoint_2"
    ck.mkdir()
    (ck / "a").write_bytes(b"z" * 42)
    fs, uri = StorageFS(), f"file://{ck}"
    assert fs.complete(uri) and fs.size(uri) == 42
    fs.delete(uri)
    fs.delete(uri)
    assert not ck.exists() and not fs.complete(uri)


def test_migration_from_version_2_keeps_checkpoints_as_kept(tmp_path) -> None:
    db = sqlite3.connect(tmp_path / "old.db", isolation_level=None)
    for script in MIGRATIONS[:2]:
        db.executescript(script)
    db.execute("PRAGMA user_version=2")
    db.execute("INSERT INTO jobs (job_id, seq, name, status, priority, spec, created_at, updated_at)"
               " VALUES ('j', 1, 'n', 'paused', 0, '{}', 0, 0)")
    db.execute("INSERT INTO checkpoints (job_id, attempt, path, metrics, at) VALUES ('j', 1, '/c', '{}', 0)")
    db.close()
    store = SQLiteStore(str(tmp_path / "old.db"))
    assert store.schema_version == SCHEMA_VERSION
    assert store.checkpoints("j") == [{"job_id": "j", "attempt": 1, "path": "/c", "metrics": {}, "at": 0.0,
                                       "pinned": False, "deleted_at": None, "bytes": None}]
    assert store.update_checkpoint("j", "/c", {"bytes": 7}) and store.checkpoint_bytes("j") == 7
    assert not store.update_checkpoint("j", "/other", {"bytes": 7})
    store.close()


# -- over HTTP -------------------------------------------------------------------------------------
def test_http_pin_unpin_states_bytes_and_the_409(make_core, tmp_path) -> None:
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.backend import ServiceBackend
    from scheduler.service import SchedulerService

    core, fs = _core(make_core, keep_setting=2)
    service = SchedulerService(core, Settings(storage_root=str(tmp_path / "storage"), db_path=":memory:"))
    with TestClient(create_app(ServiceBackend(service), token=None)) as http:
        left_out = http.post("/api/training/jobs", json=spec()).json()
        assert left_out["spec"]["keep_checkpoints"] == 2  # the setting, not "keep all"
        keep_all = http.post("/api/training/jobs", json=spec(keep_checkpoints=None)).json()
        assert keep_all["spec"]["keep_checkpoints"] is None
        assert http.post("/api/training/jobs", json=spec(keep_checkpoints=0)).json()["field"] == "keep_checkpoints"
        job_id = left_out["job_id"]
        paths = _attempt(core, job_id)(range(2))
        r = http.post(f"/api/training/jobs/{job_id}/checkpoints/pin", params={"path": paths[0]})
        assert r.status_code == 200 and r.json()["state"] == "pinned"
        assert http.post(f"/api/training/jobs/{job_id}/checkpoints/pin", params={"path": "/etc"}).status_code == 409
        http.post(f"/api/training/cancel/{job_id}")
        cks = http.get(f"/api/training/jobs/{job_id}/checkpoints").json()
        assert [(c["state"], c["bytes"]) for c in cks] == [("kept", fs.size_of), ("pinned", fs.size_of)]
        assert http.get(f"/api/training/jobs/{job_id}").json()["checkpoint_bytes"] == 2 * fs.size_of
        r = http.post(f"/api/training/jobs/{job_id}/checkpoints/unpin", params={"path": paths[0]})
        assert r.status_code == 200 and r.json()["state"] == "kept"  # still one of the two newest
        fs.missing.add(paths[1])
        r = http.post(f"/api/training/resume/{job_id}", params={"checkpoint_path": paths[1]})
        body = r.json()
        assert r.status_code == 409 and body["error"] == "conflict"
        assert body["checkpoint_path"] == paths[1] and body["newest_existing"] == paths[0]
        assert http.get(f"/api/training/jobs/{job_id}").json()["status"] == "cancelled"


def test_cli_checkpoints_pins_unpins_and_shows_state_and_size(capsys) -> None:
    from scheduler import cli
    from scheduler.cli.commands import cmd_checkpoints

    calls = []

    class FakeApi:
        def pin_checkpoint(self, job_id, path, pinned=True):
            calls.append(("pin" if pinned else "unpin", job_id, path))
            return {"path": path, "state": "pinned" if pinned else "kept"}

        def checkpoints(self, job_id):
            calls.append(("list", job_id, None))
            return [{"at": "2026-01-01T00:00:00.000Z", "attempt": 1, "state": "deleted", "bytes": 2048,
                     "metrics": {"step": 3}, "path": "/s/j/attempt-1/checkpoint_a"}]

    parser = cli.build_parser()
    assert cmd_checkpoints(FakeApi(), parser.parse_args(["checkpoints", "job_1", "--pin", "/s/ck"])) == 0
    assert cmd_checkpoints(FakeApi(), parser.parse_args(["checkpoints", "job_1", "--unpin", "/s/ck"])) == 0
    assert cmd_checkpoints(FakeApi(), parser.parse_args(["checkpoints", "job_1"])) == 0
    assert calls == [("pin", "job_1", "/s/ck"), ("unpin", "job_1", "/s/ck"), ("list", "job_1", None)]
    out = capsys.readouterr().out
    assert "/s/ck is pinned" in out and "/s/ck is kept" in out
    assert "STATE" in out.upper() and "deleted" in out and "2.0 KB" in out
    with pytest.raises(SystemExit):
        parser.parse_args(["checkpoints", "job_1", "--pin", "a", "--unpin", "b"])
