"""The settings resource every stage reads codeio.yaml through, and the sandbox edge."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import dagster as dg
from pydantic import PrivateAttr

from codeio_dagster.config import CodeioConfig, load_config
from codeio_dagster.shards import Landing

if TYPE_CHECKING:
    from codeio_dagster.sandbox import Executor


class CodeioResource(dg.ConfigurableResource):
    """The validated codeio.yaml; one file drives the whole graph."""

    config_path: str

    _config: CodeioConfig | None = PrivateAttr(default=None)

    @property
    def config(self) -> CodeioConfig:
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config

    def landing(self) -> Landing:
        return Landing(self.config.data_dir / "landing")

    @contextmanager
    def executor(self) -> Iterator[Executor]:
        """A sandbox executor (nsjail workers) for the length of one step."""
        from codeio_dagster.sandbox import Executor

        with Executor(self.config.sandbox) as executor:
            yield executor
