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


def read_stage_tables(data_dir, shards: list[str], names: list[str]) -> dict:
    """What the IO manager stored for the named stages and shards (tests look at the rows;
    the pipeline itself never reads tables behind Dagster's back)."""
    import polars as pl

    from codeio_dagster.io_manager import partition_path, stage_tables_dir

    tables = {}
    for name in names:
        paths = [partition_path(stage_tables_dir(data_dir), name, s) for s in shards]
        paths = [p for p in paths if p.exists()]
        if paths:
            tables[name] = pl.concat([pl.read_parquet(p) for p in paths], how="vertical_relaxed")
    return tables


@pytest.fixture(scope="session")
def stage_tables():
    """`read_stage_tables` as a fixture (test modules are not a package)."""
    return read_stage_tables
