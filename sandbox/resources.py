"""The sandbox as a Dagster resource: nsjail jails, or plain processes for debugging.

`SandboxResource` is the interface assets ask for (`sandbox: SandboxResource`); it mirrors
SandboxSettings and hands out an `Executor` per step. `NsjailSandbox` isolates each worker in a
jail; `UnsafeSubprocessSandbox` runs them as this user and says so loudly on every run.
`sandbox_from_settings` picks the implementation from `sandbox.mode`.

Not imported by `codeio_dagster.sandbox` itself, so the sandbox (and `codeio sandbox ...`) does
not pull in Dagster. Named `resources`, not `resource`: unsafe mode runs forkserver.py from this
folder, where a `resource.py` would shadow the standard-library module it imports.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar, Literal

import dagster as dg

from codeio_dagster.sandbox.executor import UNSAFE_WARNING, Executor
from codeio_dagster.sandbox.settings import (
    DEFAULT_PRELOAD,
    HEAVY_MODULES,
    HEAVY_PRELOAD,
    SandboxSettings,
)


class SandboxResource(dg.ConfigurableResource):
    """Runs untrusted code through an `Executor`; implementations pick the isolation.

    The fields mirror those of SandboxSettings that every mode uses; `settings()` validates them.
    """

    # The Executor's mode for this implementation (not configuration: the class is the choice).
    mode: ClassVar[str]

    workers: int = 0
    timeout_s: float = 5.0
    memory_mb: int = 1024
    max_output_bytes: int = 1 << 20
    runtime_dir: str | None = None
    hash_seed: int = 0
    preload: list[str] = list(DEFAULT_PRELOAD)
    heavy_modules: list[str] = list(HEAVY_MODULES)
    heavy_preload: list[str] = list(HEAVY_PRELOAD)

    def settings(self) -> SandboxSettings:
        """The validated settings the executor runs with."""
        return SandboxSettings.model_validate({"mode": self.mode, **self.model_dump()})

    @contextmanager
    def executor(self) -> Iterator[Executor]:
        """A sandbox executor (a pool of fork-server workers) for the length of one step."""
        with Executor(self.settings()) as executor:
            yield executor


class NsjailSandbox(SandboxResource):
    """Each worker in its own nsjail jail: no network, a private /tmp, memory/process limits."""

    mode: ClassVar[str] = "nsjail"

    max_processes: int = 64
    tmpfs_mb: int = 64
    max_open_files: int = 64
    nsjail_path: str | None = None
    server_overhead_mb: int = 512
    nice_level: int = 5
    cgroups: Literal["auto", "off"] = "auto"


class UnsafeSubprocessSandbox(SandboxResource):
    """NO isolation: workers are plain processes of this user. For debugging trusted code only.

    The Executor prints the warning to stderr each time it starts; this resource also puts it
    in the Dagster run's log, where whoever reads the run sees it.
    """

    mode: ClassVar[str] = "unsafe_subprocess"

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        if context.log is not None:
            context.log.warning(UNSAFE_WARNING)


SANDBOXES: dict[str, type[SandboxResource]] = {
    cls.mode: cls for cls in (NsjailSandbox, UnsafeSubprocessSandbox)
}


def sandbox_from_settings(settings: SandboxSettings) -> SandboxResource:
    """The sandbox resource for `settings.mode`, configured with the settings it uses."""
    cls = SANDBOXES[settings.mode]
    # The Dagster config mirrors SandboxSettings, with paths as strings; settings another mode
    # would need (nsjail's limits in unsafe mode) have nothing to act on and are left out.
    fields = settings.model_dump(mode="json", exclude={"mode"})
    return cls(**{name: value for name, value in fields.items() if name in cls.model_fields})
