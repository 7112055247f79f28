"""Which queued sandbox job a free jail slot takes next: the batch's ordering, as plain data.

The order in which jobs run changes no reply (each runs alone in a fresh fork, its result cached
by what it is), only when the batch ends. A batch ends when its last job does, so long jobs
should start early and short ones fill in at the end (longest job first, as in list scheduling).
A job's cost is known when its caller can estimate it (a determinism re-run: its first pass just
ran and said how long it took); otherwise it is unknown, and such a job goes first, in the order
it was queued: it may be long itself, and it may be followed by work that can only start once it
ends (a first pass by its re-run).
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

# (unknown cost first: 0, else 1; minus the expected milliseconds; the order queued).
JobKey = tuple[int, float, int]

# A job of known cost shorter than this may be written ahead to a busy jail (see
# `may_write_ahead`); a longer one waits for whichever jail is free first.
WRITE_AHEAD_MS = 100.0

# Start-up a pool's jail is expected to cost before one was measured in this process:
# light jails about 0.05 s of wall time, heavy ones 0.15 s (numpy) to 1.4 s (everything).
_START_PRIOR_MS = {False: 100.0, True: 1000.0}


def job_key(index: int, expected_ms: float | None) -> JobKey:
    """Sort key of a queued job, smallest runs first: unknown cost before known, in the order
    queued; known cost longest first, ties in the order queued."""
    if expected_ms is None:
        return (0, 0.0, index)
    return (1, -float(expected_ms), index)


def may_write_ahead(expected_ms: float | None) -> bool:
    """Whether a job may be written to a jail that is still busy with another.

    Written ahead, a job waits behind the running one even if the other jail frees first; for a
    long job of known cost that wait would be its whole head start.
    """
    return expected_ms is None or expected_ms < WRITE_AHEAD_MS


def start_estimate_ms(heavy: bool, measured_ms: float | None) -> float:
    """Milliseconds a jail start is expected to take: as measured, else the prior."""
    return measured_ms if measured_ms is not None else _START_PRIOR_MS[heavy]


class JobQueue:
    """One pool's queued jobs (batch indices), popped in `job_key` order."""

    def __init__(self) -> None:
        self._heap: list[tuple[JobKey, int]] = []
        self.expected: dict[int, float | None] = {}

    def push(self, index: int, expected_ms: float | None) -> None:
        self.expected[index] = expected_ms
        heapq.heappush(self._heap, (job_key(index, expected_ms), index))

    def pop(self) -> int:
        _, index = heapq.heappop(self._heap)
        return index

    def head(self) -> JobKey | None:
        """The key of the job `pop` returns next; None when empty."""
        return self._heap[0][0] if self._heap else None

    def head_expected(self) -> float | None:
        return self.expected[self._heap[0][1]] if self._heap else None

    def __len__(self) -> int:
        return len(self._heap)


@dataclass(frozen=True)
class PoolChoice:
    """A pool a free slot could take its next job from."""

    key: Hashable
    head: JobKey  # the pool's next job
    start_ms: float = 0.0  # 0 when a jail of the pool is running and free, else its start-up


def pick_pool(choices: Sequence[PoolChoice], current: Hashable | None) -> Hashable | None:
    """The pool a free slot serves next, of those it may use; `current` is the pool of the jail
    it holds now.

    Jobs of unknown cost first: the slot stays with its own pool while that has some (its jail
    is warm), else takes the pool whose unknown job was queued first. Then jobs of known cost:
    the pool whose next job plus the start of a jail (if none of it is free) is longest, so a
    pool whose jail is not yet running is not left for the end of the batch, when its start-up
    would keep one slot busy while the other idles. Ties: the slot's own pool, then queue order.
    """
    if not choices:
        return None
    unknown = [c for c in choices if c.head[0] == 0]
    if unknown:
        own = [c for c in unknown if c.key == current]
        if own:
            return own[0].key
        return min(unknown, key=lambda c: c.head[2]).key
    return min(
        choices,
        key=lambda c: (-(-c.head[1] + c.start_ms), c.key != current, c.head[2]),
    ).key


def retire_first(idle: Sequence[tuple[float, bool]]) -> int | None:
    """Which of the idle jails ((when last used, whether its pool has jobs queued)) to stop to
    make room for another: one whose pool has nothing queued, least recently used first, else
    the least recently used. Stopping a jail with queued work would make its pool pay a start
    again, which `pick_pool` then counts in its favour: jails would take turns starting.
    """
    if not idle:
        return None
    return min(range(len(idle)), key=lambda i: (idle[i][1], idle[i][0]))


def pick_order(
    jobs: Sequence[tuple[Hashable, float | None]],
    start_ms: Mapping[Hashable, float] | None = None,
) -> list[int]:
    """The order one slot would take `jobs` ((pool, expected ms or None), by queue index), each
    pool's jail starting once: `pick_pool` and `JobQueue` applied until nothing is queued.

    What the policy does to a known set of jobs, for tests and for reading; the batch itself
    asks `pick_pool` afresh each time a slot frees.
    """
    queues: dict[Hashable, JobQueue] = {}
    for index, (pool, expected) in enumerate(jobs):
        queues.setdefault(pool, JobQueue()).push(index, expected)
    started: set[Hashable] = set()
    current: Hashable | None = None
    order: list[int] = []
    while any(queues.values()):
        choices = [
            PoolChoice(key, q.head(), 0.0 if key in started else (start_ms or {}).get(key, 0.0))
            for key, q in queues.items()
            if q
        ]
        current = pick_pool(choices, current)
        started.add(current)
        order.append(queues[current].pop())
    return order
