"""Shared test fixtures: where the project and the shared real-world fixtures are."""

from __future__ import annotations

from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_FIXTURES = PROJECT_ROOT.parent / "shared" / "fixtures"


@pytest.fixture(scope="session")
def project_root() -> Path:
    return PROJECT_ROOT


@pytest.fixture(scope="session")
def shared_fixtures() -> Path:
    """The folder of real data written by others; a test needing it skips, loudly, without it."""
    if not SHARED_FIXTURES.is_dir():
        pytest.skip(f"shared fixtures folder not found at {SHARED_FIXTURES} (see DESIGN.md)")
    return SHARED_FIXTURES


@pytest.fixture(autouse=True)
def _isolated_plugin_registries():
    """Plugins a test registers are forgotten after it, so no test sees another's plugins."""
    from codeio_dagster.plugins import sources_registry, tasks_registry

    saved = [(r, dict(r._classes)) for r in (sources_registry(), tasks_registry())]
    yield
    for registry, classes in saved:
        registry._classes = classes
