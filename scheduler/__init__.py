"""trainq: a scheduler for Ray Train jobs. ``client = scheduler.connect()`` to start."""

from .client import Client, RayClient, connect
from .errors import CheckpointRefused, DoesNotFit, IllegalTransition, InvalidSpec, JobNotFound, TrainqError
from .spec import JobSpec
from .states import JobStatus

__all__ = [
    "CheckpointRefused", "Client", "DoesNotFit", "IllegalTransition", "InvalidSpec", "JobNotFound",
    "JobSpec", "JobStatus", "RayClient", "TrainqError", "connect",
]
