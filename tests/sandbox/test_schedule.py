"""The batch's ordering policy on its own: which queued job a free slot takes next."""

from __future__ import annotations

from codeio_dagster.sandbox.schedule import (
    WRITE_AHEAD_MS,
    JobQueue,
    PoolChoice,
    job_key,
    may_write_ahead,
    pick_order,
    pick_pool,
    retire_first,
    start_estimate_ms,
)

LIGHT0, LIGHT1, HEAVY1 = "light seed 0", "light seed 1", "heavy seed 1"


def test_a_pool_queue_runs_unknown_costs_in_order_then_known_ones_longest_first():
    queue = JobQueue()
    for index, expected in enumerate([5.0, None, 3000.0, None, 40.0, 3000.0]):
        queue.push(index, expected)
    assert [queue.pop() for _ in range(len(queue))] == [1, 3, 2, 5, 4, 0]
    assert queue.head() is None and queue.head_expected() is None


def test_job_keys_put_unknown_before_any_known_cost():
    assert job_key(99, None) < job_key(0, 1e9) < job_key(0, 1.0) < job_key(1, 1.0)


def test_a_long_re_run_queued_behind_cheap_ones_goes_first():
    # Three cheap re-runs queued, then the re-run of a function whose first pass took 3 s.
    jobs = [(LIGHT1, 4.0), (LIGHT1, 6.0), (LIGHT1, 2.0), (LIGHT1, 3000.0)]
    assert pick_order(jobs) == [3, 1, 0, 2]


def test_first_passes_of_unknown_cost_go_before_known_re_runs_in_other_pools():
    # A first pass may hide a long first pass and re-run: it goes before known work, in order.
    jobs = [(LIGHT0, None), (LIGHT1, 3000.0), (LIGHT0, None), (LIGHT1, 10.0)]
    assert pick_order(jobs) == [0, 2, 1, 3]


def test_a_pool_whose_jail_must_start_is_not_left_for_the_end():
    # The heavy re-run itself is cheap, but its jail's start-up is work the batch must do too:
    # counted with it, the heavy pool goes before the light jobs shorter than both together.
    jobs = [(LIGHT1, 900.0), (LIGHT1, 300.0), (LIGHT1, 200.0), (HEAVY1, 20.0), (LIGHT1, 50.0)]
    order = pick_order(jobs, start_ms={HEAVY1: 1000.0, LIGHT1: 100.0})
    assert order == [3, 0, 1, 2, 4]
    # Without its start counted it would be the last job of the batch.
    assert pick_order(jobs) == [0, 1, 2, 4, 3]


def test_a_slot_keeps_its_warm_pool_while_it_has_unknown_work():
    choices = [
        PoolChoice(LIGHT0, job_key(7, None)),
        PoolChoice(HEAVY1, job_key(2, None), start_ms=1000.0),
    ]
    assert pick_pool(choices, current=LIGHT0) == LIGHT0
    # A slot with no jail of its own takes the unknown job queued first.
    assert pick_pool(choices, current=None) == HEAVY1
    assert pick_pool([], current=LIGHT0) is None


def test_known_work_ties_keep_the_slots_own_pool():
    choices = [PoolChoice(LIGHT0, job_key(1, 500.0)), PoolChoice(LIGHT1, job_key(9, 500.0))]
    assert pick_pool(choices, current=LIGHT1) == LIGHT1
    assert pick_pool(choices, current=None) == LIGHT0


def test_only_unknown_or_short_jobs_are_written_ahead_to_a_busy_jail():
    assert may_write_ahead(None)
    assert may_write_ahead(WRITE_AHEAD_MS / 2)
    assert not may_write_ahead(WRITE_AHEAD_MS)


def test_a_measured_start_replaces_the_prior():
    assert start_estimate_ms(True, 250.0) == 250.0
    assert start_estimate_ms(True, None) > start_estimate_ms(False, None)


def test_the_jail_stopped_for_room_is_one_whose_pool_has_nothing_queued():
    # (when last used, its pool has jobs queued)
    assert retire_first([(1.0, True), (5.0, False), (3.0, False)]) == 2
    assert retire_first([(4.0, True), (2.0, True)]) == 1
    assert retire_first([]) is None
