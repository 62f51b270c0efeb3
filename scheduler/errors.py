"""One error hierarchy for trainq.

Every error carries structured fields and a ``code`` that the HTTP layer maps to a status
(see ``api/errors.py``, the only place that does). The errors pickle with their fields intact,
so they survive crossing a Ray actor boundary and clients can catch the same types.
"""

from __future__ import annotations

from typing import Any


class TrainqError(Exception):
    """Base of every error trainq raises on purpose."""

    code = "error"

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields

    def __reduce__(self):  # keep fields when pickled across actors
        return (_rebuild, (type(self), self.message, self.fields))

    def to_dict(self) -> dict[str, Any]:
        """The error as the JSON body every interface returns."""
        return {"error": self.code, "message": self.message, **self.fields}


def _rebuild(cls: type[TrainqError], message: str, fields: dict[str, Any]) -> TrainqError:
    err = cls.__new__(cls)
    TrainqError.__init__(err, message, **fields)
    return err


def error_parts(exc: TrainqError) -> tuple[str, str, dict[str, Any]]:
    """``(class name, message, fields)``: the error in plain values, for a wire that does not pickle."""
    return type(exc).__name__, exc.message, exc.fields


def error_from_parts(name: str, message: str, fields: dict[str, Any]) -> TrainqError:
    """The error ``error_parts`` described, as its own class (``TrainqError`` for a name unknown here)."""
    return _rebuild(_by_name().get(name, TrainqError), message, dict(fields))


def _by_name() -> dict[str, type[TrainqError]]:
    found: dict[str, type[TrainqError]] = {}
    todo = [TrainqError]
    while todo:
        cls = todo.pop()
        found[cls.__name__] = cls
        todo += cls.__subclasses__()
    return found


class JobNotFound(TrainqError):
    """No job has this id."""

    code = "not_found"

    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job with id {job_id!r}", job_id=job_id)


class IllegalTransition(TrainqError):
    """The transition table forbids this change of state."""

    code = "conflict"

    def __init__(self, job_id: str, current: str, target: str, action: str, why: str | None = None) -> None:
        super().__init__(
            f"cannot {action} job {job_id!r}: it is {current}"
            + (f"; {why}" if why else f" and a {current} job cannot become {target}"),
            job_id=job_id,
            status=current,
            target=target,
            action=action,
        )


class InvalidSpec(TrainqError):
    """A job spec (or another input) is malformed; ``field`` names what is wrong."""

    code = "invalid"
    #: True for a well-formed input that this server cannot satisfy as things stand (the cluster's
    #: size, a file on its machine, a checkpoint the job recorded). Over HTTP that is a 409, not a
    #: 422: the OpenAPI schema allows the request, and a 422 there would say the schema lies.
    #: The ``error`` code stays ``invalid``, so clients raise the same type and the CLI the same exit code.
    depends_on_server = False

    def __init__(self, message: str, field: str | None = None, **fields: Any) -> None:
        super().__init__(message, field=field, **fields)


class DoesNotFit(InvalidSpec):
    """The job asks for more than this cluster can ever give."""

    depends_on_server = True

    def __init__(self, requested: dict[str, float], available: dict[str, float], strategy: str = "PACK") -> None:
        short = {
            k: v for k, v in requested.items() if v > available.get(k, 0.0) + 1e-9
        }
        # Within the totals, what no node (or no node of the job's types) can hold with its strategy.
        where = f"short of {_fmt(short)}" if short else f"no set of its nodes holds the gang with {strategy}"
        super().__init__(
            f"job can never fit on this cluster: it asks for {_fmt(requested)}"
            f" but the cluster has at most {_fmt(available)} ({where})",
            field="resources_per_worker",
            requested=requested,
            available=available,
        )


class UnknownAcceleratorType(InvalidSpec):
    """The job names only accelerator types that no node of the cluster has, nor its promised maximum."""

    depends_on_server = True

    def __init__(self, requested: list[str], present: list[str]) -> None:
        have = ", ".join(present) if present else "none"
        super().__init__(
            f"no node of this cluster has accelerator type {' or '.join(requested)}; the types it has: {have}",
            field="accelerator_type",
            requested=requested,
            available=present,
        )


class CheckpointRefused(InvalidSpec):
    """A resume named a checkpoint this job did not record."""

    depends_on_server = True

    def __init__(self, job_id: str, path: str, why: str) -> None:
        super().__init__(
            f"checkpoint_path {path!r} refused for job {job_id!r}: {why}",
            field="checkpoint_path",
            job_id=job_id,
            checkpoint_path=path,
        )


class MissingOnServer(InvalidSpec):
    """An input names a file, folder or cached model that the scheduler's machine does not have."""

    depends_on_server = True


class BadDependency(InvalidSpec):
    """A ``depends_on`` this registry cannot satisfy: an unknown job, the job itself, or a cycle.

    Over HTTP a 409 naming ``depends_on``: well formed, refused for what the registry holds now.
    """

    depends_on_server = True

    def __init__(self, why: str) -> None:
        super().__init__(f"depends_on: {why}", field="depends_on")


class SweepTooLarge(InvalidSpec):
    """A sweep makes more jobs than a server makes for one submit (``spec.MAX_SWEEP_JOBS``).

    Over HTTP a 409 naming ``sweep.parameters``: each list is well formed (a JSON schema cannot
    bound the product of their lengths); this server refuses that many jobs at once.
    """

    depends_on_server = True

    def __init__(self, size: int, most: int) -> None:
        super().__init__(f"sweep.parameters: {size} combinations; a sweep makes at most {most} jobs",
                         field="sweep.parameters", size=size, most=most)


class NotAllowedHere(InvalidSpec):
    """An input names a folder or storage this server's admin does not allow (its allow-lists).

    Over HTTP a 403 naming the field: the request is well formed (the OpenAPI document every server
    shares allows it), and this server's policy refuses it.
    """


class OverQuota(InvalidSpec):
    """The job asks for more than its owner's quota (users file) may ever hold."""

    depends_on_server = True


class NodeNotFound(TrainqError):
    """No live Ray node has this id (``trainq nodes`` lists them)."""

    code = "not_found"


class DrainRefused(InvalidSpec):
    """A drain Ray or trainq refused (an idle-termination drain of a node that is busy)."""

    depends_on_server = True


class IdempotencyConflict(TrainqError):
    """An idempotency key came back with a different request than the one it was first used for."""

    code = "conflict"

    def __init__(self, key: str, verb: str, job_id: str, why: str) -> None:
        super().__init__(f"idempotency key {key!r} was already used to {verb} job {job_id!r} {why};"
                         " use a new key for a new request", idempotency_key=key, job_id=job_id, action=verb)


class Unauthorized(TrainqError):
    """A request without the configured API token."""

    code = "unauthorized"


class Forbidden(TrainqError):
    """A known user asked to act on another user's job (only its owner or an admin may)."""

    code = "forbidden"


class NotReady(TrainqError):
    """The service cannot answer yet (e.g. no scheduler actor reachable)."""

    code = "unavailable"


def _fmt(resources: dict[str, float]) -> str:
    if not resources:
        return "nothing"
    return ", ".join(f"{k}={v:g}" for k, v in sorted(resources.items()))


class NotCooperative(TrainqError):
    """Checkpoint-now asked of a job whose train function does not use trainq's hook."""

    code = "conflict"

    def __init__(self, job_id: str, why: str) -> None:
        super().__init__(f"cannot checkpoint job {job_id!r} now: {why}", job_id=job_id, action="checkpoint")


class CheckpointMissing(TrainqError):
    """A resume named (or would use) a recorded checkpoint that is gone from storage or incomplete."""

    code = "conflict"

    def __init__(self, job_id: str, path: str, newest_existing: str | None, why: str) -> None:
        hint = (f"the newest recorded checkpoint that still exists is {newest_existing!r}: resume from it"
                f" with checkpoint_path={newest_existing}" if newest_existing
                else "no recorded checkpoint of this job still exists")
        super().__init__(f"cannot resume job {job_id!r} from checkpoint {path!r}: {why}; {hint}",
                         job_id=job_id, checkpoint_path=path, newest_existing=newest_existing, action="resume")


class TooLarge(TrainqError):
    """An upload is larger than the setting allows (``limit_bytes``)."""

    code = "too_large"


class UnsupportedRegistry(TrainqError):
    """``TRAINQ_DB`` / ``--db`` names a database this trainq cannot use (``given`` is redacted)."""

    code = "invalid"

    def __init__(self, given: str, why: str) -> None:
        super().__init__(f"registry {given!r} refused: {why}; use a file path, sqlite:///PATH or"
                         " postgresql://USER:PASSWORD@HOST:PORT/DATABASE", field="db", given=given)


class RegistryUnavailable(TrainqError):
    """The registry's database server cannot be reached (at open, or lost mid-run); nothing of the
    interrupted call was committed. ``where`` is ``host:port``, never the password."""

    code = "unavailable"

    def __init__(self, where: str, why: str) -> None:
        super().__init__(f"the job registry at {where} is unavailable: {why}", where=where)


class LeaseLost(TrainqError):
    """A write by a scheduler whose leader lease (``epoch``) was taken over by a newer one: refused,
    so a deposed scheduler cannot change the registry behind the new leader's back."""

    code = "unavailable"

    def __init__(self, epoch: int, current_epoch: int, holder: str | None) -> None:
        super().__init__(f"this scheduler's lease (epoch {epoch}) was taken over by {holder or 'another'}"
                         f" (epoch {current_epoch}): it is no longer the leader and may not write",
                         epoch=epoch, current_epoch=current_epoch, holder=holder)


class RegistryNotEmpty(TrainqError):
    """``trainq db copy`` refuses a target registry that already holds something (``counts``)."""

    code = "conflict"

    def __init__(self, where: str, counts: dict[str, int]) -> None:
        held = ", ".join(f"{n} {table}" for table, n in counts.items() if n)
        super().__init__(f"the registry at {where} is not empty ({held}): db copy fills only an empty one;"
                         " point --to at a new database", where=where, counts=counts)
