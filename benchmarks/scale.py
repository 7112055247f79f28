"""Cluster scale: the run launcher's overhead per shard against the shard's own work, and a
projection of the wall time for the paper's 810K raw files on 1, 8 and 64 nodes.

On this machine, in one run: a local cluster (PostgreSQL, S3 via moto, a deterministic stub LLM,
two Ray nodes, the Dagster daemon; `codeio_dagster.cluster.stack`) and, side by side, the same
shards built in this process without a launcher (the single-machine way, local folders).

- own work: seconds per shard built in process;
- one node: shards launched one after another (each waits for the previous: one node busy);
- two nodes: the same number of other shards launched at once (a backfill);
- overhead per shard: a run's seconds from launch request to end, less the in-process seconds.

    .venv/bin/python benchmarks/scale.py [--shards 2]

Last line: overhead_s_per_shard=X
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

PAPER_FILES = 810_000
SHARD_SIZE = 200  # the config default
CORES_PER_NODE = 2  # like this machine
LLM_SECONDS_PER_REQUEST = 30.0  # DESIGN: a CoT reply of the 1.5B model on 2 cores, 20-40 s
LLM_IN_FLIGHT_PER_RUN = 8  # llm.max_concurrency default


def _run_seconds(cluster, run_ids: list[str]) -> list[float]:
    """Launch request to end of each run (queue, Ray job start, import, work)."""
    with cluster.instance() as instance:
        records = [instance.get_run_record_by_id(r) for r in run_ids]
    return [r.end_time - r.create_timestamp.timestamp() for r in records]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=2, help="shards per phase (two phases)")
    args = parser.parse_args()

    from codeio_dagster.cluster.stack import DEMO_CORPUS, build_with_stub, local_cluster

    size = 3
    files = sorted(DEMO_CORPUS.glob("*.py"))[: 2 * args.shards * size]
    if len(files) < 2 * args.shards * size:
        sys.exit(f"the bundled sample has {len(files)} files: use --shards {len(files) // 6}")
    tmp = Path(tempfile.mkdtemp(prefix="codeio-scale-"))
    try:
        corpus = tmp / "corpus"
        corpus.mkdir()
        for path in files:
            shutil.copy(path, corpus / path.name)

        own, requests = build_with_stub(tmp, corpus, shard_size=size)
        requests_per_file = requests / len(files)
        own_s = statistics.mean(own.values())
        # Per-file cost of everything but the model (stub replies are instant): parsing, the
        # sandbox, verification, assembly, publication, Dagster's own bookkeeping.
        per_file_s = sum(own.values()) / len(files)

        with local_cluster(corpus=corpus, shard_size=size) as cluster:
            shards = cluster.land()
            first, second = shards[: args.shards], shards[args.shards : 2 * args.shards]
            start = time.perf_counter()
            serial = []
            for shard in first:
                serial.append(cluster.launch(shard))
                cluster.wait({"dagster/partition": shard}, 1)
            one_node_wall = time.perf_counter() - start
            start = time.perf_counter()
            backfill = cluster.backfill(second)
            runs = cluster.wait({"dagster/backfill": backfill}, len(second))
            two_nodes_wall = time.perf_counter() - start
            assert all(r.status.value == "SUCCESS" for r in runs), [r.status for r in runs]
            nodes_used = len({s.node for s in cluster.shard_runs(runs)})
            one = _run_seconds(cluster, serial)
            two = _run_seconds(cluster, [r.run_id for r in runs])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    overhead = statistics.mean(one) - own_s
    print(f"\nshard = {size} raw files, stub LLM (instant replies), {len(files)} files in all")
    print(f"{'':<34} {'seconds':>9}")
    print(f"{'own work per shard, in process':<34} {own_s:>9.1f}")
    print(f"{'run per shard via launcher, 1 node':<34} {statistics.mean(one):>9.1f}")
    print(f"{'run per shard via launcher, 2 at once':<34} {statistics.mean(two):>9.1f}")
    print(f"{f'wall, {len(first)} shards one after another':<34} {one_node_wall:>9.1f}")
    print(f"{f'wall, {len(second)} shards on {nodes_used} nodes':<34} {two_nodes_wall:>9.1f}")
    print(f"two nodes / one node wall: {two_nodes_wall / one_node_wall:.2f}")

    shards_total = PAPER_FILES / SHARD_SIZE
    print(
        f"\nprojection for {PAPER_FILES:,} raw files ({shards_total:,.0f} shards of {SHARD_SIZE}); "
        f"hours"
    )
    print(f"{'nodes':>6} {'pipeline':>10} {'launcher':>10} {'LLM':>10} {'total':>10}")
    for nodes in (1, 8, 64):
        slots = nodes * CORES_PER_NODE  # one run per core
        pipeline_h = PAPER_FILES * per_file_s / slots / 3600
        launcher_h = shards_total * overhead / slots / 3600
        llm_h = (
            PAPER_FILES * requests_per_file * LLM_SECONDS_PER_REQUEST
            / (slots * LLM_IN_FLIGHT_PER_RUN) / 3600
        )  # fmt: skip
        total = pipeline_h + launcher_h + llm_h
        print(f"{nodes:>6} {pipeline_h:>10.1f} {launcher_h:>10.1f} {llm_h:>10.1f} {total:>10.1f}")
    print(
        "assumes: nodes like this one (2 cores, one shard run per core); per-file pipeline cost "
        f"{per_file_s:.2f} s measured here at this benchmark's settings (50 generator calls, one "
        "task per kind, one revision turn; the paper's 1000 calls cost more in the sandbox), in "
        f"shards of {size} files, so each shard's fixed cost is spread over few files (an upper "
        f"bound for shards of {SHARD_SIZE}: see benchmarks/pipeline.py for those); "
        f"{requests_per_file:.1f} LLM requests per file measured here, each "
        f"{LLM_SECONDS_PER_REQUEST:.0f} s with {LLM_IN_FLIGHT_PER_RUN} in flight per run, on an "
        "endpoint that scales with the runs (its own capacity is the real limit); launcher "
        "overhead per shard as measured here; stages overlap nothing (a sum, an upper bound)"
    )
    print(f"overhead_s_per_shard={overhead:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
