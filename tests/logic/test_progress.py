"""Progress lines: a start line, at most one line per interval, and a final line."""

from codeio_dagster.progress import Progress


class Lines:
    def __init__(self):
        self.lines: list[str] = []

    def info(self, message: str) -> None:
        self.lines.append(message)


def test_progress_logs_at_most_once_per_interval_and_at_the_end():
    now = [0.0]
    log = Lines()
    bar = Progress("io_pairs", 10, log=log, unit="jobs", every_s=15, clock=lambda: now[0])
    for _ in range(4):
        now[0] += 5
        bar.update()
    bar.close()
    bar.close()  # closing twice logs once
    assert log.lines == [
        "io_pairs: 10 of 10 jobs to do",
        "io_pairs: 3/10 jobs (30%), 15s, about 35s left",
        "io_pairs: 4/10 jobs (40%), 20s",
    ]


def test_cached_work_is_counted_and_nothing_to_do_logs_nothing():
    log = Lines()
    bar = Progress("responses", 4, log=log, initial=3, clock=lambda: 0.0)
    bar.update()
    bar.close()
    assert log.lines == [
        "responses: 1 of 4 requests to do (3 already done)",
        "responses: 4/4 requests (100%), 0s",
    ]
    quiet = Lines()
    Progress("responses", 0, log=quiet).close()
    assert quiet.lines == []


def test_items_that_join_after_the_start_are_named_in_the_lines():
    now = [0.0]
    log = Lines()
    bar = Progress("io_pairs", 2, log=log, unit="sandbox jobs", every_s=15, clock=lambda: now[0])
    bar.update()
    bar.total += 3  # as a sandbox batch grows when determinism re-runs join it
    now[0] += 20
    bar.update()
    for _ in range(3):
        bar.update()
    bar.close()
    assert log.lines == [
        "io_pairs: 2 of 2 sandbox jobs to do",
        "io_pairs: 2/5 sandbox jobs (40%), 20s (3 joined after the start), about 30s left",
        "io_pairs: 5/5 sandbox jobs (100%), 20s (3 joined after the start)",
    ]
