"""The cooperative hook's agreement protocol (``scheduler.train.HookSync``) with threads as ranks:
every rank gets the same answer at the same call, a request lands within one sync interval and
the lead, the broadcast runs on a small share of calls, and (sent ahead) no rank waits for one
after the first. Also the two real carriers: the runner's mailbox and a gloo group."""

from __future__ import annotations

import threading

import pytest

from scheduler.train import HookSync


class FakeCollective:
    """An asynchronous broadcast for ranks that are threads: ``post(index, payload)`` starts
    broadcast ``index`` (rank 0 sends), the function it returns waits for rank 0's payload.
    Counts the broadcasts, and the takes that found their message not there yet."""

    def __init__(self, world: int) -> None:
        self.world = world
        self.sent: dict[int, threading.Event] = {}
        self.values: dict[int, object] = {}
        self.lock = threading.Lock()
        self.calls = 0
        self.waited = 0

    def _event(self, index: int) -> threading.Event:
        with self.lock:
            return self.sent.setdefault(index, threading.Event())

    def post(self, rank: int, index: int, payload):
        if rank == 0:
            self.values[index] = payload
            self.calls += 1
            self._event(index).set()
            return lambda: payload

        def take():
            event = self._event(index)
            if not event.is_set():
                with self.lock:
                    self.waited += 1
            event.wait()
            return self.values[index]

        return take


class FakeRunner:
    """The runner's hook state as a function of simulated time (rank 0's poller would copy it)."""

    def __init__(self, pause_at_step: int | None = None, checkpoint_at_steps: tuple[int, ...] = ()) -> None:
        self.pause_at_step, self.checkpoint_at_steps = pause_at_step, checkpoint_at_steps
        self.step = 0
        self.told: list[tuple[bool, int]] = []

    def state(self) -> tuple[bool, int]:
        gen = sum(1 for s in self.checkpoint_at_steps if self.step >= s)
        return self.pause_at_step is not None and self.step >= self.pause_at_step, gen


def _run(world: int, steps: int, runner: FakeRunner, step_s: float = 0.01, target_s: float = 0.1,
         lockstep: bool = False):
    """Each rank runs the documented loop: should_checkpoint(); after a checkpoint, pause_requested().
    ``lockstep``: each step ends with all ranks together (a data-parallel step's all-reduce)."""
    collective = FakeCollective(world)
    step_end = threading.Barrier(world)
    answers: dict[int, list[tuple[int, bool, bool]]] = {r: [] for r in range(world)}
    stopped_at: dict[int, int] = {}
    clock = [0.0]  # simulated: rank 0 advances it one step at a time

    def rank_loop(rank: int) -> None:
        sync = HookSync(rank, world, lambda i, p: collective.post(rank, i, p), runner.state,
                        lambda: clock[0], told=lambda p, g: runner.told.append((p, g)), target_s=target_s)
        for step in range(steps):
            if rank == 0:
                runner.step = step
                clock[0] = step * step_s
            pause, checkpoint = sync.ask()
            answers[rank].append((step, pause, checkpoint))
            if checkpoint:
                pause_now, _ = sync.ask()
                if pause_now:
                    stopped_at[rank] = step
                    return
            if lockstep:
                step_end.wait()

    threads = [threading.Thread(target=rank_loop, args=(r,)) for r in range(world)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return answers, stopped_at, collective


@pytest.mark.parametrize("world", [4, 64])
def test_every_rank_answers_the_same_at_the_same_call_and_stops_at_the_same_step(world) -> None:
    runner = FakeRunner(pause_at_step=130, checkpoint_at_steps=(40,))
    answers, stopped_at, collective = _run(world, 400, runner)
    assert all(answers[r] == answers[0] for r in range(world))
    assert len(set(stopped_at.values())) == 1 and len(stopped_at) == world
    stop = stopped_at[0]
    # Asked at step 130; syncs come every ~target_s (10 steps of 10 ms), and each sync's answer is
    # decided LEAD_S (5 steps) before it: it lands within one interval and the lead (decided a
    # whole sync ahead, as until 2026-12-04, it took up to two intervals: 18 steps here).
    assert 130 <= stop <= 130 + 10 + 5 + 1
    checkpoints = [step for step, _, ckpt in answers[0] if ckpt]
    assert checkpoints[0] in range(40, 40 + 22) and checkpoints[-1] == stop  # the checkpoint-now once, then the pause
    assert len(checkpoints) == 2
    # The broadcast ran on a small share of the calls: about one per target_s.
    assert collective.calls <= stop / 10 + 4, collective.calls
    assert (True, 1) in runner.told  # the runner heard that the loop will stop by itself


def test_messages_go_ahead_so_in_lockstep_nobody_waits_after_the_first() -> None:
    # Steps that end together (an all-reduce): rank 0 sends sync m+1's message a few calls before
    # it, before those steps end, so the others find it there; only the first message is waited for.
    world = 8
    answers, stopped_at, collective = _run(world, 300, FakeRunner(pause_at_step=150), lockstep=True)
    assert len(set(stopped_at.values())) == 1 and len(stopped_at) == world
    assert all(answers[r] == answers[0] for r in range(world))
    assert collective.calls >= 10
    assert collective.waited <= world - 1, collective.waited


def test_a_single_worker_needs_no_broadcast_and_hears_at_once() -> None:
    runner = FakeRunner(pause_at_step=5)
    _answers, stopped_at, collective = _run(1, 50, runner)
    assert stopped_at == {0: 5} and collective.calls == 0


def test_nothing_asked_means_no_checkpoint_and_no_stop() -> None:
    answers, stopped_at, _ = _run(8, 200, FakeRunner())
    assert stopped_at == {} and not any(p or c for _, p, c in answers[0])


def _gloo_rank(rank: int, world: int, port: int, out) -> None:
    import torch.distributed as dist

    from scheduler.train import _poster

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        post = _poster(None, "attempt", rank, world)
        # All five on their way before any is taken (the hook keeps one ahead; more must work too).
        takes = [post(n, (n % 3 == 0, n % 2 == 0, 15 + n, 1 + n) if rank == 0 else None) for n in range(5)]
        out.put((rank, [take() for take in takes]))
    finally:
        dist.destroy_process_group()


def test_with_a_torch_process_group_the_ranks_agree_over_gloo() -> None:
    # The hook's real carrier when a job runs torch.distributed: 4 processes, every rank gets rank 0's messages.
    import multiprocessing
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_gloo_rank, args=(r, 4, port, out)) for r in range(4)]
    for p in procs:
        p.start()
    results = dict(out.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(30)
    expected = [(n % 3 == 0, n % 2 == 0, 15 + n, 1 + n) for n in range(5)]
    assert results == {r: expected for r in range(4)}


def test_the_runners_mailbox_keeps_a_message_until_every_reader_took_it() -> None:
    # The carrier without a torch process group: rank 0 leaves messages at the runner, possibly
    # several ahead of a slow rank; a reader that asks first waits; the last reader drops it.
    import asyncio

    from scheduler.runner import HookMailbox

    async def scenario() -> None:
        box = HookMailbox()
        early = asyncio.ensure_future(box.take(0))
        await asyncio.sleep(0.01)
        assert not early.done()  # not sent yet: it waits
        box.publish(0, (False, False, 7), readers=2)
        box.publish(1, (True, False, 3), readers=2)
        assert await asyncio.wait_for(early, 1) == (False, False, 7)
        assert len(box) == 2  # message 0 has a reader left, message 1 two
        assert await box.take(0) == (False, False, 7)
        assert await box.take(1) == (True, False, 3) and len(box) == 1
        assert await box.take(1) == (True, False, 3) and len(box) == 0

    asyncio.run(scenario())
