"""Submitting jobs: validation, the checks a spec must pass here, and the group commit.

A batch of submits is checked item by item (each gets its job or the error that refused it)
and stored with one commit: the HTTP API's group commit, one fsync for many submits.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from .. import policy, runtime_env, security, workloads
from ..config import Settings, packages_root
from ..errors import (
    DoesNotFit,
    IdempotencyConflict,
    InvalidSpec,
    MissingOnServer,
    OverQuota,
    SweepTooLarge,
    TrainqError,
    UnknownAcceleratorType,
)
from ..jobs import Job, Transition, new_job_id, ordered_id
from ..policy import accelerators, quota
from ..policy import dependencies as pipeline
from ..spec import MAX_SWEEP_JOBS, JobSpec, parse_spec
from ..states import JobStatus
from ..store import Request
from .dependencies import Dependencies
from .idempotency import Requests, check_key
from .writer import NewJob, Writer

S = JobStatus
#: One submit: (spec, idempotency key, owner).
Item = tuple[Any, str | None, str | None]
#: ``json.dumps(value, sort_keys=True)`` (a submit's fingerprint) with its encoder made once.
_sorted_json = json.JSONEncoder(sort_keys=True).encode


class Submitter:
    """Turns specs into stored, queued jobs."""

    def __init__(self, writer: Writer, requests: Requests, dependencies: Dependencies) -> None:
        self.writer = writer
        self.ctx = writer.ctx
        self.requests = requests
        self.dependencies = dependencies
        self._reach: tuple[Settings, bool, list[str] | None, list[str], list[str]] | None = None

    def submit_many(self, items: Sequence[Item]) -> list[Job | TrainqError]:
        """Check each ``(spec, idempotency_key, owner)`` on its own and store the new jobs with one
        commit, in the given order. Each answer is the stored job (new, or the one its key made
        before) or the error that refused the item; a key used twice in one call acts once."""
        answers: list[Job | TrainqError | int] = []
        new: list[NewJob] = []
        keys: dict[str, tuple[int, str, str]] = {}  # this call's new keys: answer, fingerprint, job
        # What the batch's keys did before, in one query (the HTTP API gives every submit a key).
        known = self.ctx.store.find_requests([key for _, key, _ in items if isinstance(key, str)])
        # The batch's submission numbers, in order (the store keeps them; it would renumber otherwise).
        first_seq = self.ctx.store.next_seq()
        for data, idempotency_key, owner in items:
            try:
                prepared = self._prepare(data, idempotency_key, owner, keys, known, first_seq + len(new))
            except TrainqError as e:
                answers.append(e)
                continue
            if isinstance(prepared, list):  # new jobs (a sweep's members): the first is the answer
                first = prepared[0]
                if first.request is not None:
                    keys[first.request.key] = (len(answers), first.request.fingerprint or "", first.job.job_id)
                answers.append(first.job)
                new.extend(prepared)
            else:
                answers.append(prepared)
        self.writer.insert(new)
        return [answers[a] if isinstance(a, int) else a for a in answers]  # type: ignore[misc]

    def check(self, data: Any, owner: str | None) -> NewJob:
        """A submit's checks and nothing else (the dry run's): the job it would make, not stored (a
        sweep: its first member), or the error a submit would raise. Reads, never writes."""
        prepared = self._prepare(data, None, owner, {}, {}, self.ctx.store.next_seq())
        if not isinstance(prepared, list):  # only a key replays an earlier answer, and there is none
            raise TypeError("a submit without a key makes new jobs")
        return prepared[0]

    def _prepare(self, data: Any, idempotency_key: str | None, owner: str | None,
                 keys: Mapping[str, tuple[int, str, str]],
                 known: Mapping[str, dict[str, Any]], seq: int) -> list[NewJob] | Job | int:
        """A submit checked, not yet stored (``NewJob``: one, or a sweep's members), or what its key
        did before: a stored job, or the answer index of an earlier item of the same call (in ``keys``)."""
        key = check_key(idempotency_key)
        spec = parse_spec(data)
        if spec.sweep_id is not None:
            raise InvalidSpec("sweep_id is set by trainq on a sweep's members; give sweep instead", field="sweep_id")
        if spec.sweep is not None and spec.sweep.size() > MAX_SWEEP_JOBS:
            raise SweepTooLarge(spec.sweep.size(), MAX_SWEEP_JOBS)
        self._check_owner(owner)
        dumped = spec.model_dump(mode="json")
        fingerprint = hashlib.sha256(_sorted_json(dumped if owner is None else {**dumped, "owner": owner})
                                     .encode()).hexdigest()
        if key is not None and key in keys:
            index, first, job_id = keys[key]
            if first != fingerprint:
                raise IdempotencyConflict(key, "submit", job_id, "with a different spec")
            return index
        if key is not None and (found := self.requests.replay(key, "submit", None, fingerprint, known)) is not None:
            return self.writer.job(found["job_id"])
        request = Request(key, "submit", fingerprint) if key is not None else None
        if spec.sweep is None:
            return [self._checked(new_job_id(), spec, dumped, owner, seq, request)]
        sweep_id = "sweep_" + ordered_id()
        return [self._checked(f"{sweep_id}-{i}", spec.model_copy(update={
            "config": {**spec.config, **values}, "name": pipeline.member_name(spec.display_name, values),
            "sweep_id": sweep_id}), None, owner, seq + i, request if i == 0 else None)
            for i, values in enumerate(pipeline.combinations(spec.sweep.parameters))]

    def _checked(self, job_id: str, spec: JobSpec, dumped: dict[str, Any] | None, owner: str | None, seq: int,
                 request: Request | None) -> NewJob:
        """One job's spec checked as every submit is (workload, retention, fit, quota, reach,
        dependencies), ready to store."""
        self.dependencies.check(job_id, spec)
        stored: dict[str, Any] | None = dumped  # the spec as stored: the dump, unless the workload changes it
        if spec.workload is not None:
            config = workloads.validate(spec.workload, spec.config, self.ctx.storage_root)
            spec, stored = spec.model_copy(update={"config": config}), None
        if "keep_checkpoints" not in spec.model_fields_set:
            # Resolved now and stored with the job: a later change of the setting never makes
            # trainq delete checkpoints of a job that was submitted under another rule.
            keep = self.ctx.settings.keep_checkpoints
            spec = spec.model_copy(update={"keep_checkpoints": keep})
            stored = None if stored is None else {**stored, "keep_checkpoints": keep}
        self._check_fits(spec)
        self._check_quota(spec, owner)
        self._check_reach(spec)
        now = self.ctx.clock()
        job = Job(job_id=job_id, name=spec.display_name,
                  spec=spec.model_dump(mode="json") if stored is None else stored,
                  priority=spec.priority, seq=seq, created_at=now, updated_at=now, owner=owner)
        return NewJob(job, Transition(job.job_id, None, S.QUEUED, now, "submitted", 0), request, spec)

    def _check_owner(self, owner: str | None) -> None:
        users = self.ctx.users
        if owner is None or users is None:
            return
        if users.get(owner) is None:
            raise InvalidSpec(f"unknown user {owner!r}: owner must be a user of the users file", field="owner")

    def _check_quota(self, spec: JobSpec, owner: str | None) -> None:
        """Refuse a job its owner's max can never hold, with the numbers."""
        users = self.ctx.users
        if users is None:
            return
        why = quota.never_fits_quota(spec.demand(), users.quota(owner or ""), owner or "", spec.accelerator_types())
        if why is not None:
            raise OverQuota(why, field="num_workers", owner=owner)

    def _check_fits(self, spec: JobSpec) -> None:
        """Refuse a job no node type of the cluster can ever hold (its types, totals, nodes, strategy)."""
        cluster, demand = self.ctx.cluster, spec.demand()
        nodes, most = cluster.nodes(), cluster.max_capacity()
        present = accelerators.unknown_types(spec.accelerator_types(), nodes, most)
        if present is not None:
            raise UnknownAcceleratorType(list(spec.accelerator_types()), present)
        entry = policy.Entry("", 0, 0, demand, spec.worker_resources(), spec.min_workers,
                             types=spec.accelerator_types(), strategy=spec.placement_strategy)
        if accelerators.never_fits(entry, most, nodes):
            raise DoesNotFit(demand, most, spec.placement_strategy)

    def _check_reach(self, spec: JobSpec) -> None:
        """Refuse a spec that reaches head-node folders or storage an admin did not allow."""
        allowed, own, roots = self._reach_rules()
        security.check_package_paths(spec.runtime_env, allowed, own)
        _check_local_dirs(spec.runtime_env)
        security.check_storage_path(spec.storage_path, roots)

    def _reach_rules(self) -> tuple[list[str] | None, list[str], list[str]]:
        """The allowed folders (which depend on whether there are users), trainq's own package folder
        and the storage roots, parsed once per ``settings`` and users (a submit checks them every time)."""
        settings, root, with_users = self.ctx.settings, self.ctx.storage_root, self.ctx.users is not None
        if self._reach is None or self._reach[0] is not settings or self._reach[1] is not with_users:
            roots = [root, *(security.parse_list(settings.storage_roots) or [])]
            allowed = security.allowed_dirs(settings.allowed_dirs, with_users)
            self._reach = (settings, with_users, allowed, [packages_root(root)], roots)
        return self._reach[2], self._reach[3], self._reach[4]


def _check_local_dirs(env: Mapping[str, Any]) -> None:
    """A local working_dir/py_modules is uploaded from the scheduler's machine: it must exist there."""
    for field, value in runtime_env.entries(env):
        path = security.local_path_of(value) if isinstance(value, str) else None
        if path is not None and not os.path.exists(path):
            raise MissingOnServer(
                f"{field} {path!r} does not exist on the scheduler's machine; give a folder there"
                " (shared storage on a cluster) or a URI such as s3://..., gcs://... or https://....zip",
                field=field)
