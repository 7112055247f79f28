"""The LLM resources: one interface over the async engine, a remote and an embedded endpoint.

`LLMResource` owns the shared work (request cache, `complete_many`, stats); its one config
field is the `llm:` section itself (`LLMSettings`), so nothing is declared twice. Each
implementation only says where requests go: `RemoteLLM` to an OpenAI-compatible endpoint with
a key, `EmbeddedLLM` to the local model server it starts on first use and stops at teardown.
`llm_from_settings` (or `LLMResource.from_settings`) picks the implementation.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
from pydantic import Field, PrivateAttr, model_validator

from codeio_dagster.llm.cache import open_cache
from codeio_dagster.llm.client import run_requests
from codeio_dagster.llm.limits import Clock
from codeio_dagster.llm.local_model import LocalModelServer, embedded_model_id
from codeio_dagster.llm.sections import EMBEDDED_MODEL_ALIAS, LLMSection
from codeio_dagster.llm.settings import LLMSettings
from codeio_dagster.llm.types import ChatRequest, LLMOutcome, LLMStats
from codeio_dagster.llm.wire import Endpoint


def _run_sync[T](coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion, also from a thread that already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


@dataclass(frozen=True)
class Backend:
    """Where one `complete_many` call sends its requests.

    `connect` is called only when a request misses the cache; `default_model` serves requests
    whose params.model is null; `model_ids` maps a served model name to the identity cache keys
    and outcomes record.
    """

    connect: Callable[[], Endpoint]
    default_model: str | None = None
    model_ids: Mapping[str, str] = field(default_factory=dict)


class LLMResource(dg.ConfigurableResource):
    """OpenAI-compatible chat completions with limits, retries, cost and a durable cache.

    The interface assets ask for (`llm: LLMResource`); `RemoteLLM` and `EmbeddedLLM` implement
    `_backend`.
    """

    settings: LLMSettings = Field(
        default_factory=LLMSettings, description="The llm: section of codeio.yaml."
    )

    # Tests set a virtual clock to check the waits asked for without really waiting.
    _clock: Clock | None = PrivateAttr(default=None)

    def __str__(self) -> str:
        return repr(self)

    @classmethod
    def from_settings(cls, settings: LLMSettings, api_key: str | None = None) -> LLMResource:
        """The implementation the settings select (see `llm_from_settings`)."""
        resource = llm_from_settings(settings, api_key=api_key)
        if not isinstance(resource, cls):
            raise TypeError(
                f"{cls.__name__}.from_settings: these settings select {type(resource).__name__}"
            )
        return resource

    def _backend(self, settings: LLMSettings) -> Backend:
        """Where requests go; called once per `complete_many`, before any cache lookup."""
        raise NotImplementedError(f"{type(self).__name__} does not implement _backend")

    def complete_many(
        self,
        requests: Sequence[ChatRequest],
        *,
        progress: bool | str = False,
        log: Any = None,
    ) -> tuple[list[LLMOutcome], LLMStats]:
        """Complete all requests; outcomes in input order, exactly one per request.

        `progress` logs progress lines through `log`, labelled with it when it is a string.
        """
        requests = list(requests)
        settings = self.settings
        backend = self._backend(settings)
        cache = open_cache(settings)
        try:
            return _run_sync(
                run_requests(
                    requests,
                    settings=settings,
                    connect=backend.connect,
                    default_model=backend.default_model,
                    cache=cache,
                    progress=progress,
                    log=log,
                    model_ids=backend.model_ids,
                    clock=self._clock,
                )
            )
        finally:
            if cache is not None:
                cache.close()

    def close(self) -> None:
        """Release whatever this resource started (nothing, unless an implementation says so)."""

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        self.close()

    def __enter__(self) -> LLMResource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RemoteLLM(LLMResource):
    """A remote OpenAI-compatible endpoint (`settings.base_url`); the key comes from `api_key`,
    which `build_resources` sets to `dg.EnvVar(settings.api_key_env)`."""

    api_key: str | None = Field(default=None, repr=False)

    @model_validator(mode="after")
    def _needs_base_url(self) -> RemoteLLM:
        if self.settings.base_url is None:
            raise ValueError(
                "RemoteLLM needs settings.base_url (llm.base_url); without it the embedded "
                "model serves requests: use EmbeddedLLM or llm_from_settings"
            )
        return self

    def __repr_args__(self) -> Any:
        # The key is never shown, whatever pydantic or Dagster decide to print.
        for name, value in super().__repr_args__():
            yield (name, "***" if name == "api_key" and value is not None else value)

    def _backend(self, settings: LLMSettings) -> Backend:
        assert settings.base_url is not None
        # A missing key fails before any work, not after the cache lookup.
        endpoint = Endpoint(settings.base_url, self._key(settings))
        return Backend(connect=lambda: endpoint)

    def _key(self, settings: LLMSettings) -> str:
        key: str | None = self.api_key
        if isinstance(key, dg.EnvVar):
            # Used outside a Dagster run, the field still holds the variable's name.
            key = key.get_value()
        # No fallback to the environment here: build_resources is the one place secrets are
        # read, and hands over `dg.EnvVar(llm.api_key_env)` when that variable is set.
        if not key:
            raise ValueError(
                f"no API key for {settings.base_url}: set the environment variable "
                f"{settings.api_key_env} (llm.api_key_env names it)"
            )
        return key


class EmbeddedLLM(LLMResource):
    """The embedded local model: its server starts on first use and stops at teardown (or when
    the `with` block ends outside Dagster). A fully cached call never starts it."""

    _server: LocalModelServer | None = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @model_validator(mode="after")
    def _no_base_url(self) -> EmbeddedLLM:
        if self.settings.base_url is not None:
            raise ValueError(
                f"EmbeddedLLM serves the local model, but settings.base_url is "
                f"{self.settings.base_url!r}: use RemoteLLM or llm_from_settings"
            )
        return self

    def _backend(self, settings: LLMSettings) -> Backend:
        return Backend(
            connect=lambda: self._local_endpoint(settings),
            default_model=EMBEDDED_MODEL_ALIAS,
            # The alias names no weights: keyed on it alone, a re-pinned GGUF would be served
            # the old model's cached replies.
            model_ids={EMBEDDED_MODEL_ALIAS: embedded_model_id()},
        )

    def _local_endpoint(self, settings: LLMSettings) -> Endpoint:
        with self._lock:
            if self._server is None:
                self._server = LocalModelServer(settings.local_model).start()
            server = self._server
        return Endpoint(server.base_url, server.api_key, default_model=server.model)

    @property
    def local_server(self) -> LocalModelServer | None:
        """The embedded server if this resource started one."""
        return self._server

    def close(self) -> None:
        """Stop the embedded server if this resource started one."""
        with self._lock:
            server, self._server = self._server, None
        if server is not None:
            server.stop()


def llm_from_settings(settings: LLMSection, api_key: str | dg.EnvVar | None = None) -> LLMResource:
    """The LLM resource for the settings: `EmbeddedLLM` when `base_url` is unset, else
    `RemoteLLM`; pass `api_key=dg.EnvVar(settings.api_key_env)` for the remote one."""
    settings = LLMSettings.of(settings)
    if settings.base_url is None:
        # The embedded server needs no key: one handed over is not kept anywhere.
        return EmbeddedLLM(settings=settings)
    return RemoteLLM(settings=settings, api_key=api_key)
