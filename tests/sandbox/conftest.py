"""Fixtures for the sandbox tests: the real runtime and a shared real nsjail executor."""

from __future__ import annotations

import os

import pytest

from codeio_dagster.sandbox import Executor, SandboxSettings, ensure_runtime


@pytest.fixture(scope="session")
def sandbox_settings() -> SandboxSettings:
    """Settings for real nsjail; builds the runtime (idempotent) once per session."""
    if os.geteuid() != 0:
        pytest.skip("the sandbox tests need root (nsjail uid mapping and cgroups)")
    settings = SandboxSettings(workers=2, timeout_s=5.0)
    ensure_runtime(settings)
    return settings


@pytest.fixture(scope="session")
def executor(sandbox_settings: SandboxSettings):
    """One executor (two jails) shared by the tests of a session."""
    with Executor(sandbox_settings) as ex:
        yield ex
