"""Throwaway servers on 127.0.0.1 for `make cluster-demo` and the tests: S3 (moto), PostgreSQL.

Each is a context manager that starts a real server process, waits until it answers, and stops
it (and everything it started) on exit, whatever happened inside.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} before it listened")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.2)
    raise TimeoutError(f"{what} did not listen on 127.0.0.1:{port} within {timeout:.0f}s")


def stop(proc: subprocess.Popen) -> None:
    """Stop a server started in its own process group, then make sure the group is gone."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    bucket: str

    def env(self) -> dict[str, str]:
        """What a process needs to reach the bucket (the AWS tools' variable names)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true",
        }

    def url(self, prefix: str = "") -> str:
        return f"s3://{self.bucket}/{prefix}".rstrip("/")


@contextlib.contextmanager
def moto_s3(log_dir: Path | None = None) -> Iterator[S3Server]:
    """moto in server mode (a real S3 HTTP API) on 127.0.0.1, with one empty bucket."""
    port = free_port()
    log_path = Path(log_dir or tempfile.gettempdir()) / f"moto-{port}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_port(port, proc, "moto_server")
        server = S3Server(f"http://127.0.0.1:{port}", f"codeio-{uuid.uuid4().hex[:8]}")
        import boto3

        env = server.env()
        boto3.client(
            "s3",
            endpoint_url=server.endpoint,
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            region_name=env["AWS_REGION"],
        ).create_bucket(Bucket=server.bucket)
        yield server
    finally:
        stop(proc)


def postgres_bin() -> Path | None:
    """The folder of Debian's PostgreSQL server binaries (initdb, pg_ctl), or None."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name)
    )
    return found[-1].parent if found else None


@dataclass
class PostgresServer:
    """A throwaway PostgreSQL cluster: its folder, port, superuser and password."""

    bin: Path
    data: Path
    port: int
    user: str = "postgres"
    password: str = field(default_factory=lambda: uuid.uuid4().hex)
    database: str = "codeio"

    def dsn(self, scheme: str = "postgresql") -> str:
        """A URL without the password (it travels in PGPASSWORD)."""
        return f"{scheme}://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def env(self) -> dict[str, str]:
        return {"PGPASSWORD": self.password}

    def _as_owner(self, *args: str | Path) -> list[str]:
        command = [str(a) for a in args]
        # The server refuses to run as root: as root, run it as Debian's `postgres` user.
        return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command

    def pg_ctl(self, action: str, *extra: str) -> None:
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.data} -c fsync=off"
        log = self.data / "server.log"
        command = self._as_owner(
            self.bin / "pg_ctl", "-D", self.data / "db", "-l", log, "-o", options, "-w", action
        )
        done = subprocess.run([*command, *extra], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"pg_ctl {action} failed: {done.stderr or done.stdout}\n{tail}")

    def restart(self) -> None:
        self.pg_ctl("restart", "-m", "fast")


@contextlib.contextmanager
def postgres(database: str = "codeio") -> Iterator[PostgresServer]:
    """A fresh PostgreSQL cluster in a temp folder, on 127.0.0.1 only, password required."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        raise RuntimeError(
            "PostgreSQL server binaries not found under /usr/lib/postgresql: "
            "apt-get install postgresql (make test does this as root)"
        )
    # Not under pytest's 0700 folders: the `postgres` user must reach it.
    data = Path(tempfile.mkdtemp(prefix="codeio-pg-"))
    server = PostgresServer(bin=bin_dir, data=data, port=free_port(), database=database)
    started = False
    try:
        if os.geteuid() == 0:
            shutil.chown(data, "postgres", "postgres")
        pwfile = data / "pw"
        pwfile.write_text(server.password)
        if os.geteuid() == 0:
            shutil.chown(pwfile, "postgres", "postgres")
        initdb = server._as_owner(
            bin_dir / "initdb", "-D", data / "db", "-U", server.user, "-A", "scram-sha-256",
            "--pwfile", pwfile, "--no-sync", "-E", "UTF8",
        )  # fmt: skip
        done = subprocess.run(initdb, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stderr or done.stdout}")
        pwfile.unlink()
        server.pg_ctl("start")
        started = True
        import psycopg2

        admin = psycopg2.connect(
            host="127.0.0.1", port=server.port, user=server.user,
            password=server.password, dbname="postgres",
        )  # fmt: skip
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{database}"')
        admin.close()
        yield server
    finally:
        if started:
            with contextlib.suppress(Exception):
                server.pg_ctl("stop", "-m", "immediate")
        shutil.rmtree(data, ignore_errors=True)
