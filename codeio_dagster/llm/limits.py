"""Waiting: the clock the engine reads, the requests- and tokens-per-minute buckets, and the
backoff between retries."""

from __future__ import annotations

import asyncio
import random
import time

from codeio_dagster.llm.settings import LLMSettings
from codeio_dagster.llm.types import ChatRequest
from codeio_dagster.llm.wire import Reply


class Clock:
    """Where the engine reads the time and waits (rate limits, backoff, Retry-After).

    Tests substitute a virtual clock so they can check the waits asked for without sleeping
    on a shared machine, where real durations are too noisy to assert on.
    """

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class TokenBucket:
    """Async token bucket: `rate_per_s` refill, bursts up to `capacity`; FIFO waiters."""

    def __init__(self, rate_per_s: float, capacity: float, clock: Clock | None = None) -> None:
        self.rate = rate_per_s
        self.capacity = max(1.0, capacity)
        self.level = self.capacity
        self.clock = clock or Clock()
        self._last = self.clock.monotonic()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self.clock.monotonic()
        self.level = min(self.capacity, self.level + (now - self._last) * self.rate)
        self._last = now

    async def acquire(self, n: float = 1.0) -> None:
        """Wait until `n` tokens (at most a full bucket) are there, then take `n`."""
        async with self._lock:
            need = min(n, self.capacity)
            while True:
                self._refill()
                if self.level >= need:
                    self.level -= n
                    return
                await self.clock.sleep((need - self.level) / self.rate)

    def adjust(self, n: float) -> None:
        """Give back (n > 0) or take (n < 0) tokens once the real usage is known."""
        self._refill()
        self.level = min(self.capacity, self.level + n)


def per_minute_bucket(per_minute: int | None, clock: Clock | None = None) -> TokenBucket | None:
    """A bucket that allows `per_minute` on average with one second's worth as burst."""
    if per_minute is None:
        return None
    rate = per_minute / 60.0
    return TokenBucket(rate, capacity=rate, clock=clock)


def estimate_tokens(request: ChatRequest) -> int:
    """A prompt+completion token estimate for TPM limiting (about 4 characters a token)."""
    chars = sum(len(m["content"]) for m in request.messages)
    return chars // 4 + 4 * len(request.messages) + request.params.max_tokens


class RateLimits:
    """The requests-per-minute and tokens-per-minute buckets one call shares across requests.

    Kept as our own token bucket rather than aiolimiter: a request reserves its token estimate
    and gives back what the reply did not use (aiolimiter has no give-back), a reservation may
    exceed one second's burst (aiolimiter refuses amounts above its capacity), and the waits go
    through the injectable `Clock`, so tests check them without sleeping.
    """

    def __init__(self, settings: LLMSettings, clock: Clock) -> None:
        self.rpm = per_minute_bucket(settings.requests_per_minute, clock)
        self.tpm = per_minute_bucket(settings.tokens_per_minute, clock)

    async def acquire(self, estimate: int) -> None:
        if self.rpm is not None:
            await self.rpm.acquire(1)
        if self.tpm is not None:
            await self.tpm.acquire(estimate)

    def settle(self, estimate: int, reply: Reply) -> None:
        if self.tpm is not None:
            self.tpm.adjust(estimate - (reply.prompt_tokens + reply.completion_tokens))


def backoff_delay(retry: int, base: float, cap: float, retry_after: float | None) -> float:
    """Delay before retry number `retry` (1-based): Retry-After if given, else jittered 2^n."""
    if retry_after is not None:
        return min(retry_after, cap)
    d = min(cap, base * 2 ** (retry - 1))
    return d / 2 + random.uniform(0, d / 2)
