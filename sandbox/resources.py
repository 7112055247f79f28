"""The sandbox as a Dagster resource: nsjail jails, or plain processes for debugging.

`SandboxResource` is the interface assets ask for (`sandbox: SandboxResource`); its config is
the `sandbox:` section (`SandboxConfig`) and it hands out an `Executor` per step. `NsjailSandbox` isolates each worker in a
jail; `UnsafeSubprocessSandbox` runs them as this user and says so loudly on every run.
`sandbox_from_settings` picks the implementation from `sandbox.mode`.

Not imported by `codeio_dagster.sandbox` itself, so the sandbox (and `codeio sandbox ...`) does
not pull in Dagster. Named `resources`, not `resource`: unsafe mode runs forkserver.py from this
folder, where a `resource.py` would shadow the standard-library module it imports.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar

import dagster as dg
from pydantic import Field, model_validator

from codeio_dagster.sandbox.executor import UNSAFE_WARNING, Executor
from codeio_dagster.sandbox.settings import SandboxSettings
from codeio_dagster.sandbox.warm import warm_executor


class SandboxConfig(dg.Config, SandboxSettings):
    """The `sandbox:` section as Dagster config: SandboxSettings' fields and validators,
    inherited, none added. codeio.yaml is validated into it, so resources take it as is."""


class SandboxResource(dg.ConfigurableResource):
    """Runs untrusted code through an `Executor`; implementations pick the isolation.

    Its one config field is the `sandbox:` section; `settings.mode` must name this class's mode.
    """

    # The Executor's mode for this implementation (not configuration: the class is the choice).
    mode: ClassVar[str]

    settings: SandboxConfig = Field(
        default_factory=SandboxConfig, description="The sandbox: section of codeio.yaml."
    )

    @model_validator(mode="after")
    def _mode_matches(self) -> SandboxResource:
        if self.settings.mode != self.mode:
            raise ValueError(
                f"{type(self).__name__} runs mode {self.mode!r}, but settings.mode is "
                f"{self.settings.mode!r}: use sandbox_from_settings to pick the resource"
            )
        return self

    @contextmanager
    def executor(self) -> Iterator[Executor]:
        """The process's warm sandbox executor (fork-server jails kept across steps)."""
        with warm_executor(self.settings) as executor:
            yield executor


class NsjailSandbox(SandboxResource):
    """Each worker in its own nsjail jail: no network, a private /tmp, memory/process limits."""

    mode: ClassVar[str] = "nsjail"


class UnsafeSubprocessSandbox(SandboxResource):
    """NO isolation: workers are plain processes of this user. For debugging trusted code only.

    The Executor prints the warning to stderr each time it starts; this resource also puts it
    in the Dagster run's log, where whoever reads the run sees it.
    """

    mode: ClassVar[str] = "unsafe_subprocess"

    settings: SandboxConfig = Field(
        default_factory=lambda: SandboxConfig(mode="unsafe_subprocess"),
        description="The sandbox: section of codeio.yaml.",
    )

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        if context.log is not None:
            context.log.warning(UNSAFE_WARNING)


SANDBOXES: dict[str, type[SandboxResource]] = {
    cls.mode: cls for cls in (NsjailSandbox, UnsafeSubprocessSandbox)
}


def sandbox_from_settings(settings: SandboxSettings) -> SandboxResource:
    """The sandbox resource for `settings.mode`, configured with the whole section."""
    if not isinstance(settings, SandboxConfig):
        settings = SandboxConfig.model_validate(settings.model_dump())
    return SANDBOXES[settings.mode](settings=settings)
