"""Builds the jail's Python runtime: Debian's python3 plus pinned scientific packages.

The jail runs as an unprivileged uid, so its interpreter and packages must live in a folder that
uid can read (never under a 0700 home folder, where pyenv keeps its interpreters) and must hold
nothing of the project's own environment. Run as a script (`python -m
codeio_dagster.sandbox.runtime [DIR]`) or through `codeio sandbox setup`.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from codeio_dagster.sandbox.settings import SandboxSettings

_log = logging.getLogger(__name__)
SYSTEM_PYTHON = Path("/usr/bin/python3")
# Pinned so every machine's jail runs the same library versions; the extra rows are the
# dependencies these resolve to, pinned for the same reason.
RUNTIME_PACKAGES = [
    "numpy==2.4.6",
    "scipy==1.17.1",
    "sympy==1.14.0",
    "networkx==3.6.1",
    "pandas==3.1.1",
    "mpmath==1.3.0",
    "python-dateutil==4.0.0",
    "tzdata==2026.6",
    # Pure-Python modules that CodeI/O-style functions import (3 of 300 held-out functions
    # failed without yaml or six).
    "pyyaml==6.0.4",
    "six==1.17.0",
    "sortedcontainers==2.4.0",
]
MARKER = ".codeio-runtime.json"
# 3: bytecode compiled at build time. The jail cannot write it to the read-only runtime, so
# every module imported without it was compiled from source at each import: scipy.stats and
# the other scipy submodules a heavy jail preloads cost 2.0 s of CPU against 0.9 s with it.
_RECIPE_VERSION = 3


class RuntimeBuildError(RuntimeError):
    """The runtime could not be built or is unusable."""


def runtime_python(runtime_dir: Path) -> Path:
    """The interpreter inside a runtime folder."""
    return runtime_dir / "bin" / "python"


def recipe_hash() -> str:
    """sha256 of what the runtime is built from: interpreter and pinned packages."""
    recipe = {"v": _RECIPE_VERSION, "python": str(SYSTEM_PYTHON), "packages": RUNTIME_PACKAGES}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


def runtime_path(settings: SandboxSettings) -> Path:
    """The runtime of the current recipe: a folder of its own under the configured one.

    One folder per recipe, so a machine can hold the runtimes of two versions of the project
    (checkouts, workers of a rolling upgrade) and building one never deletes the one that
    another process's jails are running on.
    """
    return settings.resolved_runtime_dir() / f"recipe-{recipe_hash()[:16]}"


def _uv_works(cmd: list[str]) -> bool:
    try:
        probe = subprocess.run([*cmd, "--version"], capture_output=True, text=True, check=False)
    except OSError:
        return False
    return probe.returncode == 0 and probe.stdout.startswith("uv ")


def find_uv() -> list[str]:
    """The command that runs uv: $UV, next to this interpreter, on PATH, or `python -m uv`."""
    candidates: list[list[str]] = []
    if os.environ.get("UV"):
        candidates.append([os.environ["UV"]])
    candidates.append([str(Path(sys.executable).parent / "uv")])
    on_path = shutil.which("uv")
    if on_path:
        # A pyenv shim may be on PATH without a uv behind it; _uv_works weeds it out.
        candidates.append([on_path])
    candidates.append([sys.executable, "-m", "uv"])
    for cmd in candidates:
        if _uv_works(cmd):
            return cmd
    raise RuntimeBuildError(
        "uv is needed to build the sandbox runtime but none works: tried $UV, "
        f"{Path(sys.executable).parent / 'uv'}, `uv` on PATH and `{sys.executable} -m uv`; "
        "install it (`pip install uv`) or set UV=/path/to/uv"
    )


def runtime_is_current(runtime_dir: Path) -> bool:
    """Whether runtime_dir holds a finished build of the current recipe."""
    marker = runtime_dir / MARKER
    try:
        return json.loads(marker.read_text()).get("recipe") == recipe_hash()
    except (OSError, ValueError):
        return False


def _check_readable_path(path: Path) -> None:
    for parent in [*reversed(path.parents)]:
        if not parent.exists():
            continue
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            raise RuntimeBuildError(
                f"runtime folder {path} is inside {parent} (mode {stat.filemode(mode)}), which "
                "the jail's unprivileged uid cannot enter; choose a folder outside it"
            )


def _make_world_readable(root: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p):
                os.chmod(p, os.stat(p).st_mode | 0o555)
        for name in filenames:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p):
                os.chmod(p, os.stat(p).st_mode | 0o444)
    os.chmod(root, os.stat(root).st_mode | 0o555)


def ensure_runtime(
    settings: SandboxSettings | None = None, *, log: Callable[[str], None] | None = None
) -> Path:
    """Build the jail runtime if missing or outdated (idempotent) and return its folder."""
    settings = settings or SandboxSettings()
    log = log or _log.info
    runtime_dir = runtime_path(settings)
    if runtime_is_current(runtime_dir):
        return runtime_dir
    if not SYSTEM_PYTHON.is_file():
        raise RuntimeBuildError(
            f"{SYSTEM_PYTHON} is missing; the sandbox runtime is built on the system Python: "
            "run `apt-get install python3`"
        )
    _check_readable_path(runtime_dir)
    uv = find_uv()
    runtime_dir.parent.mkdir(parents=True, exist_ok=True)
    lock_path = runtime_dir.parent / f".{runtime_dir.name}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if runtime_is_current(runtime_dir):
            return runtime_dir
        log(
            f"building the sandbox runtime in {runtime_dir} (packages: {' '.join(RUNTIME_PACKAGES)})"
        )
        if runtime_dir.exists():
            shutil.rmtree(runtime_dir)
        # The host environment is passed on (proxies, certificates, index settings): nothing of
        # it is stored in the runtime, and the jail never sees it.
        env = dict(os.environ)
        _run([*uv, "venv", "-q", "-p", str(SYSTEM_PYTHON), str(runtime_dir)], env)
        _run(
            [
                *uv,
                "pip",
                "install",
                "-q",
                "--compile-bytecode",
                "-p",
                str(runtime_python(runtime_dir)),
                *RUNTIME_PACKAGES,
            ],
            env,
        )
        _make_world_readable(runtime_dir)
        base = runtime_dir.parent
        os.chmod(base, os.stat(base).st_mode | 0o555)
        probe = subprocess.run(
            [
                str(runtime_python(runtime_dir)),
                "-c",
                "import numpy, scipy, sympy, networkx, pandas, yaml, six, sortedcontainers",
            ],
            capture_output=True,
            text=True,
            env={"PATH": "/usr/bin:/bin"},
            check=False,
        )
        if probe.returncode != 0:
            raise RuntimeBuildError(f"the built runtime cannot import its packages: {probe.stderr}")
        (runtime_dir / MARKER).write_text(json.dumps({"recipe": recipe_hash()}))
        os.chmod(runtime_dir / MARKER, 0o644)
    return runtime_dir


def _run(cmd: list[str], env: dict[str, str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeBuildError(
            f"`{' '.join(cmd)}` failed with exit code {proc.returncode}:\n{proc.stderr[-2000:]}"
        )


def main(argv: list[str] | None = None) -> int:
    """Build the runtime in the folder given on the command line (or the default)."""
    args = sys.argv[1:] if argv is None else argv
    settings = SandboxSettings(runtime_dir=Path(args[0]).resolve()) if args else SandboxSettings()
    print(ensure_runtime(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
