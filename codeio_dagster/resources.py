"""The codeio.yaml settings resource, and build_resources: where every resource is made."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import Field, PrivateAttr

if TYPE_CHECKING:
    # Imported where used: every stage asset imports this module for `CodeioResource`, and
    # the config model pulls in every section's package (llm, sandbox, publish).
    from codeio_dagster.config import CodeioConfig
    from codeio_dagster.landing import Landing


class CodeioResource(dg.ConfigurableResource):
    """The validated codeio.yaml; one file drives the whole graph.

    It carries the values the definitions were built from, so a run never reads the file a
    second time (and never sees a different file from the one that shaped the graph).
    """

    settings: dict[str, Any] = Field(description="codeio.yaml, validated, paths resolved.")
    config_path: str = Field(default="", description="Where the settings were read from.")

    _config: Any = PrivateAttr(default=None)

    @classmethod
    def from_config(cls, config: CodeioConfig, config_path: str = "") -> CodeioResource:
        return cls(settings=config.model_dump(mode="json"), config_path=config_path)

    @property
    def config(self) -> CodeioConfig:
        from codeio_dagster.config import CodeioConfig

        if self._config is None:
            # Already validated once; this only turns the carried values back into the model.
            self._config = CodeioConfig.model_validate(self.settings)
        return self._config

    def landing(self) -> Landing:
        from codeio_dagster.landing import Landing

        return Landing(self.config.data_dir / "landing")


def build_resources(config: CodeioConfig, config_path: str = "") -> dict[str, object]:
    """Every resource of the graph, from the one validated config; secrets read only here."""
    import os

    from codeio_dagster.io_manager import PolarsParquetIOManager
    from codeio_dagster.llm import llm_from_settings
    from codeio_dagster.publish import publisher_from_settings
    from codeio_dagster.sandbox.resources import sandbox_from_settings

    api_key = dg.EnvVar(config.llm.api_key_env) if os.environ.get(config.llm.api_key_env) else None
    return {
        "codeio": CodeioResource.from_config(config, config_path),
        "llm": llm_from_settings(config.llm, api_key=api_key),
        "sandbox": sandbox_from_settings(config.sandbox),
        "publisher": publisher_from_settings(
            config.publish,
            token=dg.EnvVar("HF_TOKEN") if os.environ.get("HF_TOKEN") else None,
        ),
        "io_manager": PolarsParquetIOManager(base_dir=str(config.data_dir / "assets")),
    }
