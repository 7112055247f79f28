"""The LLM layer: OpenAI-compatible client resource, durable cache and the embedded local model."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# Names resolve on first use (PEP 562): validating codeio.yaml reads `llm.sections` alone, so an
# unchanged `codeio build` does not pay for Dagster, which the resources need.
_EXPORTS = {
    "CACHE_FORMAT_VERSION": "codeio_dagster.llm.cache",
    "ResponseCache": "codeio_dagster.llm.cache",
    "request_key": "codeio_dagster.llm.cache",
    "LocalModelError": "codeio_dagster.llm.local_model",
    "LocalModelServer": "codeio_dagster.llm.local_model",
    "ModelIntegrityError": "codeio_dagster.llm.local_model",
    "assemble_model": "codeio_dagster.llm.local_model",
    "embedded_model_id": "codeio_dagster.llm.local_model",
    "EmbeddedLLM": "codeio_dagster.llm.resource",
    "LLMResource": "codeio_dagster.llm.resource",
    "RemoteLLM": "codeio_dagster.llm.resource",
    "llm_from_settings": "codeio_dagster.llm.resource",
    "EMBEDDED_MODEL_ALIAS": "codeio_dagster.llm.sections",
    "SamplingParams": "codeio_dagster.llm.sections",
    "LLMSettings": "codeio_dagster.llm.settings",
    "LocalModelSettings": "codeio_dagster.llm.settings",
    "Price": "codeio_dagster.llm.settings",
    "ChatRequest": "codeio_dagster.llm.types",
    "LLMOutcome": "codeio_dagster.llm.types",
    "LLMStats": "codeio_dagster.llm.types",
}

if TYPE_CHECKING:
    from codeio_dagster.llm.cache import CACHE_FORMAT_VERSION, ResponseCache, request_key
    from codeio_dagster.llm.local_model import (
        LocalModelError,
        LocalModelServer,
        ModelIntegrityError,
        assemble_model,
        embedded_model_id,
    )
    from codeio_dagster.llm.resource import EmbeddedLLM, LLMResource, RemoteLLM, llm_from_settings
    from codeio_dagster.llm.sections import EMBEDDED_MODEL_ALIAS, SamplingParams
    from codeio_dagster.llm.settings import LLMSettings, LocalModelSettings, Price
    from codeio_dagster.llm.types import ChatRequest, LLMOutcome, LLMStats

__all__ = [
    "CACHE_FORMAT_VERSION",
    "ChatRequest",
    "EMBEDDED_MODEL_ALIAS",
    "EmbeddedLLM",
    "LLMOutcome",
    "LLMResource",
    "LLMSettings",
    "LLMStats",
    "LocalModelError",
    "LocalModelServer",
    "LocalModelSettings",
    "ModelIntegrityError",
    "Price",
    "RemoteLLM",
    "ResponseCache",
    "SamplingParams",
    "assemble_model",
    "embedded_model_id",
    "llm_from_settings",
    "request_key",
]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
