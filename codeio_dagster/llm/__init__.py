"""The LLM layer: OpenAI-compatible client resource, durable cache and the embedded local model."""

from codeio_dagster.llm.cache import CACHE_FORMAT_VERSION, ResponseCache, request_key
from codeio_dagster.llm.local_model import (
    LocalModelError,
    LocalModelServer,
    ModelIntegrityError,
    assemble_model,
    embedded_model_id,
)
from codeio_dagster.llm.resource import (
    EmbeddedLLM,
    LLMResource,
    RemoteLLM,
    llm_from_settings,
)
from codeio_dagster.llm.settings import (
    EMBEDDED_MODEL_ALIAS,
    LLMSettings,
    LocalModelSettings,
    Price,
    SamplingParams,
)
from codeio_dagster.llm.types import ChatRequest, LLMOutcome, LLMStats

__all__ = [
    "CACHE_FORMAT_VERSION",
    "EMBEDDED_MODEL_ALIAS",
    "ChatRequest",
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
