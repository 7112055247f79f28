"""Progress of a long stage as log lines: readable in the Dagster UI's run log and in `codeio build`.

A terminal bar is invisible in the UI and garbles a log; a line every few seconds is read in both.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

_log = logging.getLogger(__name__)


class Progress:
    """`done` of `total` items; logs a line when it starts, at most every `every_s`, and at the end."""

    def __init__(
        self,
        label: str,
        total: int,
        *,
        log: Any = None,
        initial: int = 0,
        unit: str = "requests",
        every_s: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.label, self.unit = label, unit
        self._total = total
        # Items added after the start line (io_pairs' determinism re-runs join its batch as each
        # function's generation ends), so the lines say why the total grew.
        self.joined = 0
        self.done = initial
        self.every_s = every_s
        self.clock = clock
        self.log = log or _log
        self.started = clock()
        self.last_logged = self.started
        self.closed = False
        if total > initial:
            cached = f" ({initial} already done)" if initial else ""
            self._emit(f"{total - initial} of {total} {unit} to do{cached}")

    @property
    def total(self) -> int:
        return self._total

    @total.setter
    def total(self, value: int) -> None:
        # Assigned as a tqdm bar's total is (the sandbox batch grows either kind of bar).
        self.joined += max(0, value - self._total)
        self._total = value

    def update(self, n: int = 1) -> None:
        self.done += n
        now = self.clock()
        if self.done < self.total and now - self.last_logged >= self.every_s:
            self._emit(self.line(now))

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.done > 0 and self.total > 0:
            self._emit(self.line(self.clock(), final=True))

    def line(self, now: float, final: bool = False) -> str:
        elapsed = now - self.started
        text = f"{self.done}/{self.total} {self.unit} ({100 * self.done // max(self.total, 1)}%)"
        text += f", {elapsed:.0f}s"
        if self.joined:
            text += f" ({self.joined} joined after the start)"
        if not final and 0 < self.done < self.total and elapsed > 0:
            left = elapsed / self.done * (self.total - self.done)
            text += f", about {left:.0f}s left"
        return text

    def _emit(self, text: str) -> None:
        self.last_logged = self.clock()
        self.log.info(f"{self.label}: {text}")
