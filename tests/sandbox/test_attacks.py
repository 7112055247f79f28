"""The attack suite in a real one-worker jail: each attack contained, the next job still fine."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from codeio_dagster.sandbox import Executor
from codeio_dagster.sandbox.attacks import PROJECT_ROOT, attacks, run_attacks

_NAMES = [
    a.name for a in attacks({"port4": 1, "port6": 1, "canary": Path("/x"), "project": PROJECT_ROOT})
]


@pytest.fixture(scope="module")
def reports(sandbox_settings):
    with Executor(sandbox_settings.model_copy(update={"workers": 1})) as ex:
        return {r.name: r for r in run_attacks(ex)}


@pytest.mark.parametrize("name", _NAMES)
def test_attack_is_contained(reports, name):
    report = reports[name]
    assert report.contained, f"{name}: {report.status}: {report.detail}"


def test_selftest_command_prints_the_table(sandbox_settings):
    codeio = Path(sys.executable).parent / "codeio"
    proc = subprocess.run(
        [str(codeio), "sandbox", "selftest"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{len(_NAMES)}/{len(_NAMES)} attacks contained" in proc.stdout
    assert "fork bomb" in proc.stdout and "BREACH" not in proc.stdout
