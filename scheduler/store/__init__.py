"""The durable registry: jobs, their transitions, reports, checkpoints and attempts.

``Store`` is the interface the core depends on; ``SQLiteStore`` is the embedded default
(one file on the head node, WAL). Every write commits before it returns, so a caller that
heard "done" can rely on it surviving a crash of the process.
"""

from .migrations import MIGRATIONS, SCHEMA_VERSION
from .protocol import Request, Store
from .sqlite import SQLiteStore

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "Request", "SQLiteStore", "Store"]
