"""The core driven by random sequences of verbs (by two users with quotas; fixed, elastic and
dependent jobs and sweeps, of 1- or 2-CPU workers with each placement strategy), runner events,
losses, nodes lost and back, drains, shutdowns, ticks, reconciliations and restarts (hypothesis'
stateful testing), on two nodes of 2 CPUs and two accelerator types where a fake Ray places each
gang as it is launched (as ``policy.placement`` assumes Ray does), with invariants checked after
every step:

- every recorded transition is one the table allows (``states.TRANSITIONS``);
- what the core hands out never exceeds the nodes up, nor an owner's quota ``max``;
- every gang the core launches fits the nodes as Ray reports them (its strategy, per node, on a
  type it named), and an owner's quota for a type holds;
- a sweep never has more than its ``max_running`` members pending, running or pausing;
- an elastic job runs with between its ``min`` and ``max`` workers, a fixed one with its own;
- an active job has a runner alive, and no job has two runners alive unless the older was stopped;
- a job that waits for another starts only once that one's end meets its ``on``;
- every answer to a bad request is a ``TrainqError`` (never another exception);
- a restart over the same registry shows the same jobs (nothing acknowledged was only in memory);
- at the end, once the runners do as they are asked, every job ends or stays paused by its user
  (each round every runner starts and the clock moves before one ends, fixed-size jobs first: the
  queue drains and elastic jobs grow, so a job relaunched, paused or rotated out for ever shows).

Fakes for the launcher, the cluster and the clock (``tests/fakes.py``); a real SQLite registry.
"""

from __future__ import annotations

import itertools
import os

from fakes import FakeClock, FakeCluster, FakeLauncher, RunnerSim
from helpers import spec
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from scheduler.config import Settings
from scheduler.core import DrainNotice
from scheduler.errors import TrainqError
from scheduler.policy.accelerators import MARKER, typed
from scheduler.policy.placement import STRATEGIES, place_gang
from scheduler.policy.queue import add
from scheduler.spec import parse_spec
from scheduler.states import ACTIVE, TRANSITIONS, JobStatus
from scheduler.users import parse_users

#: two nodes of 2 CPUs, of accelerator types A and B (Ray's ``accelerator_type:<type>`` resource)
NODES = {"node-0": {"CPU": 2.0, MARKER + "A": 1.0}, "node-1": {"CPU": 2.0, MARKER + "B": 1.0}}
#: a worker's CPUs, the gang's placement strategy (the per-node fit: ``policy.placement``) and the
#: accelerator types it may run on, in order of preference
SHAPES = st.tuples(st.sampled_from([1, 2]), st.sampled_from(STRATEGIES),
                   st.sampled_from([None, "A", "B", ["A", "B"], ["B", "A"]])).map(
    lambda cst: {"resources_per_worker": {"CPU": cst[0]}, "placement_strategy": cst[1],
                 **({"accelerator_type": cst[2]} if cst[2] else {})})
SIZES = st.one_of(st.integers(1, 3), st.tuples(st.integers(1, 2), st.integers(2, 4)).map(
    lambda mm: {"min": mm[0], "max": max(mm)}))
#: time limits: with them backfill starts jobs around a blocked head (to end, or make way, by its
#: earliest start); loans of a waiting head's room need a grow, which the random steps hardly reach
LIMITS = st.sampled_from([None, None, 100.0, 1000.0])
USERS = parse_users("""
users:
  alice: {token: "alice-token-123", quota: {guaranteed: {CPU: 1}, max: {CPU: 3, "CPU:A": 1}}}
  bob: {token: "bob-token-4567", quota: {guaranteed: {CPU: 2}, max: {CPU: 4}}}
""")
MAX_CPU = {"alice": 3.0, "bob": 4.0}
MAX_TYPED = {("alice", "A"): 1.0}  # CPUs on nodes of a type
_dbs = itertools.count()
MEETS = {"completed": {"completed"}, "failed": {"failed"}, "finished": {"completed", "failed", "cancelled"}}


class RayNodes(FakeCluster):
    """The ``NODES``; free on each is what Ray would report: less the gang of every runner alive,
    where Ray placed it (``used``)."""

    def __init__(self) -> None:
        super().__init__(add({}, *NODES.values()))
        self.maximum = add({}, *NODES.values())  # what the cluster has with every node up
        self.used: dict[tuple[str, int], dict[str, dict[str, float]]] = {}  # runner -> resources per node
        self.down: set[str] = set()  # nodes lost (they may come back)
        self.draining: set[str] = set()  # nodes Ray drains: nothing new is placed there

    def up(self) -> dict[str, dict[str, float]]:
        return {n: dict(r) for n, r in NODES.items() if n not in self.down}

    def capacity(self) -> dict[str, float]:
        return add({}, *self.up().values())

    def nodes(self) -> list[dict[str, float]]:
        return list(self.up().values())

    def nodes_free_by_id(self) -> dict[str, dict[str, float]]:
        """Free room on the nodes up and not draining (as the shell reports it: ``actor.RayCluster``)."""
        free = self.up()
        for use in self.used.values():
            for node, resources in use.items():
                free[node] = {r: v - resources.get(r, 0.0) for r, v in free[node].items()}
        return {n: r for n, r in free.items() if n not in self.draining}

    def nodes_free(self) -> list[dict[str, float]]:
        return list(self.nodes_free_by_id().values())


class ModelLauncher(FakeLauncher):
    """Tells the model of each launch the moment the core makes it."""

    def __init__(self, model: CoreModel) -> None:
        super().__init__()
        self.model = model

    def launch(self, job, attempt, run_root) -> None:
        super().launch(job, attempt, run_root)
        self.model._launched(job.job_id, attempt.attempt)


class CoreModel(RuleBasedStateMachine):
    """The scheduler core and a model of its runners: which attempts are alive, and what each was told."""

    def __init__(self, make_core) -> None:
        super().__init__()
        self.make_core = make_core
        self.db = f"model-{next(_dbs)}.db"
        self.clock, self.cluster = FakeClock(), RayNodes()
        self.launcher = ModelLauncher(self)
        self.core = self._open()
        self.jobs: list[str] = []
        self.specs: dict[str, dict] = {}
        self.sweeps: dict[str, int | None] = {}  # sweep id -> its max_running
        self.live: dict[tuple[str, int], RunnerSim] = {}  # runners alive (launched, not exited nor lost)
        self.stopped: set[tuple[str, int]] = set()  # told to stop: they exit "stopped"
        self.paused_by_user: set[str] = set()
        self.started_runs: set[tuple[str, int]] = set()  # said "started" (a launch can no longer fail)
        self.shut = False  # shut down (``drain``): nothing starts until a restart

    def _open(self):
        core = self.make_core(self.cluster, self.launcher, self.clock, db=self.db)
        core.settings = Settings(storage_root=core.storage_root, db_path=":memory:", min_runtime_s=0,
                                 resize_min_interval_s=30, preempt_grace_s=60, retry_backoff_s=0,
                                 start_timeout_s=600, pause_max_wait_s=600)
        core.users = USERS
        return core

    # -- keeping the model in step with what the core did --------------------------------------------
    def _sync(self) -> None:
        self.stopped |= {s for s in self.launcher.stops if s in self.live}

    def _launched(self, job_id: str, attempt: int) -> None:
        """The core launches a runner (checked as it happens: one verb may run several passes)."""
        self._sync()
        # started only once what it waits for happened (again when requeued, a resize too: a job
        # it needs may have been resumed since; docs/design.md)
        if "after" in self.specs.get(job_id, {}):
            after, on = self.specs[job_id]["after"]
            status = self.core.get(after)["status"]
            assert status in MEETS[on], f"{job_id} started while {after} is {status} (it waits for {on})"
        for (j, a) in self.live:
            # a new attempt while an older runner of the job is alive: only if that one was stopped
            assert j != job_id or (j, a) in self.stopped, \
                f"{job_id} attempt {attempt} launched while attempt {a} still runs"
        self.live[(job_id, attempt)] = RunnerSim(self.core, job_id, attempt)
        self._place(job_id, attempt)

    def _place(self, job_id: str, attempt: int) -> None:
        """Ray places the new run's gang at once: the core launches it only if the nodes hold it."""
        launched = parse_spec(self.launcher.specs[(job_id, attempt)])
        kind = self.core.attempt(job_id, attempt).accelerator_type
        assert kind is None if not launched.accelerator_types() else kind in launched.accelerator_types(), kind
        worker, free = typed(launched.worker_resources(), kind), self.cluster.nodes_free_by_id()
        placement = place_gang(worker, launched.min_workers, list(free.values()), launched.placement_strategy)
        assert placement is not None, f"{job_id} attempt {attempt} launched as {launched.min_workers} x {worker} " \
            f"{launched.placement_strategy}, which the nodes cannot hold: {free}"
        self.cluster.used[(job_id, attempt)] = {n: {r: k * v for r, v in worker.items()}
                                                for n, k in zip(free, placement, strict=True) if k}

    def _gone(self, key: tuple[str, int]) -> RunnerSim:
        """A runner ends (or never started): Ray frees its gang."""
        self.cluster.used.pop(key, None)
        return self.live.pop(key)

    def _call(self, verb, *args, **kwargs):
        try:
            return verb(*args, **kwargs)
        except TrainqError:
            return None  # refused with a typed error: fine (the HTTP layer maps it)
        finally:
            self._sync()

    @initialize()
    def _start(self) -> None:
        self._sync()

    # -- users ---------------------------------------------------------------------------------------
    def _submitted(self, job_id: str, size, shape: dict, **more) -> None:
        self.jobs.append(job_id)
        self.specs[job_id] = {"num_workers": size, "cpus": shape["resources_per_worker"]["CPU"], **more}

    @rule(size=SIZES, shape=SHAPES, priority=st.integers(0, 2), owner=st.sampled_from(sorted(MAX_CPU)),
          limit=LIMITS)
    def submit(self, size, shape, priority, owner, limit) -> None:
        job = self._call(self.core.submit, spec(num_workers=size, priority=priority, time_limit_s=limit, **shape),
                         owner=owner)
        if job is not None:
            self._submitted(job["job_id"], size, shape)

    @precondition(lambda self: self.jobs)
    @rule(data=st.data(), size=SIZES, shape=SHAPES, on=st.sampled_from(["completed", "failed", "finished"]),
          owner=st.sampled_from(sorted(MAX_CPU)))
    def submit_after(self, data, size, shape, on, owner) -> None:
        """A job that waits for another (``depends_on``)."""
        after = data.draw(st.sampled_from(self.jobs))
        job = self._call(self.core.submit, spec(num_workers=size, depends_on=[{"job_id": after, "on": on}], **shape),
                         owner=owner)
        if job is not None:
            self._submitted(job["job_id"], size, shape, after=(after, on))

    @rule(size=SIZES, shape=SHAPES, values=st.integers(1, 4), max_running=st.sampled_from([None, 1, 2]),
          owner=st.sampled_from(sorted(MAX_CPU)), limit=LIMITS)
    def submit_sweep(self, size, shape, values, max_running, owner, limit) -> None:
        """A sweep: one job per value, at most ``max_running`` of them pending, running or pausing."""
        first = self._call(self.core.submit, spec(num_workers=size, config={"base": 1}, time_limit_s=limit, sweep={
            "parameters": {"lr": list(range(values))}, "max_running": max_running}, **shape), owner=owner)
        if first is not None:
            sweep_id = first["spec"]["sweep_id"]
            self.sweeps[sweep_id] = max_running
            for member in self.core.sweeps.view(sweep_id)["jobs"]:
                self._submitted(member["job_id"], size, shape)

    @precondition(lambda self: self.sweeps)
    @rule(data=st.data(), verb=st.sampled_from(["pause", "resume", "cancel"]))
    def sweep_verb(self, data, verb) -> None:
        """A verb for every member of a sweep that takes it."""
        sweep_id = data.draw(st.sampled_from(sorted(self.sweeps)))
        answer = self._call(self.core.sweeps.act, sweep_id, verb)
        for member in (answer or {"jobs": []})["jobs"]:
            if member["error"] is None and verb == "pause":
                self.paused_by_user.add(member["job_id"])
            elif member["error"] is None and verb == "resume":
                self.paused_by_user.discard(member["job_id"])

    @precondition(lambda self: self.jobs)
    @rule(data=st.data(), deadline_s=st.sampled_from([None, 30.0]))
    def pause(self, data, deadline_s) -> None:
        job_id = data.draw(st.sampled_from(self.jobs))
        if self._call(self.core.pause, job_id, deadline_s) is not None:
            self.paused_by_user.add(job_id)

    @precondition(lambda self: self.jobs)
    @rule(data=st.data())
    def resume(self, data) -> None:
        job_id = data.draw(st.sampled_from(self.jobs))
        if self._call(self.core.resume, job_id) is not None:
            self.paused_by_user.discard(job_id)

    @precondition(lambda self: self.jobs)
    @rule(data=st.data())
    def cancel(self, data) -> None:
        self._call(self.core.cancel, data.draw(st.sampled_from(self.jobs)))

    @precondition(lambda self: self.jobs)
    @rule(data=st.data(), priority=st.integers(0, 3))
    def set_priority(self, data, priority) -> None:
        self._call(self.core.set_priority, data.draw(st.sampled_from(self.jobs)), priority)

    @precondition(lambda self: self.jobs)
    @rule(data=st.data())
    def checkpoint(self, data) -> None:
        self._call(self.core.checkpoint, data.draw(st.sampled_from(self.jobs)))

    @rule(seconds=st.sampled_from([0, 60]))
    def time_slice(self, seconds) -> None:
        self._call(self.core.set_time_slice, seconds)

    # -- runners -------------------------------------------------------------------------------------
    def _runner(self, data) -> tuple[tuple[str, int], RunnerSim]:
        key = data.draw(st.sampled_from(sorted(self.live)))
        return key, self.live[key]

    @precondition(lambda self: self.live)
    @rule(data=st.data())
    def started(self, data) -> None:
        key, sim = self._runner(data)
        self.started_runs.add(key)
        self._call(sim.started)

    @precondition(lambda self: self.live)
    @rule(data=st.data(), checkpoint=st.booleans())
    def report(self, data, checkpoint) -> None:
        (job_id, attempt), sim = self._runner(data)
        step = sim.seq
        self.started_runs.add((job_id, attempt))
        self._call(sim.report, step, f"/ck/{job_id}/{attempt}/{step}" if checkpoint else None, read_checkpoint=True)

    @precondition(lambda self: self.live)
    @rule(data=st.data(), outcome=st.sampled_from(["completed", "failed", "asked"]),
          failure=st.sampled_from(["user", "infrastructure"]))
    def exit(self, data, outcome, failure) -> None:
        """The run ends: as it was asked (stopped, paused at a checkpoint), or by itself."""
        key, sim = self._runner(data)
        if outcome == "asked" and key in self.stopped:
            outcome = "stopped"
        elif outcome == "asked" and key in self.launcher.pauses:
            sim.report(sim.seq, f"/ck/{key[0]}/{key[1]}/{sim.seq}", read_checkpoint=True)
            outcome = "paused"
        elif outcome == "asked":
            outcome = "completed"
        self._gone(key)
        failed = outcome == "failed"
        self._call(sim.exit, outcome, error="boom" if failed else None, failure=failure if failed else None)

    @precondition(lambda self: self.live)
    @rule(data=st.data())
    def runner_lost(self, data) -> None:
        key, _ = self._runner(data)
        self._gone(key)
        self._call(self.core.on_runner_lost, *key, "node lost")

    @precondition(lambda self: set(self.live) - self.started_runs)
    @rule(data=st.data())
    def launch_failed(self, data) -> None:
        """No runner could be started (before it said anything)."""
        key = data.draw(st.sampled_from(sorted(set(self.live) - self.started_runs)))
        self._gone(key)
        self._call(self.core.on_launch_failed, *key, "RuntimeError: no runner")

    @rule(node=st.sampled_from(sorted(NODES)), deadline_s=st.sampled_from([None, 60.0]), over=st.booleans())
    def drain(self, node, deadline_s, over) -> None:
        """Ray drains a node (each live runner's workers are where Ray placed them), or no longer does."""
        self.cluster.draining = set() if over else {node}
        deadline = None if deadline_s is None else self.clock() + deadline_s
        notices = [] if over else [DrainNotice(node, deadline, "preemption")]
        self._call(self.core.on_drains, notices, {key: set(self.cluster.used[key]) for key in self.live})

    @precondition(lambda self: not self.cluster.down)
    @rule(node=st.sampled_from(sorted(NODES)))
    def node_lost(self, node) -> None:
        """A node dies: the runners with workers on it are lost, the cluster is smaller until it is back."""
        self.cluster.down.add(node)
        lost = [key for key in sorted(self.live) if node in self.cluster.used.get(key, {})]
        for key in lost:  # Ray sees the node gone at once; the losses reach the core one by one
            self._gone(key)
        for key in lost:
            self._call(self.core.on_runner_lost, *key, f"node {node} lost")

    @precondition(lambda self: self.cluster.down)
    @rule()
    def node_back(self) -> None:
        self.cluster.down.clear()

    @rule(seconds=st.sampled_from([0.5, 5, 40, 400]))
    def tick(self, seconds) -> None:
        self.clock.advance(seconds)
        self._call(self.core.tick)

    @rule(grace_s=st.sampled_from([0.0, 60.0]))
    def shut_down(self, grace_s) -> None:
        """``trainq serve`` stopping: every active job pauses, to be requeued by the next start."""
        self._call(self.core.drain, grace_s)
        self.shut = True

    @rule()
    def restart(self) -> None:
        """The scheduler restarts over the same registry; the live runners are found again."""
        before = {j: self._view(self.core.get(j)) for j in self.jobs}
        self.core.store.close()
        self.core = self._open()
        for sim in self.live.values():
            sim.core = self.core
        after = {j: self._view(self.core.get(j)) for j in self.jobs}
        assert after == before  # everything the old core acknowledged was in the registry
        self._call(self.core.recover, set(self.live))
        self.shut = False

    def _elastic(self, job_id: str) -> bool:
        return isinstance(self.specs[job_id]["num_workers"], dict)

    def _waits_for_a_paused_job(self, job_id: str) -> bool:
        """Whether the job waits, as it should, for a job its user paused (or for one that does)."""
        after = self.specs[job_id].get("after")
        status = self.core.get(after[0])["status"] if after else None
        return status == "paused" or (status == "queued" and self._waits_for_a_paused_job(after[0]))

    @rule(data=st.data())
    def reconcile(self, data) -> None:
        """The periodic comparison of the runners alive with the registry (some of them watched)."""
        watched = data.draw(st.sets(st.sampled_from(sorted(self.live)))) if self.live else set()
        self._call(self.core.reconcile, set(self.live), watched)

    @staticmethod
    def _view(job: dict) -> tuple:
        return job["status"], job["attempt"], job["priority"], job.get("workers"), job.get("checkpoint_path")

    # -- invariants ----------------------------------------------------------------------------------
    @invariant()
    def transitions_follow_the_table(self) -> None:
        for job_id in self.jobs:
            for t in self.core.history(job_id)["transitions"]:
                if t["from_status"] is not None:
                    assert JobStatus(t["to_status"]) in TRANSITIONS[JobStatus(t["from_status"])], t

    @invariant()
    def never_more_than_the_cluster(self) -> None:
        # what the nodes up now have (a runner on a lost node was lost with it)
        held = sum(r.get("CPU", 0.0) for r in self.core.held.values())
        assert held <= self.cluster.capacity()["CPU"] + 1e-9, (dict(self.core.held), self.cluster.down)

    @invariant()
    def a_sweep_runs_at_most_its_max_running(self) -> None:
        for sweep_id, limit in self.sweeps.items():
            active = [j["job_id"] for j in self.core.sweeps.view(sweep_id)["jobs"] if JobStatus(j["status"]) in ACTIVE]
            assert limit is None or len(active) <= limit, (sweep_id, limit, active)

    @invariant()
    def no_owner_over_their_max(self) -> None:
        use: dict[str, float] = {}
        typed_use: dict[tuple[str, str | None], float] = {}
        for job_id in self.jobs:
            job = self.core.get(job_id)
            if JobStatus(job["status"]) in ACTIVE:
                cpus = job["workers"] * self.specs[job_id]["cpus"]
                use[job["owner"]] = use.get(job["owner"], 0.0) + cpus
                kind = (job["owner"], self.core.attempt(job_id, job["attempt"]).accelerator_type)
                typed_use[kind] = typed_use.get(kind, 0.0) + cpus
        assert all(cpus <= MAX_CPU[owner] for owner, cpus in use.items()), use
        assert all(typed_use.get(kind, 0.0) <= cpus for kind, cpus in MAX_TYPED.items()), typed_use

    @invariant()
    def active_jobs_run_with_their_size(self) -> None:
        for job_id in self.jobs:
            job = self.core.get(job_id)
            if JobStatus(job["status"]) not in ACTIVE:
                continue
            assert (job_id, job["attempt"]) in self.live, f"{job_id} is {job['status']} with no runner alive"
            size = self.specs[job_id]["num_workers"]
            lo, hi = (size["min"], size["max"]) if isinstance(size, dict) else (size, size)
            assert lo <= job["workers"] <= hi, (job_id, job["workers"], size)
            # what it was launched with, and what it holds
            assert parse_spec(self.launcher.specs[(job_id, job["attempt"])]).min_workers == job["workers"]
            assert self.core.held[(job_id, job["attempt"])].get("CPU") == job["workers"] * self.specs[job_id]["cpus"]

    def teardown(self) -> None:
        """The runners now do as asked and the clock moves: every job ends or stays paused by its user."""
        if self.shut:
            self.restart()
        self.node_back()
        if self.cluster.draining:  # the drain is over (or the node went and came back)
            self.drain(min(self.cluster.draining), None, over=True)
        rotated: set[str] = set()  # jobs paused once already for time slicing in this phase
        for _ in range(8 * len(self.jobs) + 10):
            if not self.live and not self.core.count(status="queued"):
                break
            # every runner starts and runs a while before one ends: the queue drains, room stays
            # idle, and elastic jobs grow into it (the random steps hardly ever leave it idle)
            for key, sim in sorted(self.live.items()):
                if key not in self.stopped and key not in self.started_runs:
                    self.started_runs.add(key)
                    sim.started()
            self.clock.advance(400)
            self.core.tick()
            self._sync()
            # fixed-size jobs end first, so elastic ones find room freed around them and grow
            for key, sim in sorted(self.live.items(), key=lambda kv: (self._elastic(kv[0][0]), kv[0])):
                rotating = key in self.launcher.pauses and self.core.get(key[0]).get("pause_reason") == "timeslice"
                if key in self.stopped:
                    outcome = "stopped"
                elif rotating and key[0] in rotated:
                    # Its slices add up: it ends before its next turn is over (the clock moves
                    # here by more than a slice, so its turn is over every time it runs).
                    sim.started()
                    outcome = "completed"
                elif key in self.launcher.pauses:
                    if rotating:
                        rotated.add(key[0])
                    sim.report(sim.seq, f"/ck/{key[0]}/{key[1]}/end", read_checkpoint=True)
                    outcome = "paused"
                else:
                    sim.started()
                    outcome = "completed"
                self._gone(key)
                sim.exit(outcome)
                self._sync()
                break
            self.clock.advance(400)
            self.core.tick()
            self._sync()
        stuck = [(j, self.core.get(j)["status"]) for j in self.jobs
                 if self.core.get(j)["status"] not in ("completed", "failed", "cancelled", "paused")
                 and not self._waits_for_a_paused_job(j)]
        assert not stuck, "jobs that never end with runners doing as asked: " + "; ".join(
            f"{j} {status} after {self.core.history(j)['transitions'][-1]['reason']!r}" for j, status in stuck)
        paused = {j for j in self.jobs if self.core.get(j)["status"] == "paused"}
        self.core.store.close()
        assert paused <= self.paused_by_user, f"paused without a user asking: {paused - self.paused_by_user}"


def test_the_core_keeps_its_invariants_under_random_verbs_events_and_restarts(make_core) -> None:
    # Derandomized in the suite: the same sequences every run, so a failure is a bug, never bad
    # luck. TRAINQ_MODEL_EXAMPLES=2000 searches further, with fresh random sequences each run.
    hunt = os.environ.get("TRAINQ_MODEL_EXAMPLES")
    run_state_machine_as_test(lambda: CoreModel(make_core), settings=settings(
        max_examples=int(hunt or 60), stateful_step_count=80 if hunt else 50, deadline=None, database=None,
        derandomize=not hunt, suppress_health_check=list(HealthCheck), print_blob=True))
