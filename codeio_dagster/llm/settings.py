"""The `llm:` section as Dagster config: `LLMSettings`, with `Price` and `LocalModelSettings`.

Each is its plain model in `sections.py` (fields, validators and methods, declared there once)
made a `dg.Config`, so the LLM resources take the section as their one config field and the
Dagster UI shows it as the YAML wrote it. codeio.yaml is validated into the plain models
(`config.py`), which the resources turn into these (`llm_from_settings`).
"""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from codeio_dagster.llm.sections import (
    EMBEDDED_MODEL_ALIAS,
    LLMSection,
    LocalModelSection,
    PriceSection,
    SamplingParams,
    default_cache_dir,
)

__all__ = [
    "EMBEDDED_MODEL_ALIAS",
    "LLMSettings",
    "LocalModelSettings",
    "Price",
    "SamplingParams",
    "default_cache_dir",
]


class Price(dg.Config, PriceSection):
    """USD per million input and output tokens of one model."""


class LocalModelSettings(dg.Config, LocalModelSection):
    """How the embedded llama.cpp server runs."""


class LLMSettings(dg.Config, LLMSection):
    """Endpoint, limits, retries, prices and cache of the LLM client."""

    prices: dict[str, Price] = Field(default_factory=dict)
    local_model: LocalModelSettings = Field(default_factory=LocalModelSettings)

    @classmethod
    def of(cls, section: LLMSection) -> LLMSettings:
        """The section as Dagster config (itself if it is already)."""
        return section if isinstance(section, cls) else cls.model_validate(section.model_dump())
