"""One jail (or, unsafe, one plain process) running the fork-server, and how it is launched."""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import struct
import subprocess
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from codeio_dagster.sandbox.jail import SANDBOX_SRC, build_config

if TYPE_CHECKING:
    from codeio_dagster.sandbox.executor import Executor

log = logging.getLogger(__name__)

_HEADER = struct.Struct(">I")
_START_TIMEOUT_S = 120.0
# Slack the host grants beyond the fork-server's own limit before it declares the jail hung.
_WATCHDOG_SLACK_S = 10.0


class WorkerDied(Exception):
    """The jail exited or stopped answering."""

    def __init__(self, message: str, hung: bool = False):
        super().__init__(message)
        self.hung = hung


class Worker:
    """One jail (or, unsafe, one plain process) running the fork-server.

    Driven by `Batch`'s event loop: frames are queued in `out` and written without blocking,
    replies parsed from `buf`; `inflight` holds the request indices sent and not yet answered,
    in order, the first of them running.
    """

    def __init__(self, executor: Executor, hash_seed: int, modules: frozenset[str], index: int):
        self.executor = executor
        self.hash_seed = hash_seed
        # The heavy modules its template preloads (Executor.preload_for); none for a light jail.
        self.modules = modules
        self.heavy = bool(modules)
        self.key = (hash_seed, modules)
        self.index = index
        self.proc: subprocess.Popen | None = None
        self.buf = bytearray()
        self.out = bytearray()
        self.inflight: deque[int] = deque()
        self.awaiting_hello = False
        # When the first in-flight request started running (as far as the host can tell).
        self.head_since = 0.0
        self.starts = 0
        # When a job was last sent to it: the least recently used idle jail stops first.
        self.used = 0.0
        self.kind = "-".join(sorted(modules)) or "light"
        self.stderr_path = executor.scratch / f"worker-{hash_seed}-{self.kind}-{index}.log"

    def start(self) -> None:
        """Launch the jail; its hello arrives later, through the event loop."""
        ex = self.executor
        settings = ex.settings
        self.starts += 1
        ex.jail_starts[self.key] = ex.jail_starts.get(self.key, 0) + 1
        workdir = "/tmp"
        if settings.mode == "nsjail":
            cfg_path = ex.scratch / f"jail-{self.hash_seed}.cfg"
            if not cfg_path.exists():
                cfg_path.write_text(
                    build_config(settings, ex.runtime_dir, self.hash_seed, ex.cgroups)
                )
            cmd = [str(ex.nsjail), "--config", str(cfg_path)]
            env = {"PATH": "/usr/bin:/bin"}
        else:
            wd = ex.scratch / f"tmp-{self.hash_seed}-{self.kind}-{self.index}"
            wd.mkdir(exist_ok=True)
            workdir = str(wd)
            cmd = [str(ex.python), "-s", "-B", str(SANDBOX_SRC / "forkserver.py")]
            env = {"PATH": "/usr/bin:/bin", "HOME": workdir, "PYTHONHASHSEED": str(self.hash_seed)}
            env.update({k: "1" for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")})
        with open(self.stderr_path, "ab") as err:
            self.proc = _launch([*_die_with_parent(), *cmd], err, env)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        os.set_blocking(self.proc.stdin.fileno(), False)
        os.set_blocking(self.proc.stdout.fileno(), False)
        self.buf = bytearray()
        self.out = bytearray()
        self.inflight.clear()
        self.awaiting_hello = True
        self.head_since = time.monotonic()
        preload = ex.preload_for(self.modules)
        ex.jail_preloads.append((self.key, tuple(preload)))
        if self.heavy:
            log.info("sandbox: heavy jail (hash seed %d) preloading %s", self.hash_seed, preload)
        self.queue({"workdir": workdir, "preload": preload})

    def stop(self) -> None:
        proc = self.proc
        self.proc = None
        if proc is None:
            return
        try:
            if proc.stdin:
                proc.stdin.close()
            proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()

    def kill(self) -> None:
        proc = self.proc
        self.proc = None
        if proc is None:
            return
        proc.kill()
        proc.wait()
        for stream in (proc.stdin, proc.stdout):
            try:
                if stream:
                    stream.close()
            except OSError:
                pass

    def tail_log(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")[-600:].strip()
        except OSError:
            return ""

    def deadline(self, requests: Sequence[tuple[int | None, dict[str, Any]]]) -> float:
        """When the host gives up on the jail: start-up, or the running job's limit plus slack."""
        if self.awaiting_hello:
            return self.head_since + _START_TIMEOUT_S
        wall = float(requests[self.inflight[0]][1]["wall_timeout_s"])
        return self.head_since + wall + _WATCHDOG_SLACK_S

    def queue(self, obj: dict[str, Any]) -> None:
        data = json.dumps(obj).encode("utf-8")
        self.out += _HEADER.pack(len(data))
        self.out += data

    def flush(self) -> None:
        """Write what the pipe takes now."""
        assert self.proc is not None and self.proc.stdin is not None
        try:
            while self.out:
                written = os.write(self.proc.stdin.fileno(), self.out)
                del self.out[:written]
        except BlockingIOError:
            pass
        except OSError as exc:
            raise WorkerDied(f"jail stopped accepting jobs: {exc}") from None

    def read_frames(self) -> list[dict[str, Any]]:
        """Every complete frame that has arrived; WorkerDied at end of file."""
        assert self.proc is not None and self.proc.stdout is not None
        try:
            chunk = os.read(self.proc.stdout.fileno(), 1 << 20)
        except BlockingIOError:
            return []
        except OSError as exc:
            raise WorkerDied(f"jail pipe failed: {exc}") from None
        if not chunk:
            raise WorkerDied("jail exited")
        self.buf += chunk
        frames = []
        while len(self.buf) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(self.buf)
            end = _HEADER.size + size
            if len(self.buf) < end:
                break
            body = bytes(self.buf[_HEADER.size : end])
            del self.buf[:end]
            try:
                frames.append(json.loads(body))
            except (ValueError, RecursionError, MemoryError):
                raise WorkerDied("jail sent a malformed frame") from None
        return frames


_launcher: tuple[int, ThreadPoolExecutor] | None = None
_launcher_lock = threading.Lock()


def _launch(cmd: list[str], stderr: Any, env: dict[str, str]) -> subprocess.Popen:
    """Start a jail from the one long-lived launcher thread of this process.

    The kernel sends PR_SET_PDEATHSIG when the *thread* that forked a process ends, so a jail
    started from a short-lived thread (a Dagster step's) would die with that thread.
    """
    global _launcher
    with _launcher_lock:
        if _launcher is None or _launcher[0] != os.getpid():
            _launcher = (os.getpid(), ThreadPoolExecutor(1, thread_name_prefix="codeio-jails"))
        pool = _launcher[1]
    return pool.submit(
        subprocess.Popen,
        cmd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
        env=env,
        close_fds=True,
        start_new_session=True,
    ).result()


@functools.cache
def _die_with_parent() -> tuple[str, ...]:
    """A prefix that makes the jail's process get SIGKILL when this process dies.

    nsjail already kills its jail when nsjail itself dies; this closes the gap between us and
    nsjail, so a killed run leaves no jail running until its limits.
    """
    setpriv = shutil.which("setpriv", path="/usr/bin:/bin")
    if setpriv is None:
        log.warning("setpriv (util-linux) not found: jails outlive a killed run until their limits")
        return ()
    return (setpriv, "--pdeathsig", "KILL", "--")
