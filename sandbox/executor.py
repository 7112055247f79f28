"""Batch executor: one long-lived jail with a fork-server per worker, jobs spread across them."""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import re
import select
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from codeio_dagster.sandbox.jail import (
    SANDBOX_SRC,
    CgroupSupport,
    build_config,
    locate_nsjail_binary,
    prepare_cgroups,
    sweep_stale_cgroups,
)
from codeio_dagster.sandbox.runtime import runtime_is_current, runtime_python
from codeio_dagster.sandbox.settings import SandboxSettings

log = logging.getLogger(__name__)

Status = Literal["ok", "exception", "timeout", "memory", "output_limit", "killed", "invalid_output"]
_HEADER = struct.Struct(">I")
_START_TIMEOUT_S = 120.0
# Slack the host grants beyond the fork-server's own limit before it declares the jail hung.
_WATCHDOG_SLACK_S = 10.0

UNSAFE_WARNING = (
    "!!! SANDBOX DISABLED: mode=unsafe_subprocess runs untrusted code as this user, with "
    "network, your files and your environment's secrets reachable. Use it only for debugging "
    "trusted code. !!!"
)


class Job(BaseModel):
    """One call of `call` from `code` with `input` as kwargs (dict) or positional args (list)."""

    model_config = ConfigDict(extra="forbid")

    id: str
    code: str
    call: str = "main_solution"
    input: dict[str, Any] | list[Any] = Field(default_factory=dict)
    timeout_s: float | None = Field(None, gt=0, le=3600)
    hash_seed: int | None = Field(
        None, ge=0, le=4294967295, description="Run under another PYTHONHASHSEED (own jails)."
    )


class JobResult(BaseModel):
    """How one job ended; output is canonical JSON text when status is ok."""

    model_config = ConfigDict(extra="forbid")

    id: str
    status: Status
    output: str | None = None
    error: str | None = None
    duration_ms: float = 0.0
    conversions: list[str] = Field(default_factory=list)
    stdout: str = ""


class WorkerDied(Exception):
    """The jail exited or stopped answering."""

    def __init__(self, message: str, hung: bool = False):
        super().__init__(message)
        self.hung = hung


class _Worker:
    """One jail (or, unsafe, one plain process) running the fork-server."""

    def __init__(self, executor: Executor, hash_seed: int, heavy: bool, index: int):
        self.executor = executor
        self.hash_seed = hash_seed
        self.heavy = heavy
        self.index = index
        self.proc: subprocess.Popen | None = None
        self.buf = bytearray()
        self.starts = 0
        kind = "heavy" if heavy else "light"
        self.stderr_path = executor.scratch / f"worker-{hash_seed}-{kind}-{index}.log"

    def start(self) -> None:
        ex = self.executor
        settings = ex.settings
        self.starts += 1
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
            wd = ex.scratch / f"tmp-{self.hash_seed}-{int(self.heavy)}-{self.index}"
            wd.mkdir(exist_ok=True)
            workdir = str(wd)
            cmd = [str(ex.python), "-s", "-B", str(SANDBOX_SRC / "forkserver.py")]
            env = {"PATH": "/usr/bin:/bin", "HOME": workdir, "PYTHONHASHSEED": str(self.hash_seed)}
            env.update({k: "1" for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")})
        with open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                env=env,
                close_fds=True,
                start_new_session=True,
            )
        self.buf = bytearray()
        preload = settings.preload + (settings.heavy_preload if self.heavy else [])
        self._send({"workdir": workdir, "preload": preload})
        hello = self._recv(_START_TIMEOUT_S)
        if not hello.get("ready"):
            raise WorkerDied(f"fork-server did not start: {hello}")

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

    def request(self, req: dict[str, Any], wall_s: float) -> dict[str, Any]:
        if self.proc is None or self.proc.poll() is not None:
            self.kill()
            self.start()
        self._send(req)
        return self._recv(wall_s + _WATCHDOG_SLACK_S)

    def _send(self, obj: dict[str, Any]) -> None:
        data = json.dumps(obj).encode("utf-8")
        assert self.proc is not None and self.proc.stdin is not None
        try:
            self.proc.stdin.write(_HEADER.pack(len(data)) + data)
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise WorkerDied(f"jail stopped accepting jobs: {exc}") from None

    def _recv(self, timeout_s: float) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout_s
        need = _HEADER.size
        size = None
        while True:
            if size is None and len(self.buf) >= _HEADER.size:
                (size,) = _HEADER.unpack(self.buf[: _HEADER.size])
                need = _HEADER.size + size
            if size is not None and len(self.buf) >= need:
                body = bytes(self.buf[_HEADER.size : need])
                del self.buf[:need]
                return json.loads(body)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WorkerDied(f"no reply within {timeout_s:.1f} s", hung=True)
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                raise WorkerDied("jail exited")
            self.buf += chunk


class Executor:
    """Runs jobs in isolated, long-lived fork-server jails; use as a context manager."""

    def __init__(self, settings: SandboxSettings | None = None):
        self.settings = settings or SandboxSettings()
        self._pools: dict[tuple[int, bool], list[_Worker]] = {}
        self._lock = threading.Lock()
        self._tmp: tempfile.TemporaryDirectory | None = None
        self.cgroups = CgroupSupport(False, False, "not prepared")
        self.nsjail: Path | None = None
        self.python: Path | None = None
        self.runtime_dir: Path | None = None

    @property
    def scratch(self) -> Path:
        assert self._tmp is not None, "Executor used outside its `with` block"
        return Path(self._tmp.name)

    def __enter__(self) -> Executor:
        self._tmp = tempfile.TemporaryDirectory(prefix="codeio-sandbox-")
        try:
            self._prepare()
        except BaseException:
            self.close()
            raise
        return self

    def _prepare(self) -> None:
        settings = self.settings
        if settings.mode == "unsafe_subprocess":
            print(UNSAFE_WARNING, file=sys.stderr, flush=True)
            log.warning(UNSAFE_WARNING)
            self.runtime_dir = _optional_runtime(settings)
            self.python = (
                runtime_python(self.runtime_dir) if self.runtime_dir else Path(sys.executable)
            )
        else:
            self.runtime_dir = settings.resolved_runtime_dir()
            if not runtime_is_current(self.runtime_dir):
                raise FileNotFoundError(
                    f"sandbox runtime not built in {self.runtime_dir}: run `codeio sandbox setup`"
                )
            self.nsjail = locate_nsjail_binary(settings)
            self.cgroups = prepare_cgroups(settings)
            if not (self.cgroups.memory and self.cgroups.pids):
                log.warning(
                    "sandbox: cgroup limits unavailable (%s); rlimits only", self.cgroups.reason
                )
        self._pool(settings.hash_seed, False)

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop every jail and remove the scratch folder."""
        with self._lock:
            pools, self._pools = self._pools, {}
        for pool in pools.values():
            for worker in pool:
                worker.stop()
        if self.cgroups.memory or self.cgroups.pids:
            sweep_stale_cgroups()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def _pool(self, hash_seed: int, heavy: bool) -> list[_Worker]:
        key = (hash_seed, heavy)
        with self._lock:
            pool = self._pools.get(key)
            if pool is None:
                count = self.settings.worker_count()
                pool = [_Worker(self, hash_seed, heavy, i) for i in range(count)]
                self._pools[key] = pool
        return pool

    def is_heavy(self, code: str) -> bool:
        """Whether code imports a heavy library, so it should run in the jails preloading them."""
        if not self.settings.heavy_preload:
            return False
        return _heavy_pattern(tuple(self.settings.heavy_modules)).search(code) is not None

    def base_request(self, timeout_s: float | None) -> dict[str, Any]:
        """Limits every request carries."""
        timeout = timeout_s or self.settings.timeout_s
        return {
            "max_output_bytes": self.settings.max_output_bytes,
            "memory_mb": self.settings.memory_mb,
            "wall_timeout_s": timeout,
            "cpu_s": math.ceil(timeout) + 1,
        }

    def run(self, jobs: Sequence[Job], progress: bool = False) -> list[JobResult]:
        """Run jobs in parallel across the workers; results come back in input order."""
        requests = []
        for job in jobs:
            req = self.base_request(job.timeout_s)
            req.update(kind="call", id=job.id, code=job.code, call=job.call, input=job.input)
            requests.append((job.hash_seed, req))
        replies = self.run_requests(requests, progress=progress)
        return [
            _to_result(req["id"], reply) for (_, req), reply in zip(requests, replies, strict=True)
        ]

    def run_requests(
        self,
        requests: Sequence[tuple[int | None, dict[str, Any]]],
        progress: bool = False,
        on_reply: Callable[[int, dict[str, Any]], None] | None = None,
    ) -> list[dict[str, Any]]:
        """Send raw fork-server requests, (hash_seed or None, request), and collect the replies."""
        if self._tmp is None:
            raise RuntimeError("Executor must be entered (`with Executor(settings) as ex:`) first")
        replies: list[dict[str, Any] | None] = [None] * len(requests)
        by_pool: dict[tuple[int, bool], list[int]] = {}
        for i, (seed, req) in enumerate(requests):
            key = (self.settings.hash_seed if seed is None else seed, self.is_heavy(req["code"]))
            by_pool.setdefault(key, []).append(i)
        bar = _progress_bar(len(requests)) if progress else None
        lock = threading.Lock()
        threads = []
        for (seed, heavy), indices in by_pool.items():
            queue = list(reversed(indices))
            for worker in self._pool(seed, heavy)[: len(indices)]:

                def loop(worker: _Worker = worker, queue: list[int] = queue) -> None:
                    while True:
                        with lock:
                            if not queue:
                                return
                            i = queue.pop()
                        req = requests[i][1]
                        replies[i] = _ask(worker, req)
                        if on_reply is not None:
                            on_reply(i, replies[i])
                        if bar is not None:
                            with lock:
                                bar.update(1)

                threads.append(threading.Thread(target=loop, daemon=True))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if bar is not None:
            bar.close()
        return [r if r is not None else {"status": "killed", "error": "lost"} for r in replies]


@functools.cache
def _heavy_pattern(modules: tuple[str, ...]) -> re.Pattern[str]:
    names = "|".join(re.escape(m) for m in modules)
    return re.compile(rf"^\s*(?:import|from)\s+(?:{names})\b", re.MULTILINE)


def _ask(worker: _Worker, req: dict[str, Any]) -> dict[str, Any]:
    started = time.monotonic()
    try:
        return worker.request(req, float(req["wall_timeout_s"]))
    except WorkerDied as exc:
        detail = worker.tail_log()
        worker.kill()
        status = "timeout" if exc.hung else "killed"
        msg = f"sandbox worker {'hung' if exc.hung else 'died'} during this job: {exc}"
        if detail:
            msg += f"; jail log: {detail}"
        return {
            "status": status,
            "error": msg,
            "duration_ms": (time.monotonic() - started) * 1000.0,
        }


_STATUSES = set(Status.__args__)  # type: ignore[attr-defined]


def _is_json_text(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        json.loads(value)
    except ValueError:
        return False
    return True


def _to_result(job_id: str, reply: dict[str, Any]) -> JobResult:
    # The reply crossed a pipe the job could also write to: trust its shape only after checking.
    status = reply.get("status")
    error = reply.get("error")
    error = None if error is None else str(error)[:4000]
    output = reply.get("output") if status == "ok" else None
    if status not in _STATUSES:
        status, error = "invalid_output", f"malformed reply status {str(status)[:80]!r}"
    elif status == "ok" and not _is_json_text(output):
        status, output, error = "invalid_output", None, "reply output is not JSON text"
    conversions = reply.get("conversions")
    if not (isinstance(conversions, list) and all(isinstance(c, str) for c in conversions)):
        conversions = []
    try:
        duration = float(reply.get("duration_ms", 0.0))
    except (TypeError, ValueError):
        duration = 0.0
    return JobResult(
        id=job_id,
        status=status,
        output=output,
        error=error,
        duration_ms=duration,
        conversions=conversions[:50],
        stdout=str(reply.get("stdout") or "")[:8192],
    )


def _optional_runtime(settings: SandboxSettings) -> Path | None:
    try:
        path = settings.resolved_runtime_dir()
    except ValueError:
        return None
    return path if runtime_is_current(path) else None


def _progress_bar(total: int):
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a project dependency
        return None
    return tqdm(total=total, unit="job", file=sys.stderr, dynamic_ncols=True)
