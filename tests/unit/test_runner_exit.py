"""A run being stopped ends for trainq when Ray Train released its workers, not when ``fit()`` returns
(``Runner.on_workers_released``): without Ray, a ``fit()`` that blocks until the test lets it go."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

from helpers import spec

from scheduler.runner import Runner


class _Run:
    """A trainer whose ``fit()`` blocks until ``release`` is set, then raises as an aborted run does."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def fit(self) -> None:
        self.release.wait(30)
        raise RuntimeError("the controller died (aborted)")


def _runner(tmp_path, monkeypatch) -> tuple[Runner, _Run, list]:
    run, delivered = _Run(), []
    runner = Runner("job-1", 1, spec(), str(tmp_path), "run-1", None, pool=ThreadPoolExecutor(2))
    monkeypatch.setattr(runner, "_build_trainer", lambda: run)

    async def deliver(event) -> None:
        delivered.append(event)

    monkeypatch.setattr(runner, "_deliver", deliver)
    return runner, run, delivered


def test_a_paused_run_ends_when_its_workers_are_released_and_fit_ending_later_adds_nothing(
        tmp_path, monkeypatch) -> None:
    async def scenario() -> None:
        runner, run, delivered = _runner(tmp_path, monkeypatch)
        await runner.start()
        await runner.request_pause()
        assert await runner.on_report({"step": 7}, "/ck/7", 1.0)  # a plain loop: stop it after this one
        await runner.on_workers_released()
        exit_event = await asyncio.wait_for(runner.wait(), 5)  # fit() still blocks
        assert (exit_event.outcome, exit_event.checkpoint_path) == ("paused", "/ck/7")
        assert not run.release.is_set()
        run.release.set()  # the controller's death reaches fit() seconds later
        await asyncio.sleep(0.3)
        assert [type(e).__name__ for e in delivered] == ["Reported", "Exited"]

    asyncio.run(scenario())


def test_workers_released_for_a_restart_or_a_normal_end_change_nothing(tmp_path, monkeypatch) -> None:
    async def scenario() -> None:
        runner, run, delivered = _runner(tmp_path, monkeypatch)
        await runner.start()
        await runner.on_workers_released()  # e.g. a worker group restarted after a worker failure
        await asyncio.sleep(0.1)
        assert runner.exit_event is None and delivered == []
        run.release.set()
        exit_event = await asyncio.wait_for(runner.wait(), 5)
        assert exit_event.outcome == "failed"  # fit() decided, as before

    asyncio.run(scenario())


def test_a_checkpoint_a_hook_loop_saved_before_it_heard_the_pause_does_not_stop_it(tmp_path, monkeypatch) -> None:
    # Stopping it there would end it while it runs on (an abort lands 0.6-0.9 s later): the steps
    # after that checkpoint would be redone. It hears the pause at its next call, saves, returns.
    async def scenario() -> None:
        runner, run, _ = _runner(tmp_path, monkeypatch)
        await runner.start()
        await runner.hook_state()  # the loop uses the hook
        await runner.request_pause()
        assert not await runner.on_report({"step": 9}, "/ck/9", 1.0)  # its own schedule's checkpoint
        await runner.hook_told(True, 0)  # it heard the pause
        assert not await runner.on_report({"step": 10}, "/ck/10", 2.0)  # and returns after this one
        await runner.on_workers_released()
        exit_event = await asyncio.wait_for(runner.wait(), 5)
        assert (exit_event.outcome, exit_event.checkpoint_path) == ("paused", "/ck/10")
        run.release.set()

    asyncio.run(scenario())
