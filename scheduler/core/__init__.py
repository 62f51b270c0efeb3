"""The scheduler core: decides and records, never touches Ray (nor FastAPI).

Glossary
- job: what a user submitted; keeps its ``job_id`` across pauses, failures and resumes.
- attempt: one run of a job (a runner and a Ray Train run named ``<name>-<job_id>-attempt-<n>``,
  readable in the Ray dashboard).
- runner: what runs one attempt; the ``Launcher`` starts, pauses and stops runners.
- held: what an attempt holds from its launch until its runner has said it stopped (or is
  gone): a cancelled or preempted job's resources are not handed out again before that.
- pause intent: who asked a pause (a user, a preemption, a shutdown, a time slice); it decides
  whether the job ends ``paused`` or goes back to the queue by itself.
- preemption: pausing lower-priority jobs right after a checkpoint so the head can start.
- requeue: an attempt ended by the infrastructure (a node, a worker, the runner) goes back to
  the queue from its last checkpoint, up to the job's ``max_retries``.
- owner: the user who submitted a job (users file); only they or an admin act on it.
- borrowing: an attempt beyond its owner's guaranteed resources; the first to be reclaimed.
- backfill: a job started behind a blocked head because it cannot delay it (docs/fairness.md).
- time slice: with ``time_slice_s``, a job that has run a slice makes way for equal-priority
  waiting jobs and is requeued behind them.
- lost work: how far an attempt got beyond its last checkpoint when it stopped.

The parts, one concern each:
- ``facade``: ``Scheduler``, the verbs; exactly one scheduling pass after each command.
- ``writer``: the only writer of job rows; the in-memory indexes kept in step with them.
- ``scheduling``: one pass: the policies' typed actions (``core.actions``: ``Start``, ``MakeWay``,
  ``Resize``, ``Hold``, ``AskCapacity``...) decided stage by stage and applied in one place;
  ``room``: what to pause or shrink for a blocked head; ``resizing``: elastic jobs' sizes, grows
  and shrinks; ``dependencies``, ``sweeps``, ``dryrun``: pipelines, sweeps and the what-if submit;
  ``snapshot``: what the policies are shown.
- ``commands``: pause, resume, cancel, set_priority, checkpoint, a shutdown's drain.
- ``attempts``: runner events, an attempt's end, losses, lost work, pausing a running attempt.
- ``checkpoints``: recording, retention, existence; ``submit``: validation and group commit;
  ``idempotency``: one action per key; ``views``: public forms, the queue view, why-pending;
  ``usage``: the fair-share ledger and the usage report; ``ports``: the seams (launcher, cluster);
  ``runner_events``: what runners report, typed; ``drains``: a draining node's jobs moved at a
  checkpoint.
- drain: Ray announcing a node goes away (spot reclaim, maintenance) with a deadline; its jobs
  are preempted by the node and requeued in their place, not counted as a retry.
"""

from .attempts import IGNORED_CHECKPOINT, NOT_RESUMABLE
from .drains import DrainNotice, Move, idle_drain_refusal
from .facade import Scheduler
from .ports import Cluster, Launcher
from .runner_events import Exited, HookSeen, Reported, RunnerEvent, Started

__all__ = ["IGNORED_CHECKPOINT", "NOT_RESUMABLE", "Cluster", "DrainNotice", "Exited", "HookSeen", "Launcher", "Move",
           "Reported", "RunnerEvent", "Scheduler", "Started", "idle_drain_refusal"]
