"""The async engine: cache lookup, bounded concurrency, rate limits, retries, one outcome each.

`RequestBatch` runs one call's steps; one request on the wire is `wire.py`, the waiting
(clock, token buckets, backoff) is `limits.py`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tenacity import AsyncRetrying, RetryCallState, retry_if_result, stop_after_attempt

from codeio_dagster.llm.cache import ResponseCache, request_key
from codeio_dagster.llm.limits import Clock, RateLimits, backoff_delay, estimate_tokens
from codeio_dagster.llm.settings import LLMSettings, Price
from codeio_dagster.llm.types import ChatRequest, LLMOutcome, LLMStats
from codeio_dagster.llm.wire import Endpoint, Reply, make_client, send_once
from codeio_dagster.progress import Progress

_logger = logging.getLogger(__name__)

# A malformed 200 reply is retried this many times at most: a proxy hiccup gets a second
# chance, an endpoint that always answers garbage is not hammered max_retries times.
MALFORMED_RETRIES = 1
_FAILURES_LOGGED = 5


def cost_of(price: Price | None, prompt_tokens: int, completion_tokens: int) -> float:
    """USD cost of one reply; 0 when the model has no configured price."""
    if price is None:
        return 0.0
    return (prompt_tokens * price.input_per_mtok + completion_tokens * price.output_per_mtok) / 1e6


class _Redactor:
    def __init__(self, secret: str) -> None:
        self.secret = secret

    def __call__(self, text: str) -> str:
        if self.secret and len(self.secret) >= 4:
            text = text.replace(self.secret, "***")
        return text


def resolve_model(request: ChatRequest, default_model: str | None) -> str:
    """The model a request goes to; a clear error when none is named."""
    model = request.params.model or default_model
    if model is None:
        raise ValueError(
            f"request {request.key!r}: params.model is null and the configured endpoint has no "
            f"default model; name the model in the sampling settings"
        )
    return model


class RequestBatch:
    """One `complete_many` call in named steps: look up, deduplicate, send, record.

    `look_up` answers what the cache holds, `deduplicate` groups the rest so identical
    requests are sent once, `send` makes one request's attempts (rate limits, retries with
    Retry-After), `record` books an outcome (stats, cache, every copy of the request), and
    `outcomes` returns exactly one outcome per request, in input order.
    """

    def __init__(
        self,
        requests: Sequence[ChatRequest],
        *,
        settings: LLMSettings,
        default_model: str | None,
        cache: ResponseCache | None,
        log: Any = None,
        model_ids: Mapping[str, str] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.requests = list(requests)
        self.settings = settings
        self.cache = cache
        self.log = log or _logger
        self.clock = clock or Clock()
        self.redact = _Redactor("")
        self.stats = LLMStats(requests=len(self.requests))
        self.models = [resolve_model(r, default_model) for r in self.requests]
        self.ids = [(model_ids or {}).get(m, m) for m in self.models]
        self.hashes = [
            request_key(m, r.messages, r.params)
            for m, r in zip(self.ids, self.requests, strict=True)
        ]
        self.results: list[LLMOutcome | None] = [None] * len(self.requests)
        # Request hash -> indices of the requests it answers; the first one is sent.
        self.groups: dict[str, list[int]] = {}
        self._failures_logged = 0
        self._bar: Any = None

    def look_up(self) -> list[int]:
        """Fill in the cached outcomes; the indices of the requests the cache does not hold."""
        hits = self.cache.get_many(self.hashes) if self.cache is not None else {}
        misses = []
        for i, h in enumerate(self.hashes):
            rec = hits.get(h)
            if rec is None:
                misses.append(i)
                continue
            self.results[i] = LLMOutcome(
                key=self.requests[i].key,
                status=rec["status"],
                content=rec["content"],
                finish_reason=rec["finish_reason"],
                prompt_tokens=rec["prompt_tokens"],
                completion_tokens=rec["completion_tokens"],
                cost_usd=rec["cost_usd"],
                cached=True,
                attempts=0,
                request_hash=h,
                model=rec["model"],
            )
        self.stats.cache_hits += len(self.requests) - len(misses)
        return misses

    def deduplicate(self, misses: Sequence[int]) -> list[str]:
        """Group identical requests so each is sent once; the hashes to send."""
        for i in misses:
            self.groups.setdefault(self.hashes[i], []).append(i)
        # The copies count as cache hits: they are answered without a request of their own.
        self.stats.cache_misses = len(self.groups)
        self.stats.cache_hits += len(misses) - len(self.groups)
        return list(self.groups)

    async def send(self, client: Any, h: str, limits: RateLimits) -> LLMOutcome:
        """One request's attempts until a reply is final or the retries are spent."""
        i0 = self.groups[h][0]
        request, model = self.requests[i0], self.models[i0]
        settings = self.settings
        estimate = estimate_tokens(request)
        attempts = malformed = 0

        async def attempt() -> Reply:
            nonlocal attempts, malformed
            attempts += 1
            await limits.acquire(estimate)
            reply = await send_once(client, model, request, settings.timeout_s)
            limits.settle(estimate, reply)
            malformed += reply.malformed
            return reply

        def retry_allowed(reply: Reply) -> bool:
            if reply.status != "request_failed":
                return False
            return reply.retryable or (reply.malformed and malformed <= MALFORMED_RETRIES)

        def wait(state: RetryCallState) -> float:
            reply = state.outcome.result()  # type: ignore[union-attr]
            return backoff_delay(
                state.attempt_number,
                settings.backoff_base_s,
                settings.backoff_max_s,
                reply.retry_after,
            )

        retrying = AsyncRetrying(
            retry=retry_if_result(retry_allowed),
            stop=stop_after_attempt(settings.max_retries + 1),
            wait=wait,
            sleep=self.clock.sleep,
            # Out of attempts, the last reply is the outcome (not a RetryError).
            retry_error_callback=lambda state: state.outcome.result(),  # type: ignore[union-attr]
        )
        reply: Reply = await retrying(attempt)
        return self._outcome(h, reply, attempts)

    def _outcome(self, h: str, reply: Reply, attempts: int) -> LLMOutcome:
        i0 = self.groups[h][0]
        error = reply.error
        if error is not None and attempts > 1:
            error = f"{error} (after {attempts} attempts)"
        price = self.settings.prices.get(self.models[i0])
        return LLMOutcome(
            key=self.requests[i0].key,
            status=reply.status,  # type: ignore[arg-type]
            content=reply.content,
            finish_reason=reply.finish_reason,
            prompt_tokens=reply.prompt_tokens,
            completion_tokens=reply.completion_tokens,
            cost_usd=cost_of(price, reply.prompt_tokens, reply.completion_tokens),
            cached=False,
            attempts=attempts,
            error=self.redact(error) if error else None,
            request_hash=h,
            model=self.ids[i0],
        )

    def failed(self, h: str, error: str) -> LLMOutcome:
        """The outcome of a request whose sending broke (a bug, not a reply)."""
        i0 = self.groups[h][0]
        return LLMOutcome(
            key=self.requests[i0].key,
            status="request_failed",
            content=None,
            finish_reason=None,
            error=self.redact(error),
            request_hash=h,
            model=self.ids[i0],
        )

    def record(self, h: str, out: LLMOutcome) -> None:
        """Book a sent request's outcome: stats, cache, log, and every copy of the request."""
        stats = self.stats
        stats.retries += max(0, out.attempts - 1)
        stats.prompt_tokens += out.prompt_tokens
        stats.completion_tokens += out.completion_tokens
        stats.cost_usd += out.cost_usd
        if self.cache is not None and out.status != "request_failed":
            try:
                self.cache.put(out.model_dump())
            except Exception as e:  # any backend's failure: the reply is still this run's
                self.log.warning(f"LLM cache write failed for {out.key!r}: {type(e).__name__}: {e}")
        if out.status == "request_failed" and self._failures_logged < _FAILURES_LOGGED:
            self._failures_logged += 1
            self.log.warning(f"LLM request {out.key!r} failed: {out.error}")
        for n, i in enumerate(self.groups[h]):
            self.results[i] = out.model_copy(update={"key": self.requests[i].key, "cached": n > 0})
        if self._bar is not None:
            self._bar.update(len(self.groups[h]))

    async def _worker(self, client: Any, queue: asyncio.Queue[str], limits: RateLimits) -> None:
        while True:
            try:
                h = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            try:
                out = await self.send(client, h, limits)
            except Exception as e:  # every request ends in an outcome, bugs included
                out = self.failed(h, f"internal error: {type(e).__name__}: {e}")
            self.record(h, out)

    async def run(
        self, connect: Callable[[], Endpoint], progress: bool | str = False
    ) -> tuple[list[LLMOutcome], LLMStats]:
        """All the steps; `connect` is called (in a thread) only when something must be sent."""
        started = time.monotonic()
        to_send = self.deduplicate(self.look_up())
        if progress and to_send:
            # Log lines, not a terminal bar: the UI's run log and `codeio build` show them.
            self._bar = Progress(
                progress if isinstance(progress, str) else "LLM",
                len(self.requests),
                log=self.log,
                initial=len(self.requests) - sum(map(len, self.groups.values())),
            )
        # connect() may fail (the embedded model does not start, no key): the progress is
        # closed all the same.
        try:
            if to_send:
                endpoint = await asyncio.to_thread(connect)
                self.redact.secret = endpoint.api_key
                client = make_client(endpoint, self.settings)
                queue: asyncio.Queue[str] = asyncio.Queue()
                for h in to_send:
                    queue.put_nowait(h)
                limits = RateLimits(self.settings, self.clock)
                n_workers = min(self.settings.max_concurrency, len(to_send))
                try:
                    await asyncio.gather(
                        *(self._worker(client, queue, limits) for _ in range(n_workers))
                    )
                finally:
                    await client.close()
        finally:
            if self._bar is not None:
                self._bar.close()
        outcomes = self.outcomes()
        self.stats.wall_s = time.monotonic() - started
        s = self.stats
        self.log.info(
            f"LLM: {s.requests} requests, {s.cache_hits} cache hits, {s.cache_misses} sent, "
            f"{s.retries} retries, by status {s.by_status}, "
            f"{s.prompt_tokens}+{s.completion_tokens} tokens, ${s.cost_usd:.4f}"
        )
        return outcomes, s

    def outcomes(self) -> list[LLMOutcome]:
        """Exactly one outcome per request, in input order; counted by status."""
        final: list[LLMOutcome] = []
        for i, out in enumerate(self.results):
            if out is None:  # unreachable unless a worker died; still never drop a request
                out = LLMOutcome(
                    key=self.requests[i].key,
                    status="request_failed",
                    content=None,
                    finish_reason=None,
                    error="internal error: no outcome recorded",
                    request_hash=self.hashes[i],
                    model=self.ids[i],
                )
            final.append(out)
            self.stats.by_status[out.status] = self.stats.by_status.get(out.status, 0) + 1
        return final


async def run_requests(
    requests: Sequence[ChatRequest],
    *,
    settings: LLMSettings,
    connect: Callable[[], Endpoint],
    default_model: str | None,
    cache: ResponseCache | None,
    progress: bool | str = False,
    log: Any = None,
    model_ids: Mapping[str, str] | None = None,
    clock: Clock | None = None,
) -> tuple[list[LLMOutcome], LLMStats]:
    """Complete `requests`; outcomes in input order, exactly one per request.

    `model_ids` maps a model name as sent to the identity that keys the cache and is recorded
    on outcomes, where the name alone does not pin the weights (the embedded model's alias).
    """
    batch = RequestBatch(
        requests,
        settings=settings,
        default_model=default_model,
        cache=cache,
        log=log,
        model_ids=model_ids,
        clock=clock,
    )
    return await batch.run(connect, progress)
