"""The core's one entry point: the verbs, each followed by exactly one scheduling pass.

``Scheduler`` wires the parts together and does nothing else: a command is carried out by its
part (``commands``, ``submit``, ``attempts``), then ``_then_pass`` runs one pass if the command
changed anything the queue depends on (or always, for those whose end frees resources).
"""

from __future__ import annotations

import builtins
import dataclasses
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from ..checkpoint_fs import CheckpointFS, StorageFS
from ..config import Settings
from ..errors import InvalidSpec, TrainqError
from ..jobs import Attempt, Job
from ..policy import Resources, failure
from ..states import ACTIVE, JobStatus
from ..store import Store
from ..users import Users, load_users
from ..verbs import CheckpointRequested, JobView, PauseResult, ResumeResult, Verbs
from .attempts import SHUTDOWN_OVER, Attempts
from .checkpoints import Checkpoints
from .commands import Commands
from .dependencies import Dependencies
from .drains import DrainNotice, Drains
from .dryrun import DryRun
from .idempotency import Requests
from .ports import Cluster, Launcher
from .runner_events import RunnerEvent, parse
from .scheduling import Pass
from .snapshot import Snapshot
from .submit import Item, Submitter
from .sweeps import Sweeps
from .usage import Usage
from .views import Views
from .writer import Context, Event, Writer

S = JobStatus
T = TypeVar("T")


class Scheduler:
    """The job registry and queue. One instance lives inside the scheduler actor."""

    def __init__(self, store: Store, launcher: Launcher, cluster: Cluster, *, storage_root: str,
                 clock: Callable[[], float] = time.time, settings: Settings | None = None,
                 checkpoint_fs: CheckpointFS | None = None, users: Users | None = None) -> None:
        settings = settings or Settings(storage_root=storage_root)
        if users is None and settings.users_file:
            users = load_users(settings.users_file)
        self.ctx = Context(store, launcher, cluster, storage_root, clock, settings,
                           checkpoint_fs or StorageFS(), users)
        self.writer = Writer(self.ctx)
        self.checkpointing = Checkpoints(self.writer)
        self.attempts = Attempts(self.writer, self.checkpointing)
        self.accounting = Usage(self.writer)
        self.snapshot = Snapshot(self.writer, self.attempts, self.checkpointing, self.accounting)
        self.dependencies = Dependencies(self.writer)
        self.passes = Pass(self.writer, self.attempts, self.snapshot, self.dependencies)
        self.views = Views(self.writer, self.snapshot)
        self.commands = Commands(self.writer, self.attempts, self.checkpointing, self.views, self.dependencies)
        self.drains = Drains(self.writer, self.attempts)
        self.requests = Requests(store, self.views.get)
        self.submitter = Submitter(self.writer, self.requests, self.dependencies)
        self.dry, self.sweeps = DryRun(self.writer, self.submitter, self.passes, self.views), Sweeps(self)

    # -- the seams and settings, shared by every part -----------------------------------------------
    @property
    def store(self) -> Store:
        return self.ctx.store

    @property
    def launcher(self) -> Launcher:
        return self.ctx.launcher

    @property
    def cluster(self) -> Cluster:
        return self.ctx.cluster

    @property
    def clock(self) -> Callable[[], float]:
        return self.ctx.clock

    @property
    def storage_root(self) -> str:
        return self.ctx.storage_root

    @property
    def settings(self) -> Settings:
        return self.ctx.settings

    @settings.setter
    def settings(self, value: Settings) -> None:
        self.ctx.settings = value

    @property
    def users(self) -> Users | None:
        """Who may do what, quotas and fair-share weights; None: one user, no quotas."""
        return self.ctx.users

    @users.setter
    def users(self, value: Users | None) -> None:
        self.ctx.users = value

    @property
    def listeners(self) -> builtins.list[Callable[[Event], None]]:
        """Called with every event (state changes, reports, preemptions), in order."""
        return self.writer.listeners

    @property
    def held(self) -> Mapping[tuple[str, int], Resources]:
        """(job_id, attempt) -> what it holds, from launch until its runner stopped or is gone."""
        return self.writer.held

    @property
    def allocated(self) -> builtins.list[Resources]:
        return self.writer.allocated

    @property
    def ledger(self) -> Any:
        return self.accounting.ledger

    @property
    def draining(self) -> bool:
        return self.attempts.shutting_down

    # -- one pass after each command, in one place --------------------------------------------------
    def _then_pass(self, command: Callable[[], T], *, always: bool = False, if_result: bool = False) -> T:
        """Run ``command``, then one scheduling pass if it changed what the queue depends on
        (``always``: in any case; ``if_result``: only if the command returned something true)."""
        before = self.writer.version
        result = command()
        if bool(result) if if_result else always or self.writer.version != before:
            self.passes.run()
        return result

    def schedule(self) -> builtins.list[str]:
        """One scheduling pass (``core.scheduling``); returns the jobs started."""
        return self.passes.run()

    # -- the verbs ----------------------------------------------------------------------------------
    def submit(self, data: Any, idempotency_key: str | None = None, owner: str | None = None) -> dict[str, Any]:
        """Validate a spec, store the job as ``queued`` and start whatever fits now.

        With an ``idempotency_key``, the same key (and spec) returns the job it created the first
        time instead of a new one: a client, or Ray retrying the call after a restart, may resend.
        ``owner`` is the submitting user (the HTTP layer passes the token's; a Ray caller is
        trusted and may name anyone in the users file).
        """
        (answer,) = self.submit_many([(data, idempotency_key, owner)])
        if isinstance(answer, TrainqError):
            raise answer
        return self.views.public(answer)

    def submit_many(self, items: Sequence[Item]) -> builtins.list[Job | TrainqError]:
        """``submit`` for several ``(spec, idempotency_key, owner)`` at once, with one commit.

        Each item gets its own answer: its job as it is after the pass (scheduling may have
        started it), or the error that refused it.
        """
        answers = self._then_pass(lambda: self.submitter.submit_many(items))
        return [a if isinstance(a, TrainqError) else self.writer.job(a.job_id) for a in answers]

    def submit_json(self, items: Sequence[Item]) -> builtins.list[bytes | TrainqError]:
        """``submit_many`` as the HTTP API sends it: each job as JSON bytes, or the error that refused it."""
        answers = self.submit_many(items)
        encoded = iter(self.views.encoded([a for a in answers if isinstance(a, Job)]))
        return [a if isinstance(a, TrainqError) else next(encoded) for a in answers]

    def pause(self, job_id: str, deadline_s: float | None = None, no_deadline: bool = False,
              idempotency_key: str | None = None, as_user: str | None = None) -> PauseResult:
        """Pause a job (``Commands.pause``); a repeated ``idempotency_key`` gets the first answer again."""
        self.commands.authorize(job_id, as_user, "pause")
        return self._then_pass(lambda: self.requests.once(
            idempotency_key, "pause", job_id, lambda once: self.commands.pause(job_id, deadline_s, no_deadline, once)))

    def resume(self, job_id: str, checkpoint_path: str | None = None,
               idempotency_key: str | None = None, as_user: str | None = None) -> ResumeResult:
        """Queue a paused, failed or cancelled job again, to start from a recorded checkpoint.

        A repeated ``idempotency_key`` gets the first answer again instead of a conflict.
        """
        self.commands.authorize(job_id, as_user, "resume")
        return self._then_pass(lambda: self.requests.once(
            idempotency_key, "resume", job_id, lambda once: self.commands.resume(job_id, checkpoint_path, once)))

    def cancel(self, job_id: str, idempotency_key: str | None = None, as_user: str | None = None) -> dict[str, Any]:
        """Cancel a job; a running one is stopped now (its resources free once it has stopped)."""
        self.commands.authorize(job_id, as_user, "cancel")
        return self._then_pass(lambda: self.requests.once(
            idempotency_key, "cancel", job_id, lambda once: self.views.public(self.commands.cancel(job_id, once))))

    def set_priority(self, job_id: str, priority: Any, as_user: str | None = None) -> dict[str, Any]:
        """Change a job's priority; its queue position changes at once and a raise may preempt."""
        self.commands.authorize(job_id, as_user, "reprioritize")
        self._then_pass(lambda: self.commands.set_priority(job_id, priority))
        return self.views.public(self.writer.job(job_id))

    def checkpoint(self, job_id: str, as_user: str | None = None) -> CheckpointRequested:
        """Have a running job save a checkpoint at its next step and go on (checkpoint-now)."""
        job = self.commands.authorize(job_id, as_user, "checkpoint")
        return self._then_pass(lambda: self.commands.checkpoint(job))

    def pin_checkpoint(self, job_id: str, path: str, pinned: bool = True,
                       as_user: str | None = None) -> dict[str, Any]:
        """Pin a recorded checkpoint (kept whatever the retention rule says) or unpin it."""
        job = self.commands.authorize(job_id, as_user, "pin" if pinned else "unpin")
        return self._then_pass(lambda: self.checkpointing.pin(job, path, pinned))

    def drain(self, grace_s: float) -> builtins.list[str]:
        """A shutdown: stop starting jobs and pause every active one, to resume at the next start.

        Running jobs pause right after their next checkpoint (at once with the cooperative hook),
        within their derived deadline and ``grace_s``; a pending start is abandoned. Returns the
        jobs still holding resources (what the caller waits for).
        """
        self.attempts.shutting_down = True
        return self.commands.drain(grace_s)

    def set_time_slice(self, seconds: float) -> None:
        """Turn time slicing on with a slice of ``seconds``, or off with 0, then schedule under it."""
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 <= seconds < float("inf"):
            raise InvalidSpec(f"a time slice is a number of seconds >= 0 (0: off), not {seconds!r}", "time_slice_s")
        self.ctx.settings = dataclasses.replace(self.ctx.settings, time_slice_s=float(seconds))
        self.passes.run()

    def set_users(self, users: Users | None) -> None:
        """Replace the users file's users, roles and quotas (a reload), then schedule under them."""
        self.ctx.users = users
        self.passes.run()

    # -- reads --------------------------------------------------------------------------------------

    def get(self, job_id: str) -> dict[str, Any]:
        """One job as a dict; a queued one with its ``pending_reason``, ``eta`` and ``eta_basis``."""
        return self.views.get(job_id)

    def get_json(self, job_id: str) -> bytes:
        """``get`` as JSON bytes."""
        return self.views.get_json(job_id)

    def list(self, status: str | Iterable[str] | None = None, limit: int | None = None,
             offset: int = 0) -> builtins.list[dict[str, Any]]:
        """Jobs newest first, optionally filtered by status (one or several). Everyone sees every
        job (as ``squeue`` shows them); only acting on one is limited to its owner and admins."""
        return self.views.list(status, limit, offset)

    def page_json(self, status: str | Iterable[str] | None, limit: int, offset: int) -> bytes:
        """One page of ``list`` with its total, limit and offset, as JSON bytes."""
        return self.views.page_json(status, limit, offset)

    def count(self, status: str | Iterable[str] | None = None) -> int:
        """How many jobs (in ``status``) there are."""
        return self.views.count(status)

    def queue(self, limit: int | None = None, offset: int = 0) -> builtins.list[JobView]:
        """The queued jobs in the order they will start (fair-share order with a users file), each
        with why it waits (``pending_reason``) and when it should start (``eta``, ``eta_basis``)."""
        return self.views.queue_jobs(limit, offset)

    def queue_json(self, limit: int | None = None, offset: int = 0) -> bytes:
        """``queue`` as a JSON array (bytes)."""
        return self.views.queue_json(limit, offset)

    def checkpoints(self, job_id: str) -> builtins.list[dict[str, Any]]:
        """Every checkpoint the job recorded, newest first, with its retention state and bytes."""
        return self.checkpointing.public(job_id)

    def reports(self, job_id: str, after_id: int = 0, limit: int | None = None) -> builtins.list[dict[str, Any]]:
        """The job's metrics reports, oldest first."""
        return self.views.reports(job_id, after_id, limit)

    def history(self, job_id: str) -> dict[str, Any]:
        """The job's transitions and attempts."""
        return self.views.history(job_id)

    def usage(self, by: str = "user", since: float | None = None) -> dict[str, Any]:
        """Resource use per user or per job since ``since`` (``Usage.report``)."""
        return self.accounting.report(by, since)

    def holding(self) -> builtins.list[dict[str, Any]]:
        """Every job whose run still holds resources (what a shutdown waits for)."""
        return self.views.holding()

    def cluster_use(self) -> dict[str, Any]:
        """Capacity used and free per resource, job counts and use per owner (``Views.cluster``)."""
        return self.views.cluster()

    def job_root(self, job: Job) -> str:
        """Where the job's runs (checkpoints, logs) live: ``<storage root>/<job_id>``."""
        return self.writer.job_root(job)

    def job(self, job_id: str) -> Job:
        """The stored job record, or ``JobNotFound``."""
        return self.writer.job(job_id)

    def attempt(self, job_id: str, number: int) -> Attempt | None:
        """One attempt's record (run name, times, outcome, lost work), or None."""
        return self.ctx.store.get_attempt(job_id, number)

    # -- what runners and the shell report ------------------------------------------------------------
    def on_runner_event(self, event: Mapping[str, Any] | RunnerEvent) -> None:
        """Apply one event a runner sent (``runner_events``), idempotently. An attempt's end is
        followed by a pass; a report, a start or the hook's first call change nothing that holds
        resources, so they are not (the housekeeping tick schedules soon anyway)."""
        typed = parse(event)
        self._then_pass(lambda: self.attempts.on_event(typed), if_result=True)

    def on_drains(self, notices: Iterable[DrainNotice], placements: Mapping[tuple[str, int], Iterable[str]]
                  ) -> builtins.list[Any]:
        """Ray is draining these nodes: move the active jobs with a worker on one of them at a
        checkpoint (``core.drains``). ``placements``: the nodes each active attempt's workers are
        on. Returns the moves made (none when the same notices come again)."""
        notices = builtins.list(notices)
        self.snapshot.draining = tuple(n.describe() for n in notices)
        return self._then_pass(lambda: self.drains.apply(notices, placements), if_result=True)

    def on_launch_failed(self, job_id: str, attempt: int, error: str) -> None:
        """No runner could be started for the attempt (e.g. its working_dir failed to upload)."""
        self._then_pass(lambda: self.attempts.launch_failed(job_id, attempt, error), always=True)

    def on_runner_lost(self, job_id: str, attempt: int, why: str) -> None:
        """A runner is gone without saying how its attempt ended (and its run with it)."""
        self._then_pass(lambda: self.attempts.runner_lost(job_id, attempt, why), always=True)

    def recover(self, alive: set[tuple[str, int]]) -> None:
        """After a restart: keep live runners, settle jobs whose runner is gone, stop orphans.

        An orphan is a runner of one of this registry's jobs whose attempt is not active; a runner
        of a job this registry does not know belongs to another scheduler and is never touched.
        Jobs paused by a shutdown go back to the queue: trainq is running again.
        """
        self._then_pass(lambda: self._recover(alive), always=True)

    def _recover(self, alive: set[tuple[str, int]]) -> None:
        store, launcher = self.ctx.store, self.ctx.launcher
        active = {(j.job_id, j.attempt): j for j in store.jobs_in(ACTIVE)}
        for (job_id, attempt), job in active.items():
            if (job_id, attempt) not in alive:
                self.attempts.runner_lost(job_id, attempt, "not found after a scheduler restart")
            elif job.status is S.PAUSING:
                # The request may have been lost with the old actor; asking again is harmless.
                launcher.request_pause(job_id, attempt)
        for key in alive - set(active):
            self.attempts.stop_orphan(*key)
        for job in store.jobs_in([S.PAUSED]):
            if job.pause_reason == failure.SHUTDOWN:
                self.writer.requeue(job, "requeue", SHUTDOWN_OVER, job.checkpoint_path)

    def reconcile(self, alive: set[tuple[str, int]], watched: set[tuple[str, int]]) -> builtins.list[str]:
        """Compare the runners alive now with the store and settle whatever drifted apart.

        ``alive``: attempts whose runner actor exists (a snapshot); ``watched``: attempts whose
        runner the shell is launching or watching (their end reaches the core anyway). An active
        attempt in neither lost its runner without a word (an event dropped, a watcher gone); a
        live runner of no active attempt is an orphan; resources held for an attempt that is
        neither active nor alive were never released. Returns what it did, in words.
        """
        def settle() -> builtins.list[str]:
            done = []
            active = {(j.job_id, j.attempt): j for j in self.ctx.store.jobs_in(ACTIVE)}
            for key in sorted(set(active) - alive - watched):
                done.append(f"{key[0]} attempt {key[1]}: {active[key].status.value} with no runner; settled")
                self.attempts.runner_lost(*key, "reconciliation found no runner for this attempt")
            for key in sorted(alive - set(active) - watched):
                if self.attempts.stop_orphan(*key):
                    done.append(f"{key[0]} attempt {key[1]}: a runner of no active attempt; stopped")
            for key in sorted(set(self.writer.held) - set(active) - alive - watched):
                done.append(f"{key[0]} attempt {key[1]}: resources held by no runner; released")
                self.writer.release(*key)
            return done

        return self._then_pass(settle, if_result=True)

    def tick(self) -> None:
        """Periodic work: usage, old idempotency keys, time limits, pause deadlines, start timeouts;
        then start what fits."""
        def expire() -> None:
            now = self.ctx.clock()
            self.accounting.charge(now)
            self.requests.prune(now, self.ctx.settings.request_keys_ttl_s)
            self.attempts.expire(now)

        self._then_pass(expire, always=True)


if TYPE_CHECKING:
    def _answers_the_verbs(core: Scheduler) -> Verbs:
        return core  # mypy checks that the core answers every verb as the protocol says
