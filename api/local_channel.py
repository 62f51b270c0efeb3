"""The scheduler actor's local channel as the API finds and keeps it (``scheduler.channel``)."""

from __future__ import annotations

import logging
import time
from typing import Any

from scheduler.channel import ChannelClient

logger = logging.getLogger("trainq.api")


class LocalChannel:
    """The scheduler actor's local channel, found through a Ray call and used while this process
    shares the actor's machine (elsewhere its socket is not there to connect to); after it closes
    (the actor restarted) it is found again."""

    #: How long to wait before trying again after the channel could not be had.
    RETRY_S = 5.0

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self._client: ChannelClient | None = None
        self._connecting = False
        self._next_try = 0.0
        self._said: str | None = None  # what was last logged, so a lasting state is logged once

    @property
    def connected(self) -> bool:
        """Whether calls go over the channel now."""
        return self._client is not None and not self._client.closed

    async def client(self) -> ChannelClient | None:
        """The open connection, or None (calls go through Ray meanwhile)."""
        if self.connected:
            return self._client
        if self._connecting or time.monotonic() < self._next_try:
            return None  # another request is connecting, or it failed a moment ago
        self._connecting = True
        try:
            self._client = await self._connect()
            self._say("calling the scheduler over its local channel")
        except Exception as e:  # noqa: BLE001 - whatever keeps the channel away, Ray calls still work
            self._client = None
            self._next_try = time.monotonic() + self.RETRY_S
            self._say(f"calling the scheduler through Ray: no local channel ({e})")
        finally:
            self._connecting = False
        return self._client

    async def _connect(self) -> ChannelClient:
        where = await self.handle.channel.remote()
        # On another node the socket is not here (FileNotFoundError); only the actor knows the secret.
        return await ChannelClient.connect(where["path"], where["secret"])

    def _say(self, what: str) -> None:
        if what != self._said:
            self._said = what
            logger.info(what)
