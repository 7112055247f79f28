"""The code location's gRPC server for `codeio build`, started before the build knows it needs it.

A code server is a Python process that imports Dagster and the project's definitions: about 3 s
on these machines before it answers. `dagster dev` pays that once; a build used to pay it after
loading its config, landing raw code and asking the instance what is stale, one after the other.
Started first, the server loads on the other core while the build does that work, and the build
connects to it when it has runs to launch. It is Dagster's `dagster api grpc` command, with
its runs forked from a preloaded process (warm_runs.py), on a socket of its own; it stops when the
build ends, or by itself (`--heartbeat`) if the build is killed before it can stop it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from codeio_dagster.warm_runs import COMMAND as WARM_RUNS_COMMAND

# Dagster's own managed code servers use the same pair: a beat every few seconds, and a server
# that hears none for this long shuts down once its runs have finished.
HEARTBEAT_TIMEOUT_S = 45
_HEARTBEAT_EVERY_S = 5.0
_STARTUP_TIMEOUT_S = 120


class CodeServerError(Exception):
    """The code server exited or did not answer; the message says which and how to see why."""


class CodeServer:
    """One `dagster api grpc` process serving `module` as the code location `location_name`."""

    def __init__(
        self,
        module: str,
        location_name: str,
        working_directory: Path,
        heartbeat_timeout_s: int = HEARTBEAT_TIMEOUT_S,
    ):
        self.module = module
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.location_name = location_name
        self.working_directory = Path(working_directory)
        self._folder: str | None = None
        self._process: subprocess.Popen | None = None
        self._client = None
        self._stop_beating = threading.Event()
        self._beats: threading.Thread | None = None

    @property
    def socket(self) -> str:
        assert self._folder is not None, "CodeServer.start() first"
        return os.path.join(self._folder, "grpc.sock")

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-c",
            WARM_RUNS_COMMAND,
            # A definitions module that fails to load is reported by the server, not fatal to it.
            "--lazy-load-user-code",
            "--socket",
            self.socket,
            "--heartbeat",
            "--heartbeat-timeout",
            str(self.heartbeat_timeout_s),
            "--log-level",
            "WARNING",
            "--inject-env-vars-from-instance",
            "--location-name",
            self.location_name,
            "-m",
            self.module,
            "-d",
            str(self.working_directory),
        ]

    def start(self) -> CodeServer:
        """Start the process (its instance is $DAGSTER_HOME's, as set now); returns at once."""
        if self._process is not None:
            return self
        # A short path: a Unix socket's path is limited to about 100 bytes.
        self._folder = tempfile.mkdtemp(prefix="codeio-grpc-")
        # Its own session: Ctrl-C in the terminal reaches the build, which cancels its run
        # through this server and then stops it, rather than the server and the run's process
        # each dying on their own (and printing their tracebacks).
        self._process = subprocess.Popen(
            self.command(), cwd=self.working_directory, env=dict(os.environ), start_new_session=True
        )
        # Beats from the start: the build may land for longer than the timeout before it
        # connects, and a server that heard nothing that long shuts down. Dagster is imported
        # here, not first in that thread: two threads importing Dagster at once can deadlock
        # on its circular imports (Python then raises ImportError in one of them).
        import dagster._grpc.client  # noqa: F401

        self._beats = threading.Thread(
            target=self._beat, name="codeio-code-server-heartbeat", daemon=True
        )
        self._beats.start()
        return self

    @property
    def started(self) -> bool:
        return self._process is not None

    def target(self):
        """Wait until the server answers, keep it alive, and return the workspace target for it."""
        from dagster._core.errors import DagsterUserCodeUnreachableError
        from dagster._core.workspace.load_target import GrpcServerTarget
        from dagster._grpc.client import DagsterGrpcClient

        self.start()
        assert self._process is not None
        if self._client is None:
            client = DagsterGrpcClient(socket=self.socket, host="localhost")
            deadline = time.monotonic() + _STARTUP_TIMEOUT_S
            while True:
                try:
                    client.ping("")
                    break
                except DagsterUserCodeUnreachableError as exc:
                    error = exc
                code = self._process.poll()
                if code is not None:
                    raise CodeServerError(
                        f"the code server for {self.module} exited with status {code} while "
                        f"starting (its output is above); command: {' '.join(self.command())}"
                    )
                if time.monotonic() > deadline:
                    raise CodeServerError(
                        f"the code server for {self.module} did not answer within "
                        f"{_STARTUP_TIMEOUT_S} s: {error}"
                    )
                self._stop_beating.wait(0.05)
            self._client = client
        return GrpcServerTarget(
            host="localhost", port=None, socket=self.socket, location_name=self.location_name
        )

    def _beat(self) -> None:
        from dagster._grpc.client import DagsterGrpcClient

        client = DagsterGrpcClient(socket=self.socket, host="localhost")
        every = min(_HEARTBEAT_EVERY_S, self.heartbeat_timeout_s / 4)
        while not self._stop_beating.wait(every):
            try:
                client.heartbeat("codeio")
            except Exception:  # noqa: BLE001 - not up yet, or a missed beat: the next one counts
                continue

    def stop(self) -> None:
        """Ask the server to shut down (it finishes its runs first), then make sure it is gone.

        A server never connected to has no runs: it is terminated, and killed if it has not
        exited within a few seconds."""
        self._stop_beating.set()
        process, self._process = self._process, None
        if process is not None:
            if self._client is None:
                process.terminate()
                grace = 3.0
            else:
                grace = 15.0
                try:
                    self._client.shutdown_server()
                except Exception:  # noqa: BLE001 - terminated below if it did not hear
                    process.terminate()
                    grace = 5.0
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                process.terminate()
                try:
                    process.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    def __enter__(self) -> CodeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
