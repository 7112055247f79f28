"""`make cluster-demo`: the bundled sample built by runs on a two-node Ray cluster, all local.

Starts PostgreSQL (instance and LLM request cache), S3 (moto: stage tables, landing, published
folder), a deterministic OpenAI-compatible stub in place of a model (the embedded model would
take minutes per shard on 2 cores), two Ray nodes and the Dagster daemon, all on 127.0.0.1;
lands the sample as shards, backfills one run per shard through the run queue and RayRunLauncher,
prints which node ran each shard and the funnel, and stops everything. Last line:
`nodes=N shards=M` (N distinct Ray nodes ran a shard).

With `--ui PORT` (`make cluster-demo UI=PORT`) it then serves the Dagster UI on 127.0.0.1:PORT
against the same PostgreSQL instance, showing those runs, until Ctrl-C stops everything.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ui", type=int, metavar="PORT", help="then serve the Dagster UI here")
    args = parser.parse_args()
    # `kill` stops everything the demo started, as Ctrl-C does.
    signal.signal(signal.SIGTERM, signal.default_int_handler)

    from codeio_dagster.cluster.stack import local_cluster
    from codeio_dagster.funnel import LABELS

    start = time.monotonic()
    with local_cluster() as cluster:
        shards = cluster.land()
        print(f"[cluster] landed {len(shards)} shards on {cluster.config().data_dir}: {shards}")
        backfill = cluster.backfill(shards)
        print(f"[cluster] backfill {backfill}: {len(shards)} runs queued; waiting")
        runs = cluster.wait({"dagster/backfill": backfill}, len(shards))
        done = cluster.shard_runs(runs)
        print(f"\n{'shard':<14} {'run':<10} {'status':<8} ray node")
        for run in done:
            print(f"{run.shard:<14} {run.run_id[:8]:<10} {run.status:<8} {run.node}")
        funnel = cluster.funnel(shards)
        print("\nfunnel")
        for key, count in funnel.items():
            print(f"  {LABELS.get(key, key):<42} {count:>6}")
        print(f"\nLLM requests received by the stub: {len(cluster.llm.requests())}")
        print(f"elapsed {time.monotonic() - start:.0f}s")
        ok = all(r.status == "SUCCESS" for r in done)
        nodes = len({r.node for r in done if r.status == "SUCCESS"})
        if args.ui:
            cluster.serve_ui(args.ui)
    print(f"nodes={nodes} shards={len(done)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
