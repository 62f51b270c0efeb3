"""End to end on a real local Ray (2 CPUs) with real Ray Train runs: the core and pause/resume.

Each job counts steps and logs each one it executes, so the tests can see exactly which
steps ran, which ran twice and where each attempt started.
"""

from __future__ import annotations

import asyncio
import itertools
import threading

import pytest
import ray
from helpers import wait_until

from scheduler.config import NAMESPACE, RUNNER_HOST_NAME, SCHEDULER_NAME, runner_name
from scheduler.errors import CheckpointRefused, DoesNotFit, IllegalTransition, InvalidSpec
from scheduler.states import JobStatus, allowed

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _legal_history(client, job_id: str) -> list:
    history = client.history(job_id)["transitions"]
    for before, after in itertools.pairwise(history):
        assert before["to_status"] == after["from_status"]
        assert allowed(JobStatus(after["from_status"]), JobStatus(after["to_status"])), after
    return history


def _entered(history: list, status: str) -> list[str]:
    return [t["at"] for t in history if t["to_status"] == status]


def _wait_for(predicate, timeout_s: float = 120, what: str = "condition"):
    return wait_until(predicate, timeout_s, what, poll_s=0.1)


def _step_of_checkpoint(client, job_id: str, path: str) -> int:
    return next(c["metrics"]["step"] for c in client.checkpoints(job_id) if c["path"] == path)


def test_whole_cluster_jobs_run_one_at_a_time_in_priority_then_fifo_order(tq) -> None:
    c = tq.c
    a = tq.submit(tq.steps_spec("a", total=3, step_s=0.5, num_workers=2))
    b = tq.submit(tq.steps_spec("b", total=2, step_s=0.01, num_workers=2))
    d = tq.submit(tq.steps_spec("d", total=2, step_s=0.01, num_workers=2))
    cc = tq.submit(tq.steps_spec("c", total=2, step_s=0.01, num_workers=2, priority=5))
    assert a["status"] == "pending"
    assert [j["job_id"] for j in c.queue()] == [cc["job_id"], b["job_id"], d["job_id"]]
    assert [c.get(j["job_id"])["queue_position"] for j in (cc, b, d)] == [1, 2, 3]
    paused = c.pause(d["job_id"])
    assert (paused["previous_status"], paused["status"]) == ("queued", "paused")
    assert c.get(b["job_id"])["queue_position"] == 2 and c.get(d["job_id"])["queue_position"] is None

    order = [a, cc, b]
    for job in order:
        assert c.wait(job["job_id"], timeout_s=180)["status"] == "completed"
    histories = [_legal_history(c, j["job_id"]) for j in order]
    for earlier, later in itertools.pairwise(histories):
        assert _entered(later, "pending")[0] >= _entered(earlier, "completed")[0]  # one at a time
    assert c.get(d["job_id"])["status"] == "paused"
    assert tq.steps_run("c") == [0, 1]


def test_failed_job_keeps_its_message_and_resumes_from_an_older_checkpoint(tq, tmp_path) -> None:
    c = tq.c
    job = tq.submit(tq.steps_spec("f", total=8, every=2, step_s=0.05, fail_at=5,
                                  fail_once=str(tmp_path / "failed-once")))
    failed = c.wait(job["job_id"], timeout_s=120)
    assert failed["status"] == "failed"
    assert failed["error"].startswith("RuntimeError: boom at step 5")
    checkpoints = c.checkpoints(job["job_id"])
    assert [ck["metrics"]["step"] for ck in checkpoints] == [3, 1]  # newest first
    assert failed["lost_work"]["steps"] == 1 and failed["lost_work"]["reports"] == 1  # step 4

    with pytest.raises(CheckpointRefused, match="outside the job's storage"):
        c.resume(job["job_id"], checkpoint_path="/tmp")
    with pytest.raises(CheckpointRefused, match="never recorded"):
        c.resume(job["job_id"], checkpoint_path=checkpoints[0]["path"] + "_nope")
    assert c.get(job["job_id"])["status"] == "failed"

    older = checkpoints[1]["path"]
    resumed = c.resume(job["job_id"], checkpoint_path=older)
    assert resumed["previous_status"] == "failed" and resumed["checkpoint_path"] == older
    done = c.wait(job["job_id"], timeout_s=120)
    assert done["status"] == "completed" and done["attempt"] == 2 and done["warning"] is None
    assert tq.steps_run("f") == [0, 1, 2, 3, 4, 2, 3, 4, 5, 6, 7]  # attempt 2 starts at step 1 + 1


def test_pause_running_then_resume_redoes_only_steps_after_the_checkpoint(tq) -> None:
    c = tq.c
    total = 40
    job = tq.submit(tq.steps_spec("p", total=total, every=5, step_s=0.15, num_workers=2))
    job_id = job["job_id"]
    c.wait(job_id, "running", timeout_s=120)
    _wait_for(lambda: len(tq.steps_run("p")) >= 7, what="a few steps")
    result = c.pause(job_id)
    assert (result["previous_status"], result["status"]) == ("running", "pausing")
    requested_at = c.get(job_id)["pause_requested_at"]
    paused = c.wait(job_id, timeout_s=60)
    assert paused["status"] == "paused" and paused["paused_at"]
    # The checkpoint kept is the first one reported after the request.
    after_request = [ck for ck in c.checkpoints(job_id) if ck["at"] >= requested_at]
    assert paused["checkpoint_path"] == after_request[-1]["path"]
    ck_step = _step_of_checkpoint(c, job_id, paused["checkpoint_path"])
    stopped_at_step = max(tq.steps_run("p"))
    assert paused["lost_work"]["since_checkpoint"] == paused["checkpoint_path"]

    resumed = c.resume(job_id)
    assert resumed["checkpoint_path"] == paused["checkpoint_path"]
    assert c.wait(job_id, timeout_s=120)["status"] == "completed"
    steps = tq.steps_run("p")
    second_start = len(steps) - (total - ck_step - 1)
    assert steps[second_start] == ck_step + 1  # the next attempt starts right after the checkpoint
    assert sorted(set(steps)) == list(range(total))
    redone = sorted(s for s in set(steps) if steps.count(s) > 1)
    assert redone == list(range(ck_step + 1, stopped_at_step + 1))
    _legal_history(c, job_id)


@pytest.mark.parametrize("backend", ["none", "torch"])
def test_cooperative_pause_redoes_nothing(tq, backend) -> None:
    # The hook's messages travel through the runner's mailbox without a process group, and by an
    # asynchronous broadcast over a gloo group of its own with one (backend torch).
    c = tq.c
    total = 40
    spec = tq.steps_spec("coop", total=total, every=1000, step_s=0.15, num_workers=2, cooperative=True,
                         report_torch=True)
    job = tq.submit({**spec, "backend": backend})
    job_id = job["job_id"]
    c.wait(job_id, "running", timeout_s=120)
    _wait_for(lambda: len(tq.steps_run("coop")) >= 5, what="a few steps")
    c.pause(job_id)
    paused = c.wait(job_id, timeout_s=60)
    assert paused["status"] == "paused"
    ck_step = _step_of_checkpoint(c, job_id, paused["checkpoint_path"])
    assert max(tq.steps_run("coop")) == ck_step  # stopped right at its pause checkpoint
    c.resume(job_id)
    assert c.wait(job_id, timeout_s=120)["status"] == "completed"
    steps = tq.steps_run("coop")
    assert steps == list(range(total))  # every step once, none twice
    # backend "none": no torch process group, so nothing imported torch in the workers
    assert {r["metrics"]["torch_imported"] for r in c.reports(job_id)} == {backend == "torch"}


def test_pause_deadline_stops_the_run_at_its_last_checkpoint(tq) -> None:
    c = tq.c
    job = tq.submit(tq.steps_spec("dl", total=400, every=4, step_s=0.1))
    job_id = job["job_id"]
    c.wait(job_id, "running", timeout_s=120)
    _wait_for(lambda: c.checkpoints(job_id), what="a first checkpoint")
    host = ray.get_actor(RUNNER_HOST_NAME, namespace=NAMESPACE)
    name = runner_name(job_id, 1)
    # Pretend the function stopped checkpointing: swallow the pause request at the runner.
    ray.get(host.__ray_call__.remote(
        lambda self: setattr(self._runners[name], "request_pause", lambda: asyncio.sleep(0))))
    c.handle.pause.remote(job_id, 1.5)  # via the actor's own verb, with a deadline
    paused = c.wait(job_id, timeout_s=60)
    assert paused["status"] == "paused"
    assert paused["checkpoint_path"] == c.checkpoints(job_id)[0]["path"]
    assert paused["lost_work"]["seconds"] > 0
    reasons = [t["reason"] for t in c.history(job_id)["transitions"]]
    assert "pause deadline passed; stopped at the last recorded checkpoint" in reasons
    _wait_for(lambda: name not in ray.get(host.attempts.remote()), what="runner gone")


def test_cancel_running_frees_resources_and_the_next_job_starts(tq) -> None:
    c = tq.c
    long = tq.submit(tq.steps_spec("long", total=1000, step_s=0.1, num_workers=2))
    nxt = tq.submit(tq.steps_spec("next", total=2, step_s=0.01, num_workers=2))
    c.wait(long["job_id"], "running", timeout_s=120)
    assert c.get(nxt["job_id"])["status"] == "queued"
    cancelled = c.cancel(long["job_id"])
    assert cancelled["status"] == "cancelled"
    assert c.wait(nxt["job_id"], timeout_s=120)["status"] == "completed"
    host = ray.get_actor(RUNNER_HOST_NAME, namespace=NAMESPACE)
    _wait_for(lambda: runner_name(long["job_id"], 1) not in ray.get(host.attempts.remote()), what="runner gone")
    with pytest.raises(IllegalTransition, match="it is completed"):
        c.pause(nxt["job_id"])


def test_restart_while_pausing_still_pauses_and_resumes(tq) -> None:
    c = tq.c
    job = tq.submit(tq.steps_spec("rp", total=40, every=8, step_s=0.15))
    job_id = job["job_id"]
    c.wait(job_id, "running", timeout_s=120)
    _wait_for(lambda: len(tq.steps_run("rp")) >= 2, what="a few steps")
    c.pause(job_id)
    ray.kill(ray.get_actor(SCHEDULER_NAME, namespace=NAMESPACE), no_restart=False)
    paused = c.wait(job_id, timeout_s=120)
    assert paused["status"] == "paused" and paused["checkpoint_path"]
    c.resume(job_id)
    assert c.wait(job_id, timeout_s=120)["status"] == "completed"
    assert sorted(set(tq.steps_run("rp"))) == list(range(40))
    _legal_history(c, job_id)


def test_racing_verbs_never_leave_an_illegal_state(tq) -> None:
    c = tq.c
    job = tq.submit(tq.steps_spec("race", total=60, every=3, step_s=0.1))
    job_id = job["job_id"]
    c.wait(job_id, "running", timeout_s=120)
    errors: list[Exception] = []

    def hammer(verb: str) -> None:
        for _ in range(5):
            try:
                getattr(c, verb)(job_id)
            except (IllegalTransition, CheckpointRefused) as e:
                errors.append(e)

    threads = [threading.Thread(target=hammer, args=(v,)) for v in ("pause", "resume", "cancel", "pause")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(isinstance(e, IllegalTransition) for e in errors)
    _wait_for(lambda: c.get(job_id)["status"] in ("paused", "cancelled", "completed", "queued", "pending", "running"))
    c.cancel(job_id)
    _legal_history(c, job_id)


def test_refused_specs_store_nothing(tq) -> None:
    c = tq.c
    before = len(c.list())
    with pytest.raises(DoesNotFit, match="CPU=3"):
        c.submit(tq.steps_spec("huge", num_workers=3))
    with pytest.raises(InvalidSpec, match="num_workers"):
        c.submit({"entrypoint": "steps:count_steps", "num_workers": -1})
    with pytest.raises(InvalidSpec, match="unknown field"):
        c.submit({"entrypoint": "steps:count_steps", "gpus": 1})
    assert len(c.list()) == before


def test_an_entrypoint_that_cannot_be_imported_fails_clearly(tq) -> None:
    job = tq.submit({"entrypoint": "no_such_module:train"})
    failed = tq.c.wait(job["job_id"], timeout_s=60)
    assert failed["status"] == "failed"
    assert "cannot import module 'no_such_module'" in failed["error"]
