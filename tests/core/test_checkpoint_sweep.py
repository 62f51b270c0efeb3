"""The start-up sweep without Ray: checkpoints recorded as deleted that are still on storage (the
process died between the record and the deletion) are removed, and nothing else ever is."""

from __future__ import annotations

import asyncio
import os

from fakes import FakeCheckpointFS, FakeClock, FakeCluster, FakeLauncher, RunnerSim
from helpers import spec
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.checkpoint_fs import BackgroundDeletes, StorageFS, SweepOutcome, sweep_leftovers
from scheduler.core.checkpoints import SWEEP_KEY, leftover_paths


class CrashBeforeDelete(FakeCheckpointFS):
    """Storage of a scheduler that died right after recording each deletion: nothing is removed."""

    def delete(self, path: str) -> None:
        pass


class FailingOnce(FakeCheckpointFS):
    """Storage that refuses to remove ``bad`` the first time it is asked."""

    def __init__(self, bad: str) -> None:
        super().__init__()
        self.bad, self.refused = bad, 0

    def delete(self, path: str) -> None:
        if path == self.bad and not self.refused:
            self.refused += 1
            raise PermissionError(f"refused {path}")
        super().delete(path)


def _reporter(core, job_id: str):
    """The job's first attempt as its runner: ``report(names)`` reports a checkpoint per name and
    returns their paths."""
    root = core.job_root(core.store.get_job(job_id))
    sim = RunnerSim(core, job_id, 1)
    sim.started()

    def report(names: list[str]) -> list[str]:
        paths = [f"{root}/attempt-1/checkpoint_{name}" for name in names]
        for path in paths:
            sim.report(sim.seq, checkpoint=path, read_checkpoint=True)
        return paths

    return report


def _crashed_registry(make_core, clock: FakeClock) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """A first scheduler records retention's deletions and dies before removing any folder.

    Returns the paths recorded as deleted and those kept (a pinned one among them), per job.
    """
    core = make_core(FakeCluster({"CPU": 4}), FakeLauncher(), clock=clock, checkpoint_fs=CrashBeforeDelete())
    keep1 = core.submit(spec(keep_checkpoints=1))["job_id"]
    all_kept = core.submit(spec(keep_checkpoints=None))["job_id"]
    pinned_job = core.submit(spec(keep_checkpoints=1))["job_id"]
    a = _reporter(core, keep1)(["0", "1", "2"])
    b = _reporter(core, all_kept)(["0", "1"])
    report_c = _reporter(core, pinned_job)
    c = report_c(["0"])
    core.pin_checkpoint(pinned_job, c[0])
    c += report_c(["1", "2"])
    deleted = {keep1: a[:2], pinned_job: [c[1]]}
    kept = {keep1: a[2:], all_kept: b, pinned_job: [c[0], c[2]]}
    for job_id, paths in deleted.items():  # what the registry says is what the test expects
        assert {ck["path"] for ck in core.checkpoints(job_id) if ck["state"] == "deleted"} == set(paths)
    return deleted, kept


def _sweep(core, fs, page_jobs: int = 500) -> SweepOutcome:
    outcome = asyncio.run(sweep_leftovers(core.checkpointing, fs, page_jobs=page_jobs))
    assert outcome is not None
    return outcome


def test_the_sweep_removes_what_was_recorded_deleted_and_nothing_else(make_core) -> None:
    clock = FakeClock()
    deleted, kept = _crashed_registry(make_core, clock)
    clock.advance(60)
    fs = FakeCheckpointFS(size_of=700)  # the restarted scheduler: every folder is still there
    core = make_core(FakeCluster({"CPU": 4}), FakeLauncher(), clock=clock, checkpoint_fs=fs)
    events: list[dict] = []
    core.listeners.append(events.append)

    outcome = _sweep(core, fs, page_jobs=2)  # two pages of jobs: paging loses none

    doomed = sorted(p for paths in deleted.values() for p in paths)
    assert sorted(fs.deleted) == doomed
    assert not set(fs.deleted) & {p for paths in kept.values() for p in paths}
    assert outcome == SweepOutcome(checked=3, removed=tuple(outcome.removed), bytes_freed=3 * 700, failed=())
    assert sorted(outcome.removed) == doomed
    swept = {e["job_id"]: sorted(e["paths"]) for e in events if e["type"] == "checkpoints_swept"}
    assert swept == {job_id: sorted(paths) for job_id, paths in deleted.items()}
    assert core.store.get_meta(SWEEP_KEY)["removed"] == 3
    for job_id, paths in kept.items():  # the listing still offers every kept checkpoint
        assert {ck["path"] for ck in core.checkpoints(job_id) if ck["state"] != "deleted"} == set(paths)


def test_the_next_start_looks_only_at_deletions_since_the_last_sweep(make_core) -> None:
    clock = FakeClock()
    _crashed_registry(make_core, clock)
    clock.advance(60)
    fs = FakeCheckpointFS()
    core = make_core(FakeCluster({"CPU": 4}), FakeLauncher(), clock=clock, checkpoint_fs=fs)
    assert _sweep(core, fs).checked == 3
    clock.advance(60)
    again = _sweep(core, FakeCheckpointFS())  # even were the folders back, those were checked
    assert again == SweepOutcome() and core.store.get_meta(SWEEP_KEY)["checked"] == 0


def test_a_folder_already_gone_is_checked_but_not_counted(make_core) -> None:
    clock = FakeClock()
    deleted, _ = _crashed_registry(make_core, clock)
    fs = FakeCheckpointFS()
    gone = next(iter(deleted.values()))[0]
    fs.missing.add(gone)
    core = make_core(FakeCluster({"CPU": 4}), FakeLauncher(), clock=clock, checkpoint_fs=fs)
    outcome = _sweep(core, fs)
    assert outcome.checked == 3 and len(outcome.removed) == 2 and gone not in outcome.removed
    assert gone not in fs.deleted


def test_a_folder_that_cannot_be_removed_is_tried_again_at_the_next_start(make_core) -> None:
    clock = FakeClock()
    deleted, _ = _crashed_registry(make_core, clock)
    bad = next(iter(deleted.values()))[0]
    fs = FailingOnce(bad)
    clock.advance(60)
    core = make_core(FakeCluster({"CPU": 4}), FakeLauncher(), clock=clock, checkpoint_fs=fs)
    first = _sweep(core, fs)
    assert first.failed == (bad,) and len(first.removed) == 2 and bad not in fs.deleted
    clock.advance(60)
    second = _sweep(core, fs)
    assert second.removed == (bad,) and second.failed == () and bad in fs.deleted


# -- which records the sweep may touch (pure) ---------------------------------------------------------
def _record(path: str, deleted_at: float | None) -> dict:
    return {"path": path, "deleted_at": deleted_at}


def test_leftover_paths_skip_kept_folders_their_parents_children_and_outsiders() -> None:
    records = [_record("/s/j/a", None), _record("/s/j/a/inner", 5.0), _record("/s/j", 5.0),
               _record("/etc/passwd", 5.0), _record("/s/j/../k/x", 5.0), _record("/s/j/b", 5.0),
               _record("/s/j/old", 1.0), _record("/s/j/ab", 5.0)]
    assert [f.path for f in leftover_paths("j", records, "/s/j", since=2.0)] == ["/s/j/b", "/s/j/ab"]
    assert [f.path for f in leftover_paths("j", records, "/s/j", since=None)] == ["/s/j/b", "/s/j/old", "/s/j/ab"]
    uri = [_record("s3://b/s/j/a", None), _record("s3://b/s/j/b", 5.0), _record("s3://b/s/k/c", 5.0)]
    assert [f.path for f in leftover_paths("j", uri, "s3://b/s/j", since=None)] == ["s3://b/s/j/b"]


names = st.lists(st.sampled_from(["a", "b", "a/x", "b/y", "c", ""]), min_size=1, max_size=4).map("/".join)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(names, st.one_of(st.none(), st.floats(0, 10))), max_size=10),
       st.one_of(st.none(), st.floats(0, 10)))
def test_leftover_paths_never_name_a_kept_checkpoint(entries, since) -> None:
    records = [_record(f"/s/j/{name}", deleted_at) for name, deleted_at in entries]
    found = leftover_paths("j", records, "/s/j", since)
    kept = {os.path.normpath(r["path"]) for r in records if r["deleted_at"] is None}
    for f in found:
        assert any(r["path"] == f.path and r["deleted_at"] is not None for r in records)
        assert since is None or f.deleted_at >= since
        mine = os.path.normpath(f.path)
        assert all(k != mine and not k.startswith(mine + "/") and not mine.startswith(k + "/") for k in kept)


# -- real folders ------------------------------------------------------------------------------------
class CrashingStorage(StorageFS):
    """The real local storage of a scheduler that died before each deletion."""

    def delete(self, path: str) -> None:
        pass


def test_the_sweep_on_real_folders(make_core, tmp_path) -> None:
    storage = tmp_path / "storage"
    clock = FakeClock()
    core = make_core(FakeCluster({"CPU": 4}), FakeLauncher(), clock=clock, checkpoint_fs=CrashingStorage())
    job_id = core.submit(spec(keep_checkpoints=2))["job_id"]
    root = core.job_root(core.store.get_job(job_id))
    assert root.startswith(str(storage))
    sim = RunnerSim(core, job_id, 1)
    sim.started()
    paths = []
    for step in range(4):
        path = f"{root}/attempt-1/checkpoint_{step:03d}"
        os.makedirs(f"{path}/model")
        with open(f"{path}/model/weights.bin", "wb") as f:
            f.write(b"w" * (100 + step))
        paths.append(path)
        sim.report(step, checkpoint=path, read_checkpoint=True)
    os.makedirs(f"{root}/attempt-1/logs")  # something trainq never recorded: never touched
    assert [ck["state"] for ck in core.checkpoints(job_id)] == ["kept", "kept", "deleted", "deleted"]
    assert all(os.path.isdir(p) for p in paths)  # the crash: recorded, not removed

    clock.advance(60)
    fs = BackgroundDeletes(StorageFS())
    restarted = make_core(FakeCluster({"CPU": 4}), FakeLauncher(), clock=clock, checkpoint_fs=fs)
    outcome = _sweep(restarted, fs)
    assert sorted(outcome.removed) == paths[:2] and outcome.bytes_freed == 100 + 101
    assert [os.path.isdir(p) for p in paths] == [False, False, True, True]
    assert os.path.isdir(f"{root}/attempt-1/logs")
    with open(f"{paths[3]}/model/weights.bin", "rb") as f:
        assert f.read() == b"w" * 103
