"""Requests, outcomes and run statistics of the LLM layer."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from codeio_dagster.llm.sections import SamplingParams

Status = Literal["ok", "truncated", "request_failed"]
STATUSES: tuple[Status, ...] = ("ok", "truncated", "request_failed")


class ChatRequest(BaseModel):
    """One chat completion to make; `key` is the caller's row id, echoed on the outcome."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str
    messages: list[dict[str, str]]
    params: SamplingParams = Field(default_factory=SamplingParams)

    @field_validator("messages")
    @classmethod
    def _messages(cls, v: list[dict[str, str]]) -> list[dict[str, str]]:
        if not v:
            raise ValueError("messages must hold at least one message")
        for i, m in enumerate(v):
            if set(m) - {"role", "content", "name"} or "role" not in m or "content" not in m:
                raise ValueError(
                    f"messages[{i}] must have keys 'role' and 'content' (and optionally 'name'), "
                    f"got keys {sorted(m)}"
                )
            if m["role"] not in {"system", "user", "assistant", "developer"}:
                raise ValueError(
                    f"messages[{i}].role must be system, user, assistant or developer, "
                    f"got {m['role']!r}"
                )
        return v


class LLMOutcome(BaseModel):
    """The one recorded result of a ChatRequest."""

    model_config = ConfigDict(extra="forbid")

    key: str
    status: Status
    content: str | None
    finish_reason: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    cached: bool = False
    attempts: int = 0
    error: str | None = None
    request_hash: str
    model: str


class LLMStats(BaseModel):
    """Counters of one complete_many call; tokens and cost count only requests sent this run."""

    model_config = ConfigDict(extra="forbid")

    requests: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    by_status: dict[str, int] = Field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    wall_s: float = 0.0

    def as_metadata(self, prefix: str = "llm_") -> dict[str, Any]:
        """Plain ints/floats for Dagster metadata."""
        out: dict[str, Any] = {
            f"{prefix}requests": self.requests,
            f"{prefix}cache_hits": self.cache_hits,
            f"{prefix}cache_misses": self.cache_misses,
            f"{prefix}retries": self.retries,
            f"{prefix}prompt_tokens": self.prompt_tokens,
            f"{prefix}completion_tokens": self.completion_tokens,
            f"{prefix}cost_usd": round(self.cost_usd, 6),
            f"{prefix}wall_s": round(self.wall_s, 3),
        }
        for status, n in sorted(self.by_status.items()):
            out[f"{prefix}{status}"] = n
        return out
