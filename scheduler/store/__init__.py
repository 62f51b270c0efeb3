"""The durable registry: jobs, their transitions, reports, checkpoints and attempts.

``Store`` is the interface the core depends on; ``SQLiteStore`` is the embedded default
(one file on the head node, WAL) and ``PostgresStore`` (``postgres.py``) the registry on a
database server, for one that must outlive the head node. ``open_store`` picks one by the
``TRAINQ_DB`` location (``url.py``). Every write commits before it returns, so a caller that
heard "done" can rely on it surviving a crash of the process. Both keep the leader lease
(``lease.py``) that lets one scheduler at a time write a shared registry.
"""

from .lease import Lease
from .migrations import MIGRATIONS, SCHEMA_VERSION
from .opening import open_event_store, open_store
from .protocol import LeasedStore, Request, Store
from .sqlite import SQLiteStore
from .url import parse_db_url, redacted

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "Lease", "LeasedStore", "Request", "SQLiteStore", "Store",
           "open_event_store", "open_store", "parse_db_url", "redacted"]
