"""A throwaway local Postgres server for the tests and the benchmarks (not for production).

Debian's ``postgresql`` package (``scripts/setup.sh`` installs it, as root with apt) provides
``initdb`` and ``pg_ctl``; the server refuses to run as root, so as root they run as the
``postgres`` user (``runuser``) on a temp folder it owns. Trust authentication, 127.0.0.1 only,
on a free port; fsync off unless asked for (a test server: what it holds is thrown away).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

#: Why no server can be started here, or None when one can (what a skipped test says).
INSTALL_HINT = ("no Postgres server binaries (initdb, pg_ctl): install Debian's postgresql"
                " (scripts/setup.sh does, as root: apt-get install -y postgresql)")


def bin_dir() -> str | None:
    """The folder of ``initdb`` and ``pg_ctl`` (the newest Debian version first), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]), reverse=True)
    if found:
        return os.path.dirname(found[0])
    on_path = shutil.which("pg_ctl")
    return os.path.dirname(on_path) if on_path and shutil.which("initdb") else None


def free_port() -> int:
    """A TCP port nothing listens on now, on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """One server on a temp folder; ``start``/``stop`` may repeat (a test takes the server away)."""

    def __init__(self, fsync: bool = False) -> None:
        found = bin_dir()
        if found is None:
            raise RuntimeError(INSTALL_HINT)
        self.bin = found
        self.dir = Path(tempfile.mkdtemp(prefix="trainq-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
        self.running = False
        #: Off for the tests (what they write is thrown away); on for a benchmark, like a real server.
        self.fsync = fsync

    def _run(self, tool: str, *args: str) -> None:
        cmd = [os.path.join(self.bin, tool), *args]
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        durability = "" if self.fsync else " -c fsync=off -c full_page_writes=off"
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} -c max_connections=50{durability}"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "log"), "-o", options, "-w", "-t", "60",
                  "start")
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``immediate``: as if it crashed; ``fast``: closing every session)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")
        self.running = False

    def url(self, database: str = "postgres", password: str | None = None) -> str:
        """A connection URL for ``database`` (with a password when given: trust ignores it)."""
        user = f"postgres:{password}" if password else "postgres"
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create an empty database; returns its URL."""
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run one SQL command with psql; returns what it printed."""
        psql = os.path.join(self.bin, "psql")
        done = subprocess.run([psql if os.path.exists(psql) else "psql", "-h", "127.0.0.1", "-p", str(self.port),
                               "-U", "postgres", "-d", database, "-Atc", sql],
                              check=False, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"psql failed: {done.stderr.strip()}")
        return done.stdout.strip()

    def destroy(self) -> None:
        """Stop the server if it runs and delete its folder."""
        try:
            if self.running:
                self.stop("immediate")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
