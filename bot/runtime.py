"""The runtime machinery under the listeners: work after the ack, the ack gate, and the GC seam."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

Work = Callable[[], Awaitable[None]]


class WorkTracker:
    """Counts work still running after an ack, so the console and shutdown can wait for it."""

    def __init__(self) -> None:
        self._running = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def started(self) -> None:
        self._running += 1
        self._idle.clear()

    def finished(self) -> None:
        self._running -= 1
        if self._running <= 0:
            self._running = 0
            self._idle.set()

    @property
    def running(self) -> int:
        return self._running

    async def idle(self, within: float | None = None) -> None:
        """Wait until no work is running; TimeoutError after `within` seconds."""
        await asyncio.wait_for(self._idle.wait(), within)


class AckGate:
    """Lets acks go first: work after an ack waits (briefly) while acks keep arriving.

    Slack gives an ack 3 seconds and work none. Each ack runs start to finish without waiting on
    I/O, so "an ack is in flight" is almost never true even in a burst; what tells a burst is
    that the last ack began moments ago. Work starts once no ack has begun for `quiet_period`,
    or after `max_wait` at the latest, so a burst is acknowledged before its database writes.
    """

    def __init__(self, quiet_period: float = 0.02, max_wait: float = 1.0) -> None:
        self.quiet_period = quiet_period
        self.max_wait = max_wait
        self._in_flight = 0
        self._last_ack = 0.0

    def enter(self) -> None:
        self._in_flight += 1
        self._last_ack = time.monotonic()

    def leave(self) -> None:
        self._in_flight = max(0, self._in_flight - 1)

    async def quiet(self) -> None:
        """Return when acks have paused for `quiet_period`, or after `max_wait` at most."""
        deadline = time.monotonic() + self.max_wait
        while True:
            now = time.monotonic()
            calm_for = now - self._last_ack
            if (self._in_flight == 0 and calm_for >= self.quiet_period) or now >= deadline:
                return
            # A deliberate, bounded back-off: re-check when the quiet period could have passed.
            await asyncio.sleep(min(max(self.quiet_period - calm_for, 0.005), deadline - now))


class WorkQueue:
    """Work a listener does after its ack: queued behind the acks, or (rarely) started at once.

    Bolt's lazy listeners do the same but deep-copy every request to do it, which cost more CPU
    than the whole ack in bench/ack_latency.py. A small pool of workers takes the queue, each
    starting an item only when no ack is in flight (or after the gate's max wait), so a burst of
    requests is acknowledged before its database writes run. Work here should be quick (parse,
    check, record, reply); a long process such as a deploy is started from here and runs in its
    own task.
    """

    def __init__(
        self,
        tracker: WorkTracker | None = None,
        gate: AckGate | None = None,
        worker_count: int = 64,
    ) -> None:
        self.tracker = tracker or WorkTracker()
        self.gate = gate or AckGate()
        self.worker_count = worker_count
        self._queue: asyncio.Queue[Work] = asyncio.Queue()
        self._workers: list[asyncio.Task[None]] = []
        self._started_now: set[asyncio.Task[None]] = set()  # a reference keeps each task alive

    def after_ack(self, work: Work) -> None:
        """Queue `work` to run once the ack is out, acks of other requests going first."""
        self.tracker.started()
        if not self._workers:
            self._workers = [
                asyncio.ensure_future(self._work_loop()) for _ in range(self.worker_count)
            ]
        self._queue.put_nowait(work)

    def start_now(self, work: Work, *, what: str) -> None:
        """Run `work` now, next to the ack, not behind the queue (a trigger_id lives 3 seconds)."""
        self.tracker.started()

        async def run() -> None:
            try:
                await work()
            except Exception:
                log.exception("%s failed", what)
            finally:
                self.tracker.finished()

        task = asyncio.ensure_future(run())
        self._started_now.add(task)
        task.add_done_callback(self._started_now.discard)

    async def _work_loop(self) -> None:
        while True:
            work = await self._queue.get()
            try:
                await self.gate.quiet()
                await work()
            except Exception:
                log.exception("work after an ack failed")
            finally:
                self.tracker.finished()

    async def close(self) -> None:
        """Stop the workers (after `tracker.idle()` when the queued work should finish)."""
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []


def settle_garbage_collector() -> None:
    """Tune the cyclic garbage collector once the bot has started; measured in bench/README.md.

    Everything that exists once the bot has started (modules, clients, the catalog: most of its
    heap) lives until it stops: `gc.freeze()` keeps the collector off it, which removes GC pauses
    from the ack latency tail (bench/ack_latency.py). The young generation is collected every
    20,000 allocations instead of 700: a burst of requests allocates fast, and the default
    thresholds cost about a sixth of the bot's CPU in bench/deploy_overhead.py (CPU per deploy
    8–13 ms with this, the p99 to first write 0.51–0.86 s against 0.64–0.97 s without, in
    alternating runs). Reference counting still frees nearly everything at once; only cycles
    wait a little longer.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)
