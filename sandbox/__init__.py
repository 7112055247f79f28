"""Isolated execution of untrusted code: nsjail fork-server jails, I/O pairs, answer checks."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# The module each public name lives in, imported on first use: a caller that needs only the
# comparison rule (values.py) does not import the executor and pydantic with it.
_EXPORTS = {
    "Executor": "executor",
    "FunctionSpec": "iopairs",
    "IOPair": "iopairs",
    "IOPairLimits": "settings",
    "IOPairOutcome": "iopairs",
    "Job": "jobs",
    "JobResult": "jobs",
    "SandboxSettings": "settings",
    "canonical_json": "values",
    "combine_for_sandbox": "iopairs",
    "ensure_runtime": "runtime",
    "generate_io_pairs": "iopairs",
    "outputs_equal": "values",
}

if TYPE_CHECKING:
    from codeio_dagster.sandbox.executor import Executor
    from codeio_dagster.sandbox.iopairs import (
        FunctionSpec,
        IOPair,
        IOPairOutcome,
        combine_for_sandbox,
        generate_io_pairs,
    )
    from codeio_dagster.sandbox.jobs import Job, JobResult
    from codeio_dagster.sandbox.runtime import ensure_runtime
    from codeio_dagster.sandbox.settings import IOPairLimits, SandboxSettings
    from codeio_dagster.sandbox.values import canonical_json, outputs_equal


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "Executor",
    "FunctionSpec",
    "IOPair",
    "IOPairLimits",
    "IOPairOutcome",
    "Job",
    "JobResult",
    "SandboxSettings",
    "canonical_json",
    "combine_for_sandbox",
    "ensure_runtime",
    "generate_io_pairs",
    "outputs_equal",
]
