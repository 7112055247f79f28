"""The `llm:` section's models as plain pydantic, declared once: what codeio.yaml is validated
into without importing Dagster (an unchanged `codeio build` then answers in about half a second).

`settings.py` makes each a `dg.Config` (`LLMSettings`, `Price`, `LocalModelSettings`: same fields,
same validators), which the LLM resources take as their one config field. Paths are strings
(Dagster config has no path type); the `resolved_*` methods return `Path`s.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from codeio_dagster.fsutil import PathStr

EMBEDDED_MODEL_ALIAS = "qwen2.5-coder-1.5b-instruct"


def default_cache_dir() -> Path:
    """The cache folder: `$CODEIO_CACHE_DIR`, else `~/.cache/codeio-dagster`."""
    env = os.environ.get("CODEIO_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "codeio-dagster"


class SamplingParams(BaseModel):
    """Model and sampling parameters of one chat request."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str | None = None
    temperature: float = 0.7
    top_p: float = 1.0
    max_tokens: int = 1024
    seed: int | None = 0
    stop: list[str] | None = None

    @field_validator("model")
    @classmethod
    def _model(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError(f"model must be a non-empty model name or null, got {v!r}")
        return v

    @field_validator("temperature")
    @classmethod
    def _temperature(cls, v: float) -> float:
        if not 0.0 <= v <= 2.0:
            raise ValueError(f"temperature must be between 0 and 2, got {v}")
        return v

    @field_validator("top_p")
    @classmethod
    def _top_p(cls, v: float) -> float:
        if not 0.0 < v <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {v}")
        return v

    @field_validator("max_tokens")
    @classmethod
    def _max_tokens(cls, v: int) -> int:
        if v < 1:
            raise ValueError(f"max_tokens must be at least 1, got {v}")
        return v

    @field_validator("seed")
    @classmethod
    def _seed(cls, v: int | None) -> int | None:
        if v is not None and not 0 <= v < 2**32:
            raise ValueError(f"seed must be null or an integer in [0, 2**32), got {v}")
        return v

    @field_validator("stop")
    @classmethod
    def _stop(cls, v: list[str] | None) -> list[str] | None:
        if v is not None:
            if len(v) > 4:
                raise ValueError(f"stop takes at most 4 sequences, got {len(v)}")
            if any(not s for s in v):
                raise ValueError(f"stop sequences must be non-empty strings, got {v!r}")
        return v


class PriceSection(BaseModel):
    """USD per million input and output tokens of one model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)


class LocalModelSection(BaseModel):
    """How the embedded llama.cpp server runs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_ctx: int = Field(default=4096, ge=256, description="context tokens per parallel slot")
    n_parallel: int = Field(default=4, ge=1, le=64)
    threads: int = Field(default=0, ge=0, description="0 means one per CPU core")
    cache_dir: PathStr | None = None
    startup_timeout_s: float = Field(default=120.0, gt=0)

    def resolved_cache_dir(self) -> Path:
        """The configured cache folder or the default one."""
        return Path(self.cache_dir).expanduser() if self.cache_dir else default_cache_dir()


class LLMSection(BaseModel):
    """Endpoint, limits, retries, prices and cache of the LLM client."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    max_concurrency: int = Field(default=8, ge=1, le=4096)
    requests_per_minute: int | None = Field(default=None, ge=1)
    tokens_per_minute: int | None = Field(default=None, ge=1)
    max_retries: int = Field(default=5, ge=0, le=100)
    timeout_s: float = Field(default=300.0, gt=0)
    backoff_base_s: float = Field(default=1.0, ge=0)
    backoff_max_s: float = Field(default=60.0, ge=0)
    prices: dict[str, PriceSection] = Field(default_factory=dict)
    use_cache: bool = True
    cache_path: PathStr | None = None
    # postgresql://user@host:port/db: a request cache every machine of a cluster shares (the
    # password comes from PGPASSWORD); unset, the SQLite file at cache_path.
    cache_url: str | None = None
    local_model: LocalModelSection = Field(default_factory=LocalModelSection)
    # A stage whose share of failed requests passes this (or whose every request failed) fails
    # its run: an endpoint that is down must not yield a "successful" empty shard.
    max_failure_rate: float = Field(default=0.5, ge=0.0, le=1.0)

    @field_validator("cache_url")
    @classmethod
    def _cache_url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not v.startswith(("postgresql://", "postgres://")):
            raise ValueError(
                f"cache_url must be a PostgreSQL URL like postgresql://user@host:5432/db, got {v!r}"
            )
        from urllib.parse import urlsplit

        if urlsplit(v).password is not None:
            # Never echo it: the value is a secret pasted in the wrong place.
            raise ValueError(
                "cache_url must not hold a password; set PGPASSWORD in the environment instead"
            )
        return v

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {v!r}")
        return v

    @field_validator("api_key_env")
    @classmethod
    def _api_key_env(cls, v: str) -> str:
        if not v or not v.replace("_", "").isalnum():
            raise ValueError(
                f"api_key_env is the NAME of an environment variable (like OPENAI_API_KEY), "
                f"got {v[:3] + '...' if len(v) > 12 else v!r}"
            )
        return v

    def resolved_cache_path(self) -> Path:
        """The durable request cache file."""
        if self.cache_path is not None:
            return Path(self.cache_path).expanduser()
        return self.local_model.resolved_cache_dir() / "llm_cache.sqlite"
