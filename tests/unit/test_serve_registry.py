"""``trainq serve`` and its registry: one it cannot use stops it before anything starts, with a
message naming the location (host:port for a server) and never the password or a traceback; and
what it says once the scheduler answers, on a leader and on a standby, and when a standby stops."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import REPO
from pg import free_port

from scheduler.cli import build_parser
from scheduler.cli.commands import UsageError
from scheduler.cli.serve import cmd_serve, ready_lines

SECRET = "pw-never-shown"


def _serve(*argv: str) -> subprocess.CompletedProcess[str]:
    # timeout: a bound against a hang, not a speed claim.
    # A bare environment: no TRAINQ_DB or token of whoever runs the tests.
    return subprocess.run([sys.executable, "-m", "scheduler.cli", "serve", *argv], check=False, cwd=REPO,
                          capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(REPO / ".no-home")})


def test_serve_against_an_unreachable_database_exits_naming_host_and_port() -> None:
    port = free_port()  # nothing listens there
    done = _serve("--db", f"postgresql://trainq:{SECRET}@127.0.0.1:{port}/trainq")
    assert done.returncode == 2, done.stderr
    assert f"127.0.0.1:{port}" in done.stderr and "unavailable" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout and SECRET not in done.stderr + done.stdout
    assert "scheduler ready" not in done.stdout  # nothing started


def test_serve_refuses_an_unsupported_registry_url_without_a_traceback(tmp_path) -> None:
    done = _serve("--db", f"mysql://trainq:{SECRET}@db.example:3306/trainq")
    assert done.returncode == 2, done.stderr
    assert "'mysql' is not supported" in done.stderr and "mysql://trainq:***@db.example:3306/trainq" in done.stderr
    assert "Traceback" not in done.stderr and SECRET not in done.stderr
    assert not (REPO / "mysql:").exists()  # not taken as a relative file path


def test_the_registry_is_checked_before_ray_or_the_scheduler_actor_starts(monkeypatch) -> None:
    import ray

    def no_ray(**_kwargs: object) -> None:
        raise AssertionError("ray.init was called before the registry was checked")

    monkeypatch.setattr(ray, "init", no_ray)
    monkeypatch.delenv("TRAINQ_USERS_FILE", raising=False)
    args = build_parser().parse_args(["serve", "--db", f"postgresql://u:{SECRET}@127.0.0.1:{free_port()}/db"])
    with pytest.raises(UsageError) as refused:
        cmd_serve(args)
    assert refused.value.fields["where"].startswith("127.0.0.1:") and SECRET not in str(refused.value)


LEADER_HEALTH = {"storage_root": "/shared/storage", "db_path": "postgresql://trainq:***@db:5432/trainq",
                 "role": "leader", "holder": "scheduler@abc", "lease_epoch": 3, "capacity": {"CPU": 8.0}}


def test_a_leader_says_it_is_ready_with_the_registry_as_health_shows_it() -> None:
    (line,) = ready_lines(LEADER_HEALTH)
    assert line == ("trainq: scheduler ready (storage /shared/storage, registry"
                    ' postgresql://trainq:***@db:5432/trainq, cluster {"CPU": 8.0})')


def test_a_standby_says_who_leads_and_that_it_takes_over_when_that_lease_expires() -> None:
    # A standby's health has no core figures (no capacity) and names the lease's holder.
    health = {**LEADER_HEALTH, "role": "standby", "holder": "scheduler@new",
              "leader": {"holder": "scheduler@old", "epoch": 3, "expires_in_s": 12.5}}
    del health["capacity"], health["lease_epoch"]
    ready, standby = ready_lines(health)
    assert ready.endswith("registry postgresql://trainq:***@db:5432/trainq)")
    assert "STANDBY" in standby and "scheduler@old leads" in standby and "epoch 3" in standby
    assert "takes over when that lease expires (12.5 s" in standby and "TRAINQ_LEASE_TTL_S" in standby


def test_a_standby_facing_a_free_lease_says_it_is_taking_over() -> None:
    health = {**LEADER_HEALTH, "role": "standby", "leader": None}
    _, standby = ready_lines(health)
    assert "standby" in standby and "takes over at its next housekeeping tick" in standby


class _Server:
    """uvicorn.Server's part that serve_until_signal uses: ``run`` asks for a stop as Ctrl-C would."""

    def __init__(self) -> None:
        self.should_exit = False

    def run(self) -> None:
        import signal
        import time

        signal.raise_signal(signal.SIGTERM)
        while not self.should_exit:
            time.sleep(0.01)


class _Call:
    def __init__(self, name: str) -> None:
        self.name = name

    def remote(self, *args: object) -> str:
        return self.name


def test_a_standby_stopped_says_it_runs_no_job_without_a_traceback(monkeypatch, capsys) -> None:
    import signal

    import ray

    from scheduler.cli.serve import serve_until_signal
    from scheduler.errors import NotReady

    class Handle:
        drain = _Call("drain")
        draining = _Call("draining")

    def get(ref: str) -> object:
        assert ref == "drain", f"{ref} asked of a standby"
        raise NotReady("this scheduler is a standby: scheduler@old leads the registry (epoch 3)")

    monkeypatch.setattr(ray, "get", get)
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        assert serve_until_signal(_Server(), Handle(), grace_s=1) == 0
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    out = capsys.readouterr().out
    assert "standby and runs no job" in out and "every job is paused" not in out
