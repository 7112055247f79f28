"""Batch executor: one long-lived jail with a fork-server per worker, jobs spread across them."""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import functools
import hashlib
import json
import logging
import math
import os
import re
import selectors
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from codeio_dagster.progress import Progress
from codeio_dagster.sandbox.cache import ResultCache, result_key
from codeio_dagster.sandbox.jail import (
    SANDBOX_SRC,
    SERVER_FILES,
    CgroupSupport,
    build_config,
    locate_nsjail_binary,
    prepare_cgroups,
    sweep_stale_cgroups,
)
from codeio_dagster.sandbox.runtime import (
    recipe_hash,
    runtime_is_current,
    runtime_path,
    runtime_python,
)
from codeio_dagster.sandbox.settings import SandboxSettings

log = logging.getLogger(__name__)

Status = Literal["ok", "exception", "timeout", "memory", "output_limit", "killed", "invalid_output"]
_HEADER = struct.Struct(">I")
_START_TIMEOUT_S = 120.0
# Slack the host grants beyond the fork-server's own limit before it declares the jail hung.
_WATCHDOG_SLACK_S = 10.0
# Requests written ahead to one jail: it starts the next job without waiting for the host.
_WINDOW = 4
SCRATCH_PREFIX = "codeio-sandbox-"
_OWNER_LOCK = ".owner.lock"

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
    """One jail (or, unsafe, one plain process) running the fork-server.

    Driven by `_Batch`'s event loop: frames are queued in `out` and written without blocking,
    replies parsed from `buf`; `inflight` holds the request indices sent and not yet answered,
    in order, the first of them running.
    """

    def __init__(self, executor: Executor, hash_seed: int, heavy: bool, index: int):
        self.executor = executor
        self.hash_seed = hash_seed
        self.heavy = heavy
        self.key = (hash_seed, heavy)
        self.index = index
        self.proc: subprocess.Popen | None = None
        self.buf = bytearray()
        self.out = bytearray()
        self.inflight: deque[int] = deque()
        self.awaiting_hello = False
        # When the first in-flight request started running (as far as the host can tell).
        self.head_since = 0.0
        self.starts = 0
        kind = "heavy" if heavy else "light"
        self.stderr_path = executor.scratch / f"worker-{hash_seed}-{kind}-{index}.log"

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
            wd = ex.scratch / f"tmp-{self.hash_seed}-{int(self.heavy)}-{self.index}"
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
        preload = settings.preload + (settings.heavy_preload if self.heavy else [])
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
            except ValueError:
                raise WorkerDied("jail sent a malformed frame") from None
        return frames


class _Batch:
    """One `run_requests` call: a single-threaded event loop over the jails.

    Each of the `worker_count()` slots runs one job at a time, in the light or the heavy jail
    of the request's hash seed, so no more jobs execute at once than there are cores. Up to
    `_WINDOW` requests are written ahead to a jail so that it never waits for the host between
    jobs, and the host wakes once for several replies when it is slow to get a CPU.
    """

    def __init__(
        self,
        executor: Executor,
        requests: Sequence[tuple[int | None, dict[str, Any]]],
        progress: bool | str,
        on_reply: Callable[[int, dict[str, Any]], None] | None,
    ):
        self.ex = executor
        self.requests = requests
        executor.requests_run += len(requests)
        self.on_reply = on_reply
        self.replies: list[dict[str, Any] | None] = [None] * len(requests)
        self.left = len(requests)
        self.pending: dict[tuple[int, bool], deque[int]] = {}
        default_seed = executor.settings.hash_seed
        for i, (seed, req) in enumerate(requests):
            key = (default_seed if seed is None else seed, executor.is_heavy(req["code"]))
            self.pending.setdefault(key, deque()).append(i)
        self.slots: list[_Worker | None] = [None] * executor.settings.worker_count()
        label = progress if isinstance(progress, str) else executor.progress
        if label and requests:
            # A stage's jobs (Executor.progress): log lines for the UI's run log and the CLI.
            self.bar: Any = Progress(label, len(requests), log=log, unit="sandbox jobs")
        else:
            self.bar = _progress_bar(len(requests)) if progress is True else None
        self.sel = selectors.DefaultSelector()

    def run(self) -> list[dict[str, Any]]:
        try:
            while self.left:
                for slot in range(len(self.slots)):
                    self._feed(slot)
                self._wait()
        finally:
            self.sel.close()
            if self.bar is not None:
                self.bar.close()
        lost = {"status": "killed", "error": "lost", HOST_MADE: True}
        return [r if r is not None else dict(lost) for r in self.replies]

    def _feed(self, slot: int) -> None:
        worker = self.slots[slot]
        if worker is None or not worker.inflight:
            queued = [(q[0], key) for key, q in self.pending.items() if q]
            if not queued:
                return
            if worker is None or not self.pending.get(worker.key):
                # An idle slot switches to the kind of job that has waited longest.
                worker = self.ex._pool(*min(queued)[1])[slot]
                self.slots[slot] = worker
            if worker.proc is None:
                worker.start()
            assert worker.proc is not None
            if not _is_registered(self.sel, worker.proc.stdout):
                self.sel.register(worker.proc.stdout, selectors.EVENT_READ, worker)
        queue = self.pending.get(worker.key)
        # Near the end of a batch a request written ahead could wait behind a long job while
        # another jail idles, so then one at a time.
        waiting = sum(len(q) for q in self.pending.values())
        window = _WINDOW if waiting > _WINDOW * len(self.slots) else 1
        sent = False
        while queue and len(worker.inflight) < window:
            i = queue.popleft()
            worker.queue(self.requests[i][1])
            if not worker.inflight and not worker.awaiting_hello:
                worker.head_since = time.monotonic()
            worker.inflight.append(i)
            sent = True
        if sent or worker.out:
            try:
                worker.flush()
            except WorkerDied as exc:
                self._fail(worker, exc)
                return
            self._watch_writes(worker)

    def _watch_writes(self, worker: _Worker) -> None:
        assert worker.proc is not None and worker.proc.stdin is not None
        registered = _is_registered(self.sel, worker.proc.stdin)
        if worker.out and not registered:
            self.sel.register(worker.proc.stdin, selectors.EVENT_WRITE, worker)
        elif not worker.out and registered:
            self.sel.unregister(worker.proc.stdin)

    def _wait(self) -> None:
        busy = [w for w in self.slots if w is not None and w.proc is not None and w.inflight]
        if not busy:
            return
        now = time.monotonic()
        timeout = max(0.0, min(w.deadline(self.requests) for w in busy) - now)
        for key, _ in self.sel.select(timeout):
            worker: _Worker = key.data
            if worker.proc is None:
                continue  # killed earlier in this round
            try:
                if key.fileobj is worker.proc.stdin:
                    worker.flush()
                    self._watch_writes(worker)
                else:
                    for frame in worker.read_frames():
                        self._on_frame(worker, frame)
            except WorkerDied as exc:
                self._fail(worker, exc)
        now = time.monotonic()
        for worker in busy:
            if worker.proc is not None and worker.inflight and now > worker.deadline(self.requests):
                waited = now - worker.head_since
                self._fail(worker, WorkerDied(f"no reply within {waited:.1f} s", hung=True))

    def _on_frame(self, worker: _Worker, frame: dict[str, Any]) -> None:
        now = time.monotonic()
        if worker.awaiting_hello:
            if not frame.get("ready"):
                raise WorkerDied(f"fork-server did not start: {frame}")
            worker.awaiting_hello = False
        else:
            if not worker.inflight:
                raise WorkerDied("jail sent a reply nobody asked for")
            self._finish(worker.inflight.popleft(), frame)
        worker.head_since = now

    def _fail(self, worker: _Worker, exc: WorkerDied) -> None:
        detail = worker.tail_log()
        if worker.proc is not None:
            for stream in (worker.proc.stdin, worker.proc.stdout):
                if _is_registered(self.sel, stream):
                    self.sel.unregister(stream)
        worker.kill()
        if not worker.inflight:
            return
        msg = f"sandbox worker {'hung' if exc.hung else 'died'} during this job: {exc}"
        if detail:
            msg += f"; jail log: {detail}"
        self._finish(
            worker.inflight.popleft(),
            {
                "status": "timeout" if exc.hung else "killed",
                "error": msg,
                "duration_ms": (time.monotonic() - worker.head_since) * 1000.0,
                HOST_MADE: True,
            },
        )
        # The others never started: they go back to the front of their queue, in order.
        queue = self.pending.setdefault(worker.key, deque())
        queue.extendleft(reversed(worker.inflight))
        worker.inflight.clear()

    def _finish(self, i: int, reply: dict[str, Any]) -> None:
        self.replies[i] = reply
        self.left -= 1
        if self.on_reply is not None:
            self.on_reply(i, reply)
        if self.bar is not None:
            self.bar.update(1)


def _is_registered(sel: selectors.BaseSelector, fileobj: Any) -> bool:
    try:
        sel.get_key(fileobj)
    except (KeyError, ValueError):
        return False
    return True


class Executor:
    """Runs jobs in isolated, long-lived fork-server jails; use as a context manager.

    `scratch_root` is where its scratch folder goes (default: the temp folder); entering an
    executor removes the scratch folders that executors of dead processes left there.
    """

    def __init__(self, settings: SandboxSettings | None = None, scratch_root: Path | None = None):
        self.settings = settings or SandboxSettings()
        self.scratch_root = Path(scratch_root or tempfile.gettempdir())
        self._pools: dict[tuple[int, bool], list[_Worker]] = {}
        self._lock = threading.Lock()
        self._run_lock = threading.Lock()
        self._scratch: Path | None = None
        self._owner_lock: int | None = None
        self.cgroups = CgroupSupport(False, False, "not prepared")
        self.nsjail: Path | None = None
        self.python: Path | None = None
        self.runtime_dir: Path | None = None
        # Jails started, by (hash seed, heavy), and requests sent to them: what tests and
        # benchmarks count.
        self.jail_starts: dict[tuple[int, bool], int] = {}
        self.requests_run = 0
        # A stage sets its name here to have its batches' progress logged as lines.
        self.progress: str | None = None

    @property
    def scratch(self) -> Path:
        assert self._scratch is not None, "Executor used outside its `with` block"
        return self._scratch

    def __enter__(self) -> Executor:
        sweep_stale_scratch(self.scratch_root)
        self._scratch = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX, dir=self.scratch_root))
        # Held while this process lives: a folder whose lock can be taken has no owner left.
        self._owner_lock = os.open(self._scratch / _OWNER_LOCK, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self._owner_lock, fcntl.LOCK_EX)
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
            self.runtime_dir = runtime_path(settings)
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
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None
        if self._owner_lock is not None:
            os.close(self._owner_lock)
            self._owner_lock = None

    def _pool(self, hash_seed: int, heavy: bool) -> list[_Worker]:
        key = (hash_seed, heavy)
        with self._lock:
            pool = self._pools.get(key)
            if pool is None:
                count = self.settings.worker_count()
                log.info(
                    "sandbox: warming %d %s jail(s)%s",
                    count,
                    "heavy" if heavy else "light",
                    " (preloading numpy, scipy, ...)" if heavy else "",
                )
                pool = [_Worker(self, hash_seed, heavy, i) for i in range(count)]
                self._pools[key] = pool
        return pool

    def is_heavy(self, code: str) -> bool:
        """Whether code names a heavy library, so it should run in the jails preloading them.

        Any mention counts, not only an `import` line at the start: a job sent to the light
        jails that imports one anyway pays the import (numpy ~60 ms, scipy ~1.4 s), while one
        sent to the heavy jails needlessly pays only their dearer fork (~15 ms).
        """
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

    def identity(self) -> dict[str, Any]:
        """What, besides the request, decides a reply: the cache keys include all of it."""
        s = self.settings
        return {
            "server": _server_hash(),
            "runtime": recipe_hash() if self.runtime_dir is not None else sys.version,
            "mode": s.mode,
            "jail": s.model_dump(
                mode="json",
                include={
                    "memory_mb",
                    "max_output_bytes",
                    "max_processes",
                    "tmpfs_mb",
                    "max_open_files",
                    "server_overhead_mb",
                    "cgroups",
                },
            ),
            "preload": list(s.preload),
            "heavy_preload": list(s.heavy_preload),
        }

    def run(
        self, jobs: Sequence[Job], progress: bool = False, cache: ResultCache | None = None
    ) -> list[JobResult]:
        """Run jobs in parallel across the workers; results come back in input order."""
        requests = []
        for job in jobs:
            req = self.base_request(job.timeout_s)
            req.update(kind="call", id=job.id, code=job.code, call=job.call, input=job.input)
            requests.append((job.hash_seed, req))
        replies = self.run_requests(requests, progress=progress, cache=cache)
        return [
            result_from_reply(req["id"], reply)
            for (_, req), reply in zip(requests, replies, strict=True)
        ]

    def run_requests(
        self,
        requests: Sequence[tuple[int | None, dict[str, Any]]],
        progress: bool = False,
        on_reply: Callable[[int, dict[str, Any]], None] | None = None,
        cache: ResultCache | None = None,
    ) -> list[dict[str, Any]]:
        """Send raw fork-server requests, (hash_seed or None, request), and collect the replies.

        With a cache, requests answered before are not run again, and new replies are stored.
        """
        if self._scratch is None:
            raise RuntimeError("Executor must be entered (`with Executor(settings) as ex:`) first")
        if cache is None:
            with self._run_lock:
                return _Batch(self, requests, progress, on_reply).run()
        identity = self.identity()
        default_seed = self.settings.hash_seed
        keys = [
            result_key(
                identity,
                default_seed if seed is None else seed,
                self.is_heavy(req["code"]),
                req,
            )
            for seed, req in requests
        ]
        stored = cache.get_many(keys)
        replies: list[dict[str, Any] | None] = [stored.get(k) for k in keys]
        missing = [i for i, reply in enumerate(replies) if reply is None]
        if on_reply is not None:
            for i, reply in enumerate(replies):
                if reply is not None:
                    on_reply(i, reply)
        if missing:
            inner = None if on_reply is None else (lambda j, r: on_reply(missing[j], r))
            with self._run_lock:
                fresh = _Batch(self, [requests[i] for i in missing], progress, inner).run()
            for i, reply in zip(missing, fresh, strict=True):
                replies[i] = reply
            cache.put_many(
                {
                    keys[i]: reply
                    for i, reply in zip(missing, fresh, strict=True)
                    if not reply.get(HOST_MADE)
                }
            )
        return [r for r in replies if r is not None]


def sweep_stale_scratch(root: Path) -> list[Path]:
    """Remove the scratch folders under root whose executor's process is gone."""
    removed = []
    for folder in Path(root).glob(f"{SCRATCH_PREFIX}*"):
        lock = folder / _OWNER_LOCK
        try:
            fd = os.open(lock, os.O_RDWR)
        except OSError:
            continue  # not ours, or being created right now
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # its owner is alive
        finally:
            os.close(fd)
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


@functools.cache
def _server_hash() -> str:
    digest = hashlib.sha256()
    for name in SERVER_FILES:
        digest.update((SANDBOX_SRC / name).read_bytes())
    return digest.hexdigest()


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


_warm: dict[str, Executor] = {}
_warm_lock = threading.Lock()


@contextlib.contextmanager
def warm_executor(settings: SandboxSettings) -> Iterator[Executor]:
    """An executor kept running for this process and handed to every step with these settings.

    Jails cost their start-up once per run, not once per step (a heavy jail preloads numpy,
    scipy, pandas, sympy and networkx: about 2.3 s of CPU). Only the most recent settings are
    kept warm; the jails stop at exit or when the process dies.
    """
    key = settings.model_dump_json()
    with _warm_lock:
        executor = _warm.get(key)
        if executor is None or executor._scratch is None:
            for old in _warm.values():
                old.close()
            _warm.clear()
            executor = Executor(settings).__enter__()
            _warm[key] = executor
    yield executor


@atexit.register
def close_warm_executors() -> None:
    """Stop the jails kept warm by `warm_executor`."""
    with _warm_lock:
        for executor in _warm.values():
            executor.close()
        _warm.clear()


@functools.cache
def _heavy_pattern(modules: tuple[str, ...]) -> re.Pattern[str]:
    names = "|".join(re.escape(m) for m in modules)
    return re.compile(rf"\b(?:{names})\b")


_STATUSES = set(Status.__args__)
# Marks a reply the host wrote because a jail died or hung: never cached, it says nothing about
# the job.
HOST_MADE = "_host_made"  # type: ignore[attr-defined]


def _is_json_text(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        json.loads(value)
    except ValueError:
        return False
    return True


def result_from_reply(job_id: str, reply: dict[str, Any]) -> JobResult:
    """A checked JobResult from a fork-server reply; a malformed one becomes invalid_output."""
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
        path = runtime_path(settings)
    except ValueError:
        return None
    return path if runtime_is_current(path) else None


def _progress_bar(total: int):
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a project dependency
        return None
    return tqdm(total=total, unit="job", file=sys.stderr, dynamic_ncols=True)
