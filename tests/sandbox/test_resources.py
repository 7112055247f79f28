"""The sandbox resources: picked by mode, round-tripping the settings, injected into assets."""

from __future__ import annotations

import subprocess
import sys

import dagster as dg
import pytest

from codeio_dagster.sandbox import Job
from codeio_dagster.sandbox.executor import UNSAFE_WARNING
from codeio_dagster.sandbox.resources import (
    NsjailSandbox,
    SandboxConfig,
    SandboxResource,
    UnsafeSubprocessSandbox,
    sandbox_from_settings,
)

JOB = Job(id="j", code="def f(x):\n    return x * 2\n", call="f", input=[21])


def test_the_factory_picks_the_implementation_from_the_mode(tmp_path):
    nsjail = SandboxConfig(
        workers=3,
        timeout_s=2.5,
        runtime_dir=tmp_path,
        nsjail_path=tmp_path / "nsjail",
        cgroups="off",
        tmpfs_mb=32,
        preload=["json"],
    )
    jail = sandbox_from_settings(nsjail)
    assert type(jail) is NsjailSandbox
    assert jail.settings is nsjail  # the section itself: no mirror, nothing filtered out
    assert NsjailSandbox().settings == SandboxConfig()

    unsafe = SandboxConfig(mode="unsafe_subprocess", workers=1, runtime_dir=tmp_path, tmpfs_mb=32)
    plain = sandbox_from_settings(unsafe)
    assert type(plain) is UnsafeSubprocessSandbox
    assert plain.settings is unsafe
    assert UnsafeSubprocessSandbox().settings.mode == "unsafe_subprocess"


def test_settings_are_validated_when_the_resource_is_built():
    with pytest.raises(ValueError, match="runtime_dir must be an absolute path"):
        NsjailSandbox(settings={"runtime_dir": "relative/path"})
    # The class is the isolation choice: settings naming the other mode are refused, not ignored.
    with pytest.raises(ValueError, match="NsjailSandbox runs mode 'nsjail'.*unsafe_subprocess"):
        NsjailSandbox(settings=SandboxConfig(mode="unsafe_subprocess"))
    with pytest.raises(ValueError, match="UnsafeSubprocessSandbox runs mode 'unsafe_subprocess'"):
        UnsafeSubprocessSandbox(settings=SandboxConfig())


def test_the_unsafe_sandbox_warns_in_the_run_log_and_on_stderr(capfd):
    seen = {}

    @dg.asset
    def doubled(sandbox: SandboxResource) -> None:
        seen["type"] = type(sandbox)
        with sandbox.executor() as executor:
            (seen["result"],) = executor.run([JOB])

    instance = dg.DagsterInstance.ephemeral()
    resource = sandbox_from_settings(SandboxConfig(mode="unsafe_subprocess", workers=1))
    result = dg.materialize([doubled], resources={"sandbox": resource}, instance=instance)
    assert result.success
    assert seen["type"] is UnsafeSubprocessSandbox
    assert (seen["result"].status, seen["result"].output) == ("ok", "42")
    messages = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert any(UNSAFE_WARNING in m for m in messages)
    assert UNSAFE_WARNING in capfd.readouterr().err


def test_the_nsjail_sandbox_runs_jobs_in_an_asset(sandbox_settings):
    @dg.asset
    def doubled(sandbox: SandboxResource) -> dg.MaterializeResult:
        with sandbox.executor() as executor:
            (r,) = executor.run([JOB])
        return dg.MaterializeResult(metadata={"status": r.status, "output": r.output})

    instance = dg.DagsterInstance.ephemeral()
    resource = sandbox_from_settings(
        SandboxConfig.model_validate({**sandbox_settings.model_dump(), "workers": 1})
    )
    assert type(resource) is NsjailSandbox
    result = dg.materialize([doubled], resources={"sandbox": resource}, instance=instance)
    meta = result.asset_materializations_for_node("doubled")[0].metadata
    assert (meta["status"].value, meta["output"].value) == ("ok", "42")
    messages = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert not any(UNSAFE_WARNING in m for m in messages)


def test_importing_the_sandbox_does_not_import_dagster():
    code = "import sys, codeio_dagster.sandbox; print('dagster' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_no_sandbox_module_shadows_the_standard_library():
    # Unsafe mode runs forkserver.py from the sandbox folder, which puts that folder first on
    # the server's sys.path: a `resource.py` there replaced the stdlib module it imports.
    from codeio_dagster.sandbox.jail import SANDBOX_SRC

    names = {path.stem for path in SANDBOX_SRC.glob("*.py")}
    assert names & sys.stdlib_module_names == set()
