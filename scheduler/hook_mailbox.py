"""The cooperative hook's mailbox on the runner host: rank 0's messages for the other ranks."""

from __future__ import annotations

import asyncio
from typing import Any


class HookMailbox:
    """Rank 0's hook messages for the other ranks of one attempt (``scheduler.train.HookSync``,
    without a torch process group): message ``index`` is kept until each of its ``readers`` took
    it, and a reader that asks first waits for it. Rank 0 may run ahead of the others, so more
    than one can be waiting to be read."""

    def __init__(self) -> None:
        self._box: dict[int, list[Any]] = {}  # index -> [payload, reads left]
        self._sent: dict[int, asyncio.Event] = {}

    def _event(self, index: int) -> asyncio.Event:
        return self._sent.setdefault(index, asyncio.Event())

    def publish(self, index: int, payload: Any, readers: int) -> None:
        """Rank 0 sends message ``index``; ``readers`` ranks will each take it once."""
        self._box[index] = [payload, readers]
        self._event(index).set()

    async def take(self, index: int) -> Any:
        """Message ``index``, once it was sent; the last of its readers drops it."""
        await self._event(index).wait()
        entry = self._box[index]
        entry[1] -= 1
        if entry[1] <= 0:
            del self._box[index], self._sent[index]
        return entry[0]

    def __len__(self) -> int:
        return len(self._sent)
