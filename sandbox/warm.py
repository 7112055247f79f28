"""The executor a process keeps running between steps, so jails start once per run."""

from __future__ import annotations

import atexit
import contextlib
import threading
from collections.abc import Iterator

from codeio_dagster.sandbox.executor import Executor
from codeio_dagster.sandbox.settings import SandboxSettings

_warm: dict[str, Executor] = {}
_warm_lock = threading.Lock()


@contextlib.contextmanager
def warm_executor(settings: SandboxSettings) -> Iterator[Executor]:
    """An executor kept running for this process and handed to every step with these settings.

    Jails cost their start-up once per run, not once per step (a heavy jail preloading numpy,
    scipy, pandas, sympy and networkx: about 1.4 s of CPU). Only the most recent settings are
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
