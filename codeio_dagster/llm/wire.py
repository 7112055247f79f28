"""One chat-completion request on the wire: the endpoint, the openai client, and the reply
parsed, or its failure classified (retryable or not, with the server's Retry-After)."""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import re
import ssl
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from codeio_dagster.llm.settings import LLMSettings
from codeio_dagster.llm.types import ChatRequest

RETRYABLE_STATUS = frozenset({408, 409, 425, 429})


@dataclass(frozen=True)
class Endpoint:
    """Where requests go; the key is only ever handed to the openai client."""

    base_url: str
    api_key: str
    default_model: str | None = None

    def __repr__(self) -> str:
        return f"Endpoint(base_url={self.base_url!r}, default_model={self.default_model!r})"


@dataclass
class Reply:
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


def parse_completion(body: bytes | str) -> Reply:
    """A chat completion body turned into a reply; anything unexpected is a malformed reply."""

    def bad(why: str) -> Reply:
        return Reply("request_failed", error=f"malformed reply: {why}", malformed=True)

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
    return Reply(status, content, finish if isinstance(finish, str) else None, pt, ct)


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


def _root_cause(e: BaseException) -> BaseException:
    seen = 0
    while e.__cause__ is not None and seen < 10:
        e, seen = e.__cause__, seen + 1
    return e


async def send_once(client: Any, model: str, request: ChatRequest, timeout_s: float) -> Reply:
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
        return Reply(
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
        return Reply("request_failed", error=error, retryable=True)
    return parse_completion(body)


def shared_ssl_context() -> ssl.SSLContext:
    """The TLS settings every client of this process verifies with, made once per CA setting.

    Each client would otherwise build its own and read the system's CA bundle into it: 0.15-0.2
    s of CPU for every stage that sends requests, whether the endpoint uses TLS or not. The
    context is the one httpx would build (`SSL_CERT_FILE`/`SSL_CERT_DIR` honoured), and is
    safe to share: it is only read once made."""
    key = (os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
    with _SSL_LOCK:
        context = _SSL_CONTEXTS.get(key)
        if context is None:
            import httpx2

            context = _SSL_CONTEXTS[key] = httpx2.create_ssl_context()
        return context


_SSL_CONTEXTS: dict[tuple[str | None, str | None], ssl.SSLContext] = {}
_SSL_LOCK = threading.Lock()


def make_client(endpoint: Endpoint, settings: LLMSettings) -> Any:
    try:
        import openai
    except ImportError as e:  # pragma: no cover - openai is a core dependency
        raise RuntimeError("the openai package is missing; run `uv sync`") from e
    kwargs: dict[str, Any] = {}
    try:
        import aiohttp  # noqa: F401

        # The aiohttp transport costs about half the client CPU per request of the default.
        kwargs["http_client"] = openai.DefaultAioHttpClient(
            timeout=settings.timeout_s, verify=shared_ssl_context()
        )
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
