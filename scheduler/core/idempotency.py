"""Idempotency keys: a verb acts once per key, whoever resends it (a client, or Ray re-running a
call that was in flight when the actor restarted).

A key is committed in the same transaction as the verb's first change of state (the writer takes
it from a ``Once``), so a crash either keeps both or neither; a key seen before gets the answer
recorded for it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

from ..errors import IdempotencyConflict, InvalidSpec
from ..store import Request, Store

R = TypeVar("R", bound=Mapping[str, Any])
#: How often old keys are looked for (each look scans the table).
PRUNE_EVERY_S = 600.0


class Once:
    """A verb's idempotency key, handed to the first write that commits it."""

    def __init__(self, request: Request | None) -> None:
        self._request = request
        self.written = False

    def take(self) -> Request | None:
        """The key for the write about to happen, if no write has taken it yet."""
        if self._request is None or self.written:
            return None
        self.written = True
        return self._request


class Requests:
    """Looks keys up and runs a verb once per key."""

    def __init__(self, store: Store, current: Callable[[str], dict[str, Any]]) -> None:
        self.store = store
        self._current = current  # a job's public form, for a replay whose answer was not recorded
        self._pruned_at: float | None = None

    def prune(self, now: float, ttl_s: float) -> int:
        """Forget keys older than ``ttl_s``, at most once every ``PRUNE_EVERY_S`` (a scan of the
        table); returns how many went. A key resent after that acts again, as a new request."""
        if self._pruned_at is not None and now - self._pruned_at < PRUNE_EVERY_S:
            return 0
        self._pruned_at = now
        return self.store.prune_requests(now - ttl_s)

    def once(self, key: str | None, verb: str, job_id: str, run: Callable[[Once], R]) -> R:
        """Run ``run`` unless ``key`` did ``verb`` to ``job_id`` before (then its first answer)."""
        key = check_key(key)
        if key is None:
            return run(Once(None))
        found = self.replay(key, verb, job_id, None)
        if found is not None:
            # The answer recorded the first time (a verb's answer is JSON-ready: it was stored as such).
            return cast(R, found["response"] or {**self._current(job_id), "success": True, "job_id": job_id,
                                                 "message": f"{verb} was already done for this idempotency key"})
        once = Once(Request(key, verb))
        result = run(once)
        if once.written:
            self.store.set_request_response(key, dict(result))
        return result

    def replay(self, key: str, verb: str, job_id: str | None, fingerprint: str | None,
               known: Mapping[str, dict[str, Any]] | None = None) -> dict[str, Any] | None:
        """What ``key`` did before, or None; a key reused for something else is a conflict.
        ``known``: the stored keys among a batch's, read at once (``Store.find_requests``)."""
        found = self.store.find_request(key) if known is None else known.get(key)
        if found is None:
            return None
        if found["verb"] != verb:
            raise IdempotencyConflict(key, found["verb"], found["job_id"], f"(not to {verb} it)")
        if job_id is not None and found["job_id"] != job_id:
            raise IdempotencyConflict(key, verb, found["job_id"], f"(not job {job_id!r})")
        if fingerprint is not None and found["fingerprint"] != fingerprint:
            raise IdempotencyConflict(key, verb, found["job_id"], "with a different spec")
        return found


def check_key(key: str | None) -> str | None:
    """A usable key or None; a key is 1-200 printable characters (an HTTP header's worth)."""
    if key is None:
        return None
    if not isinstance(key, str) or not 0 < len(key) <= 200 or not key.isprintable():
        raise InvalidSpec("idempotency_key must be 1 to 200 printable characters", field="idempotency_key")
    return key
