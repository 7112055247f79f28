"""The installed project exposes assets/sensors/sandbox only under codeio_dagster."""

import subprocess
import sys


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
