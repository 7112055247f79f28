"""Isolated execution of untrusted code: nsjail fork-server jails, I/O pairs, answer checks."""

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
