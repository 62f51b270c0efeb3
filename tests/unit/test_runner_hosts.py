"""How attempts are spread over runner hosts (``TRAINQ_RUNS_PER_HOST``), and the hosts' names."""

from __future__ import annotations

import pytest

from scheduler.config import RUNNER_HOST_NAME, Settings, parse_runner_host_name, runner_host_name
from scheduler.launcher import choose_slot


def test_runs_fill_the_first_host_with_room_and_a_new_one_only_when_all_are_full() -> None:
    assert choose_slot({}, 4) == 0
    assert choose_slot({0: 3}, 4) == 0
    assert choose_slot({0: 4}, 4) == 1
    assert choose_slot({0: 4, 1: 4, 2: 1}, 4) == 2
    assert choose_slot({0: 4, 1: 2, 2: 4}, 4) == 1  # a host whose runs ended has room again
    assert choose_slot({0: 1, 1: 1}, 1) == 2
    assert choose_slot({1: 5}, 4) == 0  # slot 0's host died with its runs: it is the first with room


def test_spreading_never_puts_more_than_the_limit_on_a_host() -> None:
    loads: dict[int, int] = {}
    for _ in range(37):
        slot = choose_slot(loads, 8)
        loads[slot] = loads.get(slot, 0) + 1
    assert loads == {0: 8, 1: 8, 2: 8, 3: 8, 4: 5}


def test_host_names_round_trip_and_the_first_keeps_its_old_name() -> None:
    assert runner_host_name(0) == RUNNER_HOST_NAME == "runner-host"
    for slot in (0, 1, 2, 17):
        assert parse_runner_host_name(runner_host_name(slot)) == slot
    for other in ("scheduler", "runner-host-", "runner-host-x", "runner-host-01", "runner:j:1", "my-runner-host-2"):
        assert parse_runner_host_name(other) is None


def test_the_setting_reads_a_whole_number_of_at_least_one(monkeypatch) -> None:
    monkeypatch.delenv("TRAINQ_RUNS_PER_HOST", raising=False)
    assert Settings().runs_per_host == 16
    monkeypatch.setenv("TRAINQ_RUNS_PER_HOST", "3")
    assert Settings().runs_per_host == 3
    for bad, says in (("0", "at least 1"), ("two", "not a whole number"), ("1.5", "not a whole number")):
        monkeypatch.setenv("TRAINQ_RUNS_PER_HOST", bad)
        with pytest.raises(ValueError, match=f"TRAINQ_RUNS_PER_HOST={bad!r} .*{says}"):
            Settings()
