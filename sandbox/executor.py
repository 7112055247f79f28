"""The sandbox executor: runs jobs in isolated, long-lived fork-server jails.

Its parts, each in its own module: `jobs` (what a job is, how a reply becomes a result),
`worker` (one jail and its pipe), `batch` (spreading one call's jobs over the jails), `warm`
(the executor a process keeps between steps), `cache` (replies kept by what decides them).
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import logging
import math
import os
import re
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from codeio_dagster.sandbox.batch import Batch
from codeio_dagster.sandbox.cache import ResultCache, result_key
from codeio_dagster.sandbox.jail import (
    SANDBOX_SRC,
    SERVER_FILES,
    CgroupSupport,
    locate_nsjail_binary,
    prepare_cgroups,
    sweep_stale_cgroups,
)
from codeio_dagster.sandbox.jobs import HOST_MADE, Job, JobResult, result_from_reply
from codeio_dagster.sandbox.runtime import (
    recipe_hash,
    runtime_is_current,
    runtime_path,
    runtime_python,
)
from codeio_dagster.sandbox.settings import HEAVY_USES, SandboxSettings
from codeio_dagster.sandbox.worker import Worker

log = logging.getLogger(__name__)

# A pool of jails: (hash seed, the heavy modules its template preloads; empty for light jobs).
PoolKey = tuple[int, frozenset[str]]

# run_requests' follow_up: (index of a reply, the reply) -> more requests for the same batch.
FollowUp = Callable[[int, dict[str, Any]], Sequence[tuple[int | None, dict[str, Any]]]]

SCRATCH_PREFIX = "codeio-sandbox-"
_OWNER_LOCK = ".owner.lock"

UNSAFE_WARNING = (
    "!!! SANDBOX DISABLED: mode=unsafe_subprocess runs untrusted code as this user, with "
    "network, your files and your environment's secrets reachable. Use it only for debugging "
    "trusted code. !!!"
)


class Executor:
    """Runs jobs in isolated, long-lived fork-server jails; use as a context manager.

    `scratch_root` is where its scratch folder goes (default: the temp folder); entering an
    executor removes the scratch folders that executors of dead processes left there.
    """

    def __init__(self, settings: SandboxSettings | None = None, scratch_root: Path | None = None):
        self.settings = settings or SandboxSettings()
        self.scratch_root = Path(scratch_root or tempfile.gettempdir())
        self._pools: dict[PoolKey, list[Worker]] = {}
        self._lock = threading.Lock()
        self._run_lock = threading.Lock()
        self._scratch: Path | None = None
        self._owner_lock: int | None = None
        self.cgroups = CgroupSupport(False, False, "not prepared")
        self.nsjail: Path | None = None
        self.python: Path | None = None
        self.runtime_dir: Path | None = None
        # Jails started, by pool, each start's preload list, and requests sent to them: what
        # tests and benchmarks count.
        self.jail_starts: dict[PoolKey, int] = {}
        self.jail_preloads: list[tuple[PoolKey, tuple[str, ...]]] = []
        self.requests_run = 0
        # Milliseconds the last jail start of each module set (empty: light) took to say hello:
        # what the batch expects the next such start to cost (`schedule.start_estimate_ms`).
        self.start_ms: dict[frozenset[str], float] = {}
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
        self._pool(settings.hash_seed, frozenset())

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

    def _pool(self, hash_seed: int, modules: frozenset[str]) -> list[Worker]:
        key = (hash_seed, modules)
        with self._lock:
            pool = self._pools.get(key)
            if pool is None:
                count = self.settings.worker_count()
                log.info(
                    "sandbox: up to %d %s jail(s) with hash seed %d",
                    count,
                    f"heavy ({', '.join(sorted(modules))})" if modules else "light",
                    hash_seed,
                )
                pool = [Worker(self, hash_seed, modules, i) for i in range(count)]
                self._pools[key] = pool
        return pool

    def workers(self) -> list[Worker]:
        """Every worker of every pool, running or not."""
        with self._lock:
            return [w for pool in self._pools.values() for w in pool]

    def is_heavy(self, code: str) -> bool:
        """Whether code names a heavy library, so it should run in the jails preloading them.

        Any mention counts, not only an `import` line at the start: a job sent to the light
        jails that imports one anyway pays the import (numpy ~60 ms, scipy ~1.4 s), while one
        sent to the heavy jails needlessly pays only their dearer fork (~15 ms).
        """
        return bool(self.heavy_needs(code))

    def heavy_needs(self, code: str) -> frozenset[str]:
        """The heavy modules code names, with those they use lazily; empty for a light job."""
        if not self.settings.heavy_preload:
            return frozenset()
        heavy = self.settings.heavy_modules
        named = set(_heavy_pattern(tuple(heavy)).findall(code))
        for module in list(named):
            named.update(HEAVY_USES.get(module, ()))
        return frozenset(named.intersection(heavy))

    def pool_modules(self, code: str) -> frozenset[str]:
        """The heavy modules the template that runs `code` preloads; empty: a light jail.

        A function of the code alone (and the settings), never of which other jobs ran before
        or beside it: so a job finds the same modules loaded in every run, and its cached reply
        is the one a fresh run gives. Under heavy_preload_scope "named", the modules it names
        (with those they use); under "all", every heavy module.
        """
        named = self.heavy_needs(code)
        if named and self.settings.heavy_preload_scope == "all":
            return frozenset(self.settings.heavy_modules)
        return named

    def preload_for(self, modules: frozenset[str]) -> list[str]:
        """What the template of a pool for these heavy modules imports before forking jobs.

        Each heavy module set has its own pools, so a job forks from a template holding what it
        named and nothing heavier: numpy alone costs a jail start about 0.15 s of CPU and a job
        about 2 ms of fork, with scipy's submodules and pandas 1.0 s and 6 ms. An entry of a
        module outside heavy_modules, which no job can name, is preloaded by every heavy jail.
        """
        s = self.settings
        if not modules:
            return list(s.preload)
        heavy = set(s.heavy_modules)
        chosen = [
            entry
            for entry in s.heavy_preload
            if entry.split(".")[0] in modules or entry.split(".")[0] not in heavy
        ]
        return list(s.preload) + chosen

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
        jails: dict[PoolKey, int] | None = None,
        follow_up: FollowUp | None = None,
        expected_ms: Callable[[dict[str, Any]], float | None] | None = None,
    ) -> list[dict[str, Any]]:
        """Send raw fork-server requests, (hash_seed or None, request), and collect the replies.

        With a cache, requests answered before are not run again, and new replies are stored.
        `jails` caps how many jails of a pool, by (hash seed, heavy modules), may run for this batch:
        for a pool whose jobs are known to take less than starting another jail costs; it is
        read as the batch goes, so `follow_up` may change it.
        `follow_up(i, reply)`, called as each reply arrives (a cached one at once), may return
        more requests: they join the batch and run while its other jobs do, instead of after
        the slowest of them; their replies follow the given ones', in the order they were
        returned (and are followed up in turn).
        `expected_ms(request)`, the milliseconds a request is expected to run or None if
        unknown, orders the jobs (`schedule`: unknown first, then longest first); it changes
        when a job runs, never its reply.
        """
        if self._scratch is None:
            raise RuntimeError("Executor must be entered (`with Executor(settings) as ex:`) first")
        identity = self.identity() if cache is not None else None
        default_seed = self.settings.hash_seed
        every: list[tuple[int | None, dict[str, Any]]] = []
        keys: list[str] = []
        replies: list[dict[str, Any] | None] = []
        ran: list[int] = []  # a batch index's request in `every`
        fresh: dict[str, dict[str, Any]] = {}
        batch: Batch | None = None

        def add(new: Sequence[tuple[int | None, dict[str, Any]]]) -> None:
            start = len(every)
            every.extend(new)
            replies.extend([None] * len(new))
            stored: dict[str, dict[str, Any]] = {}
            if cache is not None:
                keys.extend(
                    result_key(
                        identity,
                        default_seed if seed is None else seed,
                        self.preload_for(self.pool_modules(req["code"])),
                        req,
                    )
                    for seed, req in new
                )
                stored = cache.get_many(keys[start:])
            missing = []
            for i in range(start, len(every)):
                reply = stored.get(keys[i]) if cache is not None else None
                if reply is None:
                    missing.append(i)
                else:
                    arrived(i, reply)
            ran.extend(missing)
            assert batch is not None
            batch.add([every[i] for i in missing])

        def arrived(i: int, reply: dict[str, Any]) -> None:
            replies[i] = reply
            if on_reply is not None:
                on_reply(i, reply)
            if follow_up is not None:
                more = follow_up(i, reply)
                if more:
                    add(more)

        def from_batch(j: int, reply: dict[str, Any]) -> None:
            i = ran[j]
            if cache is not None and not reply.get(HOST_MADE):
                fresh[keys[i]] = reply
            arrived(i, reply)

        with self._run_lock:
            batch = Batch(self, [], progress, from_batch, jails, expected_ms)
            add(requests)
            finished = batch.run()
        if cache is not None and fresh:
            cache.put_many(fresh)
        for j, i in enumerate(ran):
            if replies[i] is None:  # a job the batch lost: its host-made "killed" reply
                replies[i] = finished[j]
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


@functools.cache
def _heavy_pattern(modules: tuple[str, ...]) -> re.Pattern[str]:
    names = "|".join(re.escape(m) for m in modules)
    return re.compile(rf"\b(?:{names})\b")


def _optional_runtime(settings: SandboxSettings) -> Path | None:
    try:
        path = runtime_path(settings)
    except ValueError:
        return None
    return path if runtime_is_current(path) else None
