"""Throwaway servers on 127.0.0.1 for `make cluster-demo` and the tests: S3 (moto), PostgreSQL.

Each is a context manager that starts a real server process, waits until it answers, and stops
it (and everything it started) on exit, whatever happened inside.
"""

from __future__ import annotations

import contextlib
import json
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
from typing import Any


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
def python_server(module: str, *args: str, port: int, what: str, log_dir: Path | None = None):
    """`python -m module args...` in its own process group, logging to a file, until it
    listens on 127.0.0.1:`port`; stopped (with all it started) when the block ends."""
    log_path = Path(log_dir or tempfile.gettempdir()) / f"{module.rsplit('.', 1)[-1]}-{port}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_port(port, proc, what)
        yield proc
    finally:
        stop(proc)


@contextlib.contextmanager
def moto_s3(log_dir: Path | None = None) -> Iterator[S3Server]:
    """moto in server mode (a real S3 HTTP API) on 127.0.0.1, with one empty bucket."""
    port = free_port()
    with python_server(
        "codeio_dagster.cluster.local", "moto", str(port), port=port, what="moto_server",
        log_dir=log_dir,
    ):  # fmt: skip
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


@dataclass(frozen=True)
class StubServer:
    base_url: str

    def requests(self) -> list[str]:
        """sha256 of every chat request the stub received, in arrival order."""
        import urllib.request

        with urllib.request.urlopen(self.base_url.removesuffix("/v1") + "/stats", timeout=30) as r:
            return json.loads(r.read())["requests"]


@contextlib.contextmanager
def stub_llm(log_dir: Path | None = None) -> Iterator[StubServer]:
    """The deterministic OpenAI-compatible stub (`codeio_dagster.cluster.stub_llm`), own process."""
    port = free_port()
    with python_server(
        "codeio_dagster.cluster.stub_llm", "--port", str(port), port=port,
        what="stub LLM server", log_dir=log_dir,
    ):  # fmt: skip
        yield StubServer(f"http://127.0.0.1:{port}/v1")


@dataclass
class RayCluster:
    """Two (or more) Ray nodes of one machine, on loopback, with the job-submission dashboard."""

    cluster: Any
    dashboard: str
    node_ids: list[str]

    def node_name(self, node_id: str | None) -> str:
        if node_id in self.node_ids:
            index = self.node_ids.index(node_id)
            return "node-0 (head)" if index == 0 else f"node-{index}"
        return f"unknown node {node_id}"

    def add_node(self, **resources: float) -> str:
        """One more node (one CPU) offering the given custom resources; its id."""
        node = self.cluster.add_node(
            num_cpus=1,
            node_ip_address="127.0.0.1",
            temp_dir=os.environ["RAY_TMPDIR"],
            resources=resources or None,
            **agent_ports(),
        )
        self.node_ids.append(node.node_id)
        return node.node_id

    def kill_node(self, node_id: str) -> None:
        """Kill a worker node's processes at once, as a crashed machine would vanish."""
        node = next(n for n in self.cluster.worker_nodes if n.node_id == node_id)
        self.cluster.remove_node(node, allow_graceful=False)


START_ATTEMPTS = 3


def agent_ports() -> dict[str, int]:
    """Fixed ports for a node's agents. Given none, a raylet waits a hard-coded 15 s for its
    agents to report the ports they picked and aborts past it, which a loaded 2-core machine
    exceeds (ray-project/ray issue 65983); with the ports fixed it does not wait."""
    return {
        "metrics_agent_port": free_port(),
        "metrics_export_port": free_port(),
        "dashboard_agent_listen_port": free_port(),
        "runtime_env_agent_port": free_port(),
    }


def kill_descendants_mentioning(text: str) -> list[int]:
    """Kill this process's descendants whose command line contains `text`; their pids."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])

    def descends(pid: int) -> bool:
        seen = set()
        while pid in parents and pid not in seen:
            seen.add(pid)
            pid = parents[pid]
            if pid == os.getpid():
                return True
        return False

    killed = []
    for pid in parents:
        with contextlib.suppress(OSError):
            cmdline = (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ")
            if text.encode() in cmdline and descends(pid):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
    return killed


@contextlib.contextmanager
def ray_cluster(nodes: int = 2, cpus_per_node: int = 1) -> Iterator[RayCluster]:
    """A Ray cluster of `nodes` nodes in this machine, bound to 127.0.0.1.

    `ray.cluster_utils.Cluster` with RAY_TMPDIR set keeps every node on loopback, where
    `ray start --address` binds the interface address whatever `--node-ip-address` says
    (DESIGN, Scale-out). Processes the nodes start (job drivers included) inherit this process's
    environment: PATH must hold the project's `dagster`. One CPU per node and one per run
    spread the runs' drivers over the nodes.
    """
    # Short: Ray's Unix socket paths under it must stay below the 108-byte limit.
    tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    # The head writes its address to $RAY_TMPDIR/ray/ray_current_cluster without creating the
    # folder (the nodes' own temp_dir is `tmp` itself).
    os.makedirs(os.path.join(tmp, "ray"))
    patient = {
        # Ray's startup waits (the dashboard's 60 s, a raylet's 30 s for its agents' ports) are
        # too short on a 2-core machine busy with other work; past them a node aborts.
        "RAY_DASHBOARD_STARTUP_TIMEOUT_S": "300",
        "RAY_agent_register_timeout_ms": "300000",
        "RAY_raylet_start_wait_time_s": "300",
        # A process that joins with address 127.0.0.1:PORT (the dashboard agent's job manager
        # among them) is redirected to the machine's interface address, where nothing listens.
        # This switch (named for Windows and macOS, where it is off by default) makes Ray
        # resolve "this node" to loopback instead; Python-API clusters are unaffected by its
        # other effect, refusing `ray start --address` worker nodes.
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    }
    saved = {k: os.environ.get(k) for k in ("RAY_TMPDIR", *patient)}
    os.environ["RAY_TMPDIR"] = tmp
    for key, value in patient.items():
        os.environ.setdefault(key, value)
    import ray._private.services as ray_services
    from ray.cluster_utils import Cluster

    # Ray gives a starting raylet a fixed 30 s to register; on a machine busy with other work
    # that can pass. Its lookup is made patient (for the start only) instead.
    quick_get_node = ray_services.get_node

    def patient_get_node(*args, **kwargs):
        deadline = time.monotonic() + 180
        while True:
            try:
                return quick_get_node(*args, **kwargs)
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    ray_services.get_node = patient_get_node
    cluster = None
    try:
        common = {"num_cpus": cpus_per_node, "node_ip_address": "127.0.0.1", "temp_dir": tmp}
        for attempt in range(1, START_ATTEMPTS + 1):
            # Ray waits a fixed 30 s for a raylet to register; on a machine busy with other
            # work that can pass, so a failed start is torn down and tried again.
            dashboard_port = free_port()
            try:
                cluster = Cluster(
                    initialize_head=True,
                    head_node_args={
                        **common,
                        **agent_ports(),
                        "include_dashboard": True,
                        "dashboard_host": "127.0.0.1",
                        "dashboard_port": dashboard_port,
                    },
                )
                workers = [cluster.add_node(**common, **agent_ports()) for _ in range(nodes - 1)]
                cluster.wait_for_nodes(timeout=120)
                ray_services.get_node = quick_get_node
                break
            except Exception:
                if cluster is not None:
                    cluster.shutdown()
                    cluster = None
                # A node that failed inside its constructor is known to no Cluster object.
                kill_descendants_mentioning(tmp)
                if attempt == START_ATTEMPTS:
                    raise
        yield RayCluster(
            cluster=cluster,
            dashboard=f"http://127.0.0.1:{dashboard_port}",
            node_ids=[cluster.head_node.node_id, *(w.node_id for w in workers)],
        )
    finally:
        ray_services.get_node = quick_get_node
        if cluster is not None:
            cluster.shutdown()
        kill_descendants_mentioning(tmp)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def dagster_daemon(home: Path, workspace: Path, log_dir: Path) -> Iterator[subprocess.Popen]:
    """`dagster-daemon run` on an instance: it dequeues queued runs and hands them to the launcher."""
    daemon = Path(sys.executable).parent / "dagster-daemon"
    with open(log_dir / "daemon.log", "wb") as log:
        proc = subprocess.Popen(
            [str(daemon), "run", "-w", str(workspace)],
            env={**os.environ, "DAGSTER_HOME": str(home)},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        stop(proc)


def serve_moto(port: int) -> None:
    """moto's S3 server on 127.0.0.1, one request at a time.

    moto checks a conditional put's precondition and then writes, in two steps, while serving
    requests on many threads: two racing `If-None-Match: *` PUTs can both succeed there, which
    S3 never allows. Serialising requests restores the atomicity S3 gives.
    """
    import threading

    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import run_simple

    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def serial(environ, start_response):
        with lock:
            # The body is produced inside the lock too: moto builds it before returning.
            return list(app(environ, start_response))

    run_simple("127.0.0.1", port, serial, threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    if sys.argv[1:2] == ["moto"]:
        serve_moto(int(sys.argv[2]))
    else:
        sys.exit("usage: python -m codeio_dagster.cluster.local moto PORT")
