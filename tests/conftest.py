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
