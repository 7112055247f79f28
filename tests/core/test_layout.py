"""The installed project exposes assets/sensors/sandbox only under codeio_dagster."""

import os
import subprocess
import sys
from pathlib import Path


def _run(code: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True)


def test_namespaced_packages_import(tmp_path):
    result = _run(
        "import codeio_dagster.assets, codeio_dagster.sensors, codeio_dagster.sandbox;"
        "print(codeio_dagster.assets.__name__)",
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "codeio_dagster.assets"


def test_no_generic_top_level_modules(tmp_path):
    for name in ("assets", "sensors", "sandbox"):
        result = _run(f"import {name}", tmp_path)
        assert result.returncode != 0, f"`import {name}` should fail outside the repo"
        assert "ModuleNotFoundError" in result.stderr


def _validate_workspace(project_root, tmp_path, **env) -> subprocess.CompletedProcess:
    dagster = Path(sys.executable).with_name("dagster")
    return subprocess.run(
        [str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=project_root,
        capture_output=True,
        text=True,
        env={**os.environ, "DAGSTER_HOME": str(tmp_path), **env},
        timeout=300,
    )


def test_workspace_loads_the_code_location_make_dev_serves(project_root, tmp_path):
    result = _validate_workspace(project_root, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Validation successful for code location codeio_dagster" in result.stdout + result.stderr


def test_workspace_with_a_bad_config_fails_naming_the_key(project_root, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("shards:\n  size: 0\n")
    result = _validate_workspace(project_root, tmp_path, CODEIO_CONFIG=str(bad))
    assert result.returncode != 0
    assert "shards.size = 0" in result.stdout + result.stderr
