"""One active scheduler per registry, from the scheduler's side of the registry's lease.

The registry holds one lease with an epoch (``scheduler.store.lease``). A scheduler takes it
before it acts on the registry, and every write it makes is fenced by that epoch: once another
scheduler takes the lease, the first one's writes are refused (``LeaseLost``), however late they
come. A scheduler that finds the lease held by a live leader waits as a *standby*: it answers
``health`` and nothing else, and takes over when the lease expires (its holder stopped renewing:
killed, partitioned, its cluster lost). The holder's name says which actor on which machine holds
it (``holder_name``): when that process is known dead (it ran on this machine and is gone: Ray
restarted the actor, or ``trainq serve`` was killed and started again with a new embedded Ray) the
lease is taken over at once, with a new epoch that fences whatever the dead one left open, instead
of after it expires.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from .store.lease import Lease


class Leasing(Protocol):
    """What the registry offers for the lease (``SQLiteStore`` and ``PostgresStore``)."""

    def acquire_lease(self, holder: str, ttl_s: float, now: float) -> Lease | None: ...
    def renew_lease(self, holder: str, epoch: int, ttl_s: float, now: float) -> bool: ...
    def current_lease(self) -> Lease | None: ...


def holder_name(actor: str, actor_id: str, host: str | None = None, pid: int | None = None) -> str:
    """``<actor name>@<Ray actor id>@<host>:<pid>``: who holds a lease, and where to see if it lives."""
    return f"{actor}@{actor_id}@{host or socket.gethostname()}:{os.getpid() if pid is None else pid}"


def known_dead(holder: str) -> bool:
    """Whether the process named in ``holder`` ran on this machine and no longer exists (only then
    can we know; a holder elsewhere is alive until its lease expires)."""
    host, _, pid = holder.rpartition("@")[2].rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # it exists, under another user
        return False
    return False


@dataclass
class Leadership:
    """This scheduler's standing on its registry: leader (with its lease) or standby."""

    store: Leasing
    holder: str
    ttl_s: float
    clock: Callable[[], float] = time.time
    lease: Lease | None = None  # ours, while we lead
    renewed_at: float = 0.0
    is_dead: Callable[[str], bool] = known_dead

    @property
    def leading(self) -> bool:
        return self.lease is not None

    def take(self) -> bool:
        """Take the lease if it is free, expired or already ours; True when this scheduler leads."""
        now = self.clock()
        self.lease = self.store.acquire_lease(self.holder, self.ttl_s, now)
        if self.lease is None:
            current = self.store.current_lease()
            if current is not None and self.is_dead(current.holder):
                # Taken under the dead holder's name (the rule lets a holder take its own lease
                # at once), with a new epoch; this scheduler renews it under that name.
                self.lease = self.store.acquire_lease(current.holder, self.ttl_s, now)
                if self.lease is not None:
                    self.holder = current.holder
        self.renewed_at = now
        return self.lease is not None

    def keep(self) -> bool:
        """Renew the lease once a third of its time has passed; False once it is lost (another
        scheduler took it, so this one must stop acting)."""
        if self.lease is None:
            return False
        now = self.clock()
        if now - self.renewed_at < self.ttl_s / 3:
            return True
        if not self.store.renew_lease(self.holder, self.lease.epoch, self.ttl_s, now):
            self.lease = None
            return False
        self.lease = Lease(self.holder, self.lease.epoch, now + self.ttl_s)
        self.renewed_at = now
        return True

    def lose(self) -> None:
        """Forget the lease (a write was refused: another scheduler leads now)."""
        self.lease = None

    def describe(self) -> dict[str, Any]:
        """For ``health``: this scheduler's role, and the registry's leader as the lease says."""
        if self.lease is not None:
            return {"role": "leader", "holder": self.holder, "lease_epoch": self.lease.epoch}
        current = self.store.current_lease()
        leader = None if current is None else {"holder": current.holder, "epoch": current.epoch,
                                                "expires_in_s": round(current.expires_at - self.clock(), 1)}
        return {"role": "standby", "holder": self.holder, "leader": leader}

    def standby_message(self) -> str:
        """Why this scheduler answers nothing but ``health``."""
        current = self.store.current_lease()
        if current is None or not current.live(self.clock()):
            return "this scheduler is taking over the registry; try again in a moment"
        return (f"this scheduler is a standby: {current.holder} leads the registry (epoch {current.epoch}); "
                f"it takes over if that lease expires (in {current.expires_at - self.clock():.0f} s at the latest "
                "without renewal)")
