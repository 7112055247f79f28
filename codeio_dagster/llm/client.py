"""The async engine: cache lookup, bounded concurrency, rate limits, retries, one outcome each."""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tenacity import AsyncRetrying, RetryCallState, retry_if_result, stop_after_attempt

from codeio_dagster.llm.cache import ResponseCache, request_key
from codeio_dagster.llm.settings import LLMSettings, Price
from codeio_dagster.llm.types import ChatRequest, LLMOutcome, LLMStats
from codeio_dagster.progress import Progress

_logger = logging.getLogger(__name__)

# A malformed 200 reply is retried this many times at most: a proxy hiccup gets a second
# chance, an endpoint that always answers garbage is not hammered max_retries times.
MALFORMED_RETRIES = 1
RETRYABLE_STATUS = frozenset({408, 409, 425, 429})
_FAILURES_LOGGED = 5


@dataclass(frozen=True)
class Endpoint:
    """Where requests go; the key is only ever handed to the openai client."""

    base_url: str
    api_key: str
    default_model: str | None = None

    def __repr__(self) -> str:
        return f"Endpoint(base_url={self.base_url!r}, default_model={self.default_model!r})"


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


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta seconds or an HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = datetime.now(UTC).timestamp() if now is None else now
    return max(0.0, when.timestamp() - current)


def backoff_delay(retry: int, base: float, cap: float, retry_after: float | None) -> float:
    """Delay before retry number `retry` (1-based): Retry-After if given, else jittered 2^n."""
    if retry_after is not None:
        return min(retry_after, cap)
    d = min(cap, base * 2 ** (retry - 1))
    return d / 2 + random.uniform(0, d / 2)


def cost_of(price: Price | None, prompt_tokens: int, completion_tokens: int) -> float:
    """USD cost of one reply; 0 when the model has no configured price."""
    if price is None:
        return 0.0
    return (prompt_tokens * price.input_per_mtok + completion_tokens * price.output_per_mtok) / 1e6


@dataclass
class _Reply:
    status: str
    content: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None
    retryable: bool = False
    malformed: bool = False
    retry_after: float | None = None


_SURROGATE = re.compile("[\ud800-\udfff]")


def parse_completion(body: bytes | str) -> _Reply:
    """A chat completion body turned into a reply; anything unexpected is a malformed reply."""

    def bad(why: str) -> _Reply:
        return _Reply("request_failed", error=f"malformed reply: {why}", malformed=True)

    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        return bad(f"body is not JSON ({e}); starts with {str(body[:80])!r}")
    if not isinstance(data, dict):
        return bad(f"body is a JSON {type(data).__name__}, expected an object")
    if "error" in data and "choices" not in data:
        return bad(f"error object in a 200 reply: {str(data['error'])[:200]}")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return bad("no choices")
    choice = choices[0]
    message = choice.get("message")
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, str):
        return bad("choices[0].message.content is missing or not a string")
    if _SURROGATE.search(content):
        # A `\ud800` escape decodes to a lone surrogate that no UTF-8 store (cache, Parquet) can
        # hold; keep the reply with U+FFFD in its place, as a UTF-8 decoder would.
        content = _SURROGATE.sub("\ufffd", content)
    finish = choice.get("finish_reason")
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    pt, ct = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
    if not isinstance(pt, int) or not isinstance(ct, int):
        return bad(f"usage token counts are not integers: {usage!r}")
    status = "truncated" if finish == "length" else "ok"
    return _Reply(status, content, finish if isinstance(finish, str) else None, pt, ct)


class _Redactor:
    def __init__(self, secret: str) -> None:
        self.secret = secret

    def __call__(self, text: str) -> str:
        if self.secret and len(self.secret) >= 4:
            text = text.replace(self.secret, "***")
        return text


def _root_cause(e: BaseException) -> BaseException:
    seen = 0
    while e.__cause__ is not None and seen < 10:
        e, seen = e.__cause__, seen + 1
    return e


async def _attempt(client: Any, model: str, request: ChatRequest, timeout_s: float) -> _Reply:
    import openai

    p = request.params
    kwargs: dict[str, Any] = {
        "model": model,
        "messages": request.messages,
        "temperature": p.temperature,
        "top_p": p.top_p,
        "max_tokens": p.max_tokens,
    }
    if p.seed is not None:
        kwargs["seed"] = p.seed
    if p.stop:
        kwargs["stop"] = p.stop
    try:
        async with asyncio.timeout(timeout_s):
            # The client's documented raw-request path: the body is already plain JSON, so
            # skipping create()'s per-field TypedDict transform saves ~1 ms of CPU a request.
            body = await client.post("/chat/completions", body=kwargs, cast_to=str)
    except openai.APIStatusError as e:
        code = e.status_code
        retry_after = parse_retry_after(e.response.headers.get("retry-after"))
        ms = e.response.headers.get("retry-after-ms")
        if retry_after is None and ms is not None:
            try:
                retry_after = max(0.0, float(ms) / 1000)
            except ValueError:
                retry_after = None
        detail = e.response.text[:300] if e.response is not None else ""
        return _Reply(
            "request_failed",
            error=f"HTTP {code}: {detail}".strip(),
            retryable=code in RETRYABLE_STATUS or code >= 500,
            retry_after=retry_after,
        )
    except (openai.APIConnectionError, TimeoutError) as e:
        # APITimeoutError subclasses APIConnectionError; some transports also report a refused
        # connection as a connect timeout, so the root cause decides what the error says.
        root = _root_cause(e)
        if isinstance(root, OSError) and not isinstance(root, TimeoutError):
            error = f"connection error: {type(root).__name__}: {root}"
        elif isinstance(e, (openai.APITimeoutError, TimeoutError)):
            error = f"timed out after {timeout_s}s"
        else:
            error = f"connection error: {type(root).__name__}: {root}"
        return _Reply("request_failed", error=error, retryable=True)
    return parse_completion(body)


def _make_client(endpoint: Endpoint, settings: LLMSettings) -> Any:
    try:
        import openai
    except ImportError as e:  # pragma: no cover - openai is a core dependency
        raise RuntimeError("the openai package is missing; run `uv sync`") from e
    kwargs: dict[str, Any] = {}
    try:
        import aiohttp  # noqa: F401

        # The aiohttp transport costs about half the client CPU per request of the default.
        kwargs["http_client"] = openai.DefaultAioHttpClient(timeout=settings.timeout_s)
    except (ImportError, RuntimeError, AttributeError):
        pass
    # max_retries=0: every retry is ours, so it is counted, backed off and rate limited.
    return openai.AsyncOpenAI(
        base_url=endpoint.base_url,
        api_key=endpoint.api_key,
        max_retries=0,
        timeout=settings.timeout_s,
        **kwargs,
    )


def resolve_model(request: ChatRequest, default_model: str | None) -> str:
    """The model a request goes to; a clear error when none is named."""
    model = request.params.model or default_model
    if model is None:
        raise ValueError(
            f"request {request.key!r}: params.model is null and the configured endpoint has no "
            f"default model; name the model in the sampling settings"
        )
    return model


class _RateLimits:
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

    def settle(self, estimate: int, reply: _Reply) -> None:
        if self.tpm is not None:
            self.tpm.adjust(estimate - (reply.prompt_tokens + reply.completion_tokens))


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

    async def send(self, client: Any, h: str, limits: _RateLimits) -> LLMOutcome:
        """One request's attempts until a reply is final or the retries are spent."""
        i0 = self.groups[h][0]
        request, model = self.requests[i0], self.models[i0]
        settings = self.settings
        estimate = estimate_tokens(request)
        attempts = malformed = 0

        async def attempt() -> _Reply:
            nonlocal attempts, malformed
            attempts += 1
            await limits.acquire(estimate)
            reply = await _attempt(client, model, request, settings.timeout_s)
            limits.settle(estimate, reply)
            malformed += reply.malformed
            return reply

        def retry_allowed(reply: _Reply) -> bool:
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
        reply: _Reply = await retrying(attempt)
        return self._outcome(h, reply, attempts)

    def _outcome(self, h: str, reply: _Reply, attempts: int) -> LLMOutcome:
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

    async def _worker(self, client: Any, queue: asyncio.Queue[str], limits: _RateLimits) -> None:
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
                client = _make_client(endpoint, self.settings)
                queue: asyncio.Queue[str] = asyncio.Queue()
                for h in to_send:
                    queue.put_nowait(h)
                limits = _RateLimits(self.settings, self.clock)
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
