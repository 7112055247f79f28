"""One `run_requests` call: jobs spread over the jails by a single-threaded event loop."""

from __future__ import annotations

import logging
import selectors
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from codeio_dagster.progress import Progress
from codeio_dagster.sandbox.jobs import HOST_MADE
from codeio_dagster.sandbox.schedule import (
    JobQueue,
    PoolChoice,
    may_write_ahead,
    pick_pool,
    retire_first,
    start_estimate_ms,
)
from codeio_dagster.sandbox.worker import Worker, WorkerDied

if TYPE_CHECKING:
    from codeio_dagster.sandbox.executor import Executor, PoolKey

log = logging.getLogger(__name__)

# Requests written ahead to one jail: it starts the next job without waiting for the host.
_WINDOW = 4
# Jails kept running, per slot: as many as a light and a heavy pool under each of the two hash
# seeds had before heavy pools were split by module set. Past it, an idle one stops.
_RUNNING_PER_SLOT = 4


class Batch:
    """One `run_requests` call: a single-threaded event loop over the jails.

    Each of the `worker_count()` slots runs one job at a time, in a jail of the request's pool
    (its hash seed and the heavy modules its code names, `Executor.pool_modules`), so no more
    jobs execute at once than there are cores. Up to `_WINDOW` requests are written ahead to a
    jail so that it never waits for the host between jobs, and the host wakes once for several
    replies when it is slow to get a CPU. Which job a free slot takes next is `schedule`'s
    policy: unknown cost first, then longest expected job (with its jail's start-up) first.
    """

    def __init__(
        self,
        executor: Executor,
        requests: Sequence[tuple[int | None, dict[str, Any]]],
        progress: bool | str,
        on_reply: Callable[[int, dict[str, Any]], None] | None,
        jails: Mapping[PoolKey, int] | None = None,
        expected_ms: Callable[[dict[str, Any]], float | None] | None = None,
    ):
        self.ex = executor
        # A request's expected cost in ms, or None if unknown: the order jobs start in
        # (`schedule`), never what they reply.
        self.expected_ms = expected_ms
        # Most jails of a pool this batch may have running (Executor.run_requests); read as the
        # batch goes, so the caller may change it from on_reply.
        self.caps = jails if jails is not None else {}
        self.requests: list[tuple[int | None, dict[str, Any]]] = []
        self.on_reply = on_reply
        self.replies: list[dict[str, Any] | None] = []
        self.left = 0
        self.pending: dict[PoolKey, JobQueue] = {}
        self.slots: list[Worker | None] = [None] * executor.settings.worker_count()
        self.label = progress if isinstance(progress, str) else executor.progress
        self.progress = progress
        self.bar: Any = None
        self.sel = selectors.DefaultSelector()
        self.add(requests)

    def add(self, requests: Sequence[tuple[int | None, dict[str, Any]]]) -> None:
        """More requests for this batch, also while it runs (from on_reply): each joins its pool's
        queue in `schedule.job_key` order, and its reply comes with index `len` so far."""
        if not requests:
            return
        start = len(self.requests)
        self.requests.extend(requests)
        self.replies.extend([None] * len(requests))
        self.left += len(requests)
        self.ex.requests_run += len(requests)
        default_seed = self.ex.settings.hash_seed
        for i, (seed, req) in enumerate(requests, start):
            key = (default_seed if seed is None else seed, self.ex.pool_modules(req["code"]))
            cost = self.expected_ms(req) if self.expected_ms is not None else None
            self.pending.setdefault(key, JobQueue()).push(i, cost)
        if self.bar is not None:
            self.bar.total += len(requests)
        elif self.label:
            # A stage's jobs (Executor.progress): log lines for the UI's run log and the CLI.
            self.bar = Progress(self.label, len(requests), log=log, unit="sandbox jobs")
        elif self.progress is True:
            self.bar = _progress_bar(len(requests))

    def run(self) -> list[dict[str, Any]]:
        try:
            while self.left:
                for slot in range(len(self.slots)):
                    self._feed(slot)
                self._wait()
        finally:
            self.sel.close()
            if self.bar is not None:
                self.bar.close()
        lost = {"status": "killed", "error": "lost", HOST_MADE: True}
        return [r if r is not None else dict(lost) for r in self.replies]

    def _feed(self, slot: int) -> None:
        worker = self.slots[slot]
        if worker is None or not worker.inflight:
            chosen = self._choose(worker)
            if chosen is None:
                return
            worker = chosen
            self.slots[slot] = worker
            if worker.proc is None:
                self._make_room()
                worker.start()
            assert worker.proc is not None
            if not _is_registered(self.sel, worker.proc.stdout):
                self.sel.register(worker.proc.stdout, selectors.EVENT_READ, worker)
        queue = self.pending.get(worker.key)
        # Near the end of a batch a request written ahead could wait behind a long job while
        # another jail idles, so then one at a time.
        waiting = sum(len(q) for q in self.pending.values())
        window = _WINDOW if waiting > _WINDOW * len(self.slots) else 1
        sent = False
        while queue and len(worker.inflight) < window:
            if worker.inflight and not may_write_ahead(queue.head_expected()):
                break
            i = queue.pop()
            worker.queue(self.requests[i][1])
            if not worker.inflight and not worker.awaiting_hello:
                worker.head_since = time.monotonic()
            worker.inflight.append(i)
            worker.used = time.monotonic()
            sent = True
        if sent or worker.out:
            try:
                worker.flush()
            except WorkerDied as exc:
                self._fail(worker, exc)
                return
            self._watch_writes(worker)

    def _choose(self, worker: Worker | None) -> Worker | None:
        """The jail a free slot (holding `worker`, idle, or none) serves next (`pick_pool`), of
        the pools with queued jobs whose cap lets it have one; None if there is none."""
        own = worker.key if worker is not None else None
        choices: dict[PoolKey, tuple[PoolChoice, Worker]] = {}
        for key, queue in self.pending.items():
            head = queue.head()
            if head is None:
                continue
            candidate = worker if key == own and worker is not None else self._free_worker(key)
            if candidate.proc is None and not self._may_start(key):
                continue
            start = 0.0
            if candidate.proc is None:
                start = start_estimate_ms(bool(key[1]), self.ex.start_ms.get(key[1]))
            choices[key] = (PoolChoice(key, head, start), candidate)
        picked = pick_pool([c for c, _ in choices.values()], own)
        return None if picked is None else choices[picked][1]

    def _watch_writes(self, worker: Worker) -> None:
        assert worker.proc is not None and worker.proc.stdin is not None
        registered = _is_registered(self.sel, worker.proc.stdin)
        if worker.out and not registered:
            self.sel.register(worker.proc.stdin, selectors.EVENT_WRITE, worker)
        elif not worker.out and registered:
            self.sel.unregister(worker.proc.stdin)

    def _wait(self) -> None:
        busy = [w for w in self.slots if w is not None and w.proc is not None and w.inflight]
        if not busy:
            return
        now = time.monotonic()
        timeout = max(0.0, min(w.deadline(self.requests) for w in busy) - now)
        for key, _ in self.sel.select(timeout):
            worker: Worker = key.data
            if worker.proc is None:
                continue  # killed earlier in this round
            try:
                if key.fileobj is worker.proc.stdin:
                    worker.flush()
                    self._watch_writes(worker)
                else:
                    for frame in worker.read_frames():
                        self._on_frame(worker, frame)
            except WorkerDied as exc:
                self._fail(worker, exc)
        now = time.monotonic()
        for worker in busy:
            if worker.proc is not None and worker.inflight and now > worker.deadline(self.requests):
                waited = now - worker.head_since
                self._fail(worker, WorkerDied(f"no reply within {waited:.1f} s", hung=True))

    def _on_frame(self, worker: Worker, frame: dict[str, Any]) -> None:
        now = time.monotonic()
        if worker.awaiting_hello:
            if not frame.get("ready"):
                raise WorkerDied(f"fork-server did not start: {frame}")
            worker.awaiting_hello = False
            self.ex.start_ms[worker.modules] = (now - worker.head_since) * 1000.0
        else:
            if not worker.inflight:
                raise WorkerDied("jail sent a reply nobody asked for")
            self._finish(worker.inflight.popleft(), frame)
        worker.head_since = now

    def _free_worker(self, key: PoolKey) -> Worker:
        """A worker of pool `key` that no slot holds: a running one if there is one.

        A jail another slot left behind when it switched kinds is still warm; taking it costs
        nothing, while starting one costs a heavy jail 0.15 to 1.4 s of CPU. The pool has as many
        workers as there are slots, so one is always free.
        """
        held = {id(w) for w in self.slots if w is not None}
        free = [w for w in self.ex._pool(*key) if id(w) not in held]
        return next((w for w in free if w.proc is not None), free[0])

    def _may_start(self, key: PoolKey) -> bool:
        cap = self.caps.get(key)
        running = sum(w.proc is not None for w in self.ex._pool(*key))
        return cap is None or running < cap

    def _make_room(self) -> None:
        """Before a jail starts: stop an idle one if too many run (`retire_first`).

        Each heavy module set has pools of its own under each hash seed, so without a bound a
        shard naming many sets would keep a template of each running to the end of the run.
        """
        limit = _RUNNING_PER_SLOT * len(self.slots)
        running = [w for w in self.ex.workers() if w.proc is not None]
        if len(running) < limit:
            return
        held = {id(w) for w in self.slots if w is not None}
        idle = [w for w in running if id(w) not in held and not w.inflight]
        pick = retire_first([(w.used, bool(self.pending.get(w.key))) for w in idle])
        if pick is not None:
            self._retire(idle[pick])

    def _retire(self, worker: Worker) -> None:
        """Stop an idle worker; it starts again when next needed."""
        assert worker.proc is not None
        for stream in (worker.proc.stdin, worker.proc.stdout):
            if _is_registered(self.sel, stream):
                self.sel.unregister(stream)
        worker.stop()

    def _fail(self, worker: Worker, exc: WorkerDied) -> None:
        detail = worker.tail_log()
        if worker.proc is not None:
            for stream in (worker.proc.stdin, worker.proc.stdout):
                if _is_registered(self.sel, stream):
                    self.sel.unregister(stream)
        worker.kill()
        if not worker.inflight:
            return
        msg = f"sandbox worker {'hung' if exc.hung else 'died'} during this job: {exc}"
        if detail:
            msg += f"; jail log: {detail}"
        self._finish(
            worker.inflight.popleft(),
            {
                "status": "timeout" if exc.hung else "killed",
                "error": msg,
                "duration_ms": (time.monotonic() - worker.head_since) * 1000.0,
                HOST_MADE: True,
            },
        )
        # The others never started: they go back to their queue, where they were.
        queue = self.pending.setdefault(worker.key, JobQueue())
        for i in worker.inflight:
            queue.push(i, queue.expected.get(i))
        worker.inflight.clear()

    def _finish(self, i: int, reply: dict[str, Any]) -> None:
        self.replies[i] = reply
        self.left -= 1
        if self.on_reply is not None:
            self.on_reply(i, reply)
        if self.bar is not None:
            self.bar.update(1)


def _is_registered(sel: selectors.BaseSelector, fileobj: Any) -> bool:
    try:
        sel.get_key(fileobj)
    except (KeyError, ValueError):
        return False
    return True


def _progress_bar(total: int):
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a project dependency
        return None
    return tqdm(total=total, unit="job", file=sys.stderr, dynamic_ncols=True)
