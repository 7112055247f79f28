"""A whole cluster on this machine, loopback only: PostgreSQL, S3 (moto), a stub LLM, two Ray
nodes and the Dagster daemon, with the instance and codeio.yaml that join them.

`make cluster-demo` and the cluster tests use it; every server stops when the `with` block ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from codeio_dagster.cluster import local
from codeio_dagster.cluster.instance import RUN_ENV_VARS, instance_yaml

DEMO_CORPUS = Path(__file__).resolve().parents[1] / "demo_corpus"
STUB_KEY = "stub-key-not-a-secret"


def codeio_yaml(
    *,
    data_dir: str,
    corpus: Path,
    llm_url: str,
    shard_size: int,
    cache_url: str | None = None,
    cache_path: str | None = None,
) -> str:
    """The pipeline config of the local cluster: tiny stages, every path shared by the nodes."""
    llm = {"base_url": llm_url, "api_key_env": "OPENAI_API_KEY", "max_retries": 2}
    if cache_url:
        llm["cache_url"] = cache_url
    if cache_path:
        llm["cache_path"] = cache_path
    config = {
        "data_dir": data_dir,
        "sources": [
            {"name": "demo", "kind": "folder", "options": {"path": str(corpus), "glob": "*.py"}}
        ],
        "shards": {"size": shard_size},
        "llm": llm,
        "stages": {
            s: {"model": "stub", "max_tokens": 200} for s in ("refactor", "prediction", "revision")
        },
        "tasks": {"kinds": {"output_prediction": 1, "input_prediction": 1}},
        "io_pairs": {"max_generator_calls": 50},
        "publish": {"target": "local", "local_dir": f"{data_dir}/published"},
    }
    return yaml.safe_dump(config, sort_keys=False)


@dataclass
class ShardRun:
    shard: str
    run_id: str
    status: str
    node: str


@dataclass
class LocalCluster:
    root: Path
    pg: local.PostgresServer
    s3: local.S3Server
    llm: local.StubServer
    ray: local.RayCluster
    home: Path
    workspace: Path
    config_path: Path
    env: dict[str, str] = field(default_factory=dict)

    def instance(self):
        import dagster as dg

        return dg.DagsterInstance.from_config(str(self.home))

    def config(self):
        from codeio_dagster.config import load_config

        return load_config(self.config_path)

    def land(self) -> list[str]:
        """Land the configured sources as shards and register them as partitions."""
        from codeio_dagster.landing import Landing
        from codeio_dagster.partitions import shards
        from codeio_dagster.shards import land_new_shards

        config = self.config()
        landing = Landing(config.data_dir / "landing")
        land_new_shards(config, landing)
        names = landing.shards().get_column("shard").unique(maintain_order=True).to_list()
        with self.instance() as instance:
            missing = [n for n in names if not instance.has_dynamic_partition(shards.name, n)]
            if missing:
                instance.add_dynamic_partitions(shards.name, missing)
        return names

    def dagster(self, *args: str, timeout: float = 600) -> str:
        """Run the `dagster` command line against this instance; its output."""
        command = [str(Path(sys.executable).parent / "dagster"), *args]
        done = subprocess.run(
            command,
            env={**os.environ, "DAGSTER_HOME": str(self.home)},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:3])} failed: {done.stderr[-3000:]}")
        return done.stdout

    def backfill(self, shards: Sequence[str]) -> str:
        """A backfill of `codeio_job` over `shards` (its runs queue for the daemon); its id."""
        out = self.dagster(
            "job", "backfill", "-w", str(self.workspace), "-j", "codeio_job",
            "--partitions", ",".join(shards), "--noprompt",
        )  # fmt: skip
        match = re.search(r"Launched backfill job `([^`]+)`", out)
        if not match:
            raise RuntimeError(f"no backfill id in: {out[-2000:]}")
        return match.group(1)

    def launch(self, shard: str, tags: dict[str, str] | None = None) -> str:
        """One run of `codeio_job` for `shard`, queued like a sensor's or the UI's; its id."""
        # `dagster job launch` prints no run id: a tag of this launch's own finds the run.
        launch_tag = {"codeio/launch": uuid.uuid4().hex}
        tags = {"dagster/partition": shard, **(tags or {}), **launch_tag}
        self.dagster(
            "job", "launch", "-w", str(self.workspace), "-j", "codeio_job", "--tags",
            json.dumps(tags),
        )  # fmt: skip
        (run,) = self.runs(launch_tag)
        return run.run_id

    def runs(self, tags: dict[str, str]) -> list[Any]:
        from dagster import RunsFilter

        with self.instance() as instance:
            return list(instance.get_runs(RunsFilter(tags=tags)))

    def wait(self, tags: dict[str, str], count: int, timeout: float = 1800) -> list[Any]:
        """The runs with `tags` once `count` of them are finished (success, failure, canceled)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = self.runs(tags)
            if len(runs) >= count and all(r.is_finished for r in runs):
                return runs
            time.sleep(3)
        states = [(r.tags.get("dagster/partition"), r.status.value) for r in self.runs(tags)]
        raise TimeoutError(f"runs {tags} not finished after {timeout:.0f}s: {states}")

    def node_of(self, run_id: str) -> str:
        """Which Ray node ran the run's Ray job (its driver)."""
        from ray.job_submission import JobSubmissionClient

        info = JobSubmissionClient(self.ray.dashboard).get_job_info(f"dagster-run-{run_id}")
        return self.ray.node_name(info.driver_node_id)

    def shard_runs(self, runs: Sequence[Any]) -> list[ShardRun]:
        return sorted(
            (
                ShardRun(
                    r.tags["dagster/partition"], r.run_id, r.status.value, self.node_of(r.run_id)
                )
                for r in runs
            ),
            key=lambda s: s.shard,
        )

    def serve_ui(self, port: int) -> None:
        """The Dagster UI on 127.0.0.1:`port` against this instance, until Ctrl-C."""
        webserver = Path(sys.executable).parent / "dagster-webserver"
        command = [str(webserver), "-h", "127.0.0.1", "-p", str(port), "-w", str(self.workspace)]
        env = {**os.environ, "DAGSTER_HOME": str(self.home)}
        with open(self.root / "webserver.log", "wb") as log:
            proc = subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        # Ray or Dagster may have replaced Python's Ctrl-C handler by then: set our own.
        stopping = threading.Event()
        handlers = {
            sig: signal.signal(sig, lambda *_: stopping.set())
            for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            local.wait_port(port, proc, "dagster-webserver", timeout=300)
            print(f"[cluster] Dagster UI: http://127.0.0.1:{port}/runs (Ctrl-C stops everything)")
            while proc.poll() is None and not stopping.wait(1):
                pass
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            local.stop(proc)

    def funnel(self, shards: Sequence[str]) -> dict[str, int]:
        """The shards' funnel as their stages reported it to the (PostgreSQL) instance."""
        from codeio_dagster.funnel import add_funnels, shard_funnels

        turns = self.config().revision.turns
        with self.instance() as instance:
            return add_funnels(shard_funnels(instance, shards, turns).values())


@contextlib.contextmanager
def local_cluster(
    *, nodes: int = 2, shard_size: int = 4, corpus: Path = DEMO_CORPUS, log=print
) -> Iterator[LocalCluster]:
    """Start everything on 127.0.0.1, yield the cluster, stop everything on the way out."""
    root = Path(tempfile.mkdtemp(prefix="codeio-cluster-"))
    saved = dict(os.environ)
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, root, ignore_errors=True)
        stack.callback(_restore_env, saved)
        start = time.monotonic()
        log("[cluster] starting PostgreSQL, S3 (moto), the stub LLM server")
        pg = stack.enter_context(local.postgres())
        s3 = stack.enter_context(local.moto_s3(root))
        llm = stack.enter_context(local.stub_llm(root))
        home = root / "dagster_home"
        home.mkdir()
        config_path = root / "codeio.yaml"
        data_dir = s3.url("codeio")
        config_path.write_text(
            codeio_yaml(
                data_dir=data_dir,
                corpus=corpus,
                llm_url=llm.base_url,
                cache_url=pg.dsn(),
                shard_size=shard_size,
            )
        )
        env = {
            **s3.env(),
            "PGPASSWORD": pg.password,
            "DAGSTER_PG_PASSWORD": pg.password,
            "CODEIO_CONFIG": str(config_path),
            "OPENAI_API_KEY": STUB_KEY,
            # The Ray job runs `dagster api execute_run`: the project's `dagster` must be first.
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        os.environ.update(env)
        log(f"[cluster] starting {nodes} Ray nodes ({time.monotonic() - start:.0f}s)")
        ray = stack.enter_context(local.ray_cluster(nodes=nodes))
        (home / "dagster.yaml").write_text(
            instance_yaml(
                pg_host="127.0.0.1",
                pg_port=pg.port,
                pg_user=pg.user,
                pg_db=pg.database,
                ray_address=ray.dashboard,
                env_vars=RUN_ENV_VARS,
            )
        )
        workspace = root / "workspace.yaml"
        workspace.write_text(
            textwrap.dedent(
                """\
                load_from:
                  - python_module:
                      module_name: codeio_dagster.definitions
                      location_name: codeio_dagster
                """
            )
        )
        os.environ["DAGSTER_HOME"] = str(home)
        log(f"[cluster] starting the Dagster daemon ({time.monotonic() - start:.0f}s)")
        stack.enter_context(local.dagster_daemon(home, workspace, root))
        cluster = LocalCluster(
            root=root,
            pg=pg,
            s3=s3,
            llm=llm,
            ray=ray,
            home=home,
            workspace=workspace,
            config_path=config_path,
            env=env,
        )
        log(f"[cluster] up in {time.monotonic() - start:.0f}s: {ray.dashboard} (Ray jobs)")
        try:
            yield cluster
        finally:
            log("[cluster] stopping the daemon, Ray, the stub LLM, S3 and PostgreSQL")


def _restore_env(saved: dict[str, str]) -> None:
    os.environ.clear()
    os.environ.update(saved)


def build_in_process(config_path: Path, shards: Sequence[str] | None = None) -> dict[str, float]:
    """Land and build shards in this process, no launcher (the single-machine way); seconds each."""
    import dagster as dg

    from codeio_dagster.assets import build_assets
    from codeio_dagster.config import load_config
    from codeio_dagster.landing import Landing
    from codeio_dagster.partitions import shards as shards_def
    from codeio_dagster.resources import build_resources
    from codeio_dagster.shards import land_new_shards

    # The stub's key, as the cluster's runs get it (a config of `codeio_yaml` names this variable).
    os.environ.setdefault("OPENAI_API_KEY", STUB_KEY)
    config = load_config(config_path)
    landing = Landing(config.data_dir / "landing")
    land_new_shards(config, landing)
    names = list(shards or landing.shards().get_column("shard").unique(maintain_order=True))
    seconds = {}
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(shards_def.name, names)
        resources = build_resources(config, str(config_path))
        for shard in names:
            start = time.perf_counter()
            result = dg.materialize(
                build_assets(config),
                partition_key=shard,
                instance=instance,
                resources=resources,
                raise_on_error=False,
            )
            if not result.success:
                raise RuntimeError(f"shard {shard} failed in process")
            seconds[shard] = time.perf_counter() - start
    return seconds


def build_with_stub(
    folder: Path, corpus: Path, *, shard_size: int, shards: Sequence[str] | None = None
) -> tuple[dict[str, float], int]:
    """Shards of `corpus` built in this process in `folder` (local data, SQLite request cache)
    against a stub server of its own: (seconds per shard, requests the stub received)."""
    from codeio_dagster.cluster.stub_llm import StubLLM

    stub = StubLLM().start()
    try:
        path = folder / "codeio.yaml"
        path.write_text(
            codeio_yaml(
                data_dir=str(folder / "data"),
                corpus=corpus,
                llm_url=stub.base_url,
                cache_path=str(folder / "llm_cache.sqlite"),
                shard_size=shard_size,
            )
        )
        return build_in_process(path, shards), len(stub.requests)
    finally:
        stub.close()
