"""`make cluster-demo`: the bundled sample built by runs on a two-node Ray cluster, all local.

NOT YET RUN to the end (issue 11): written this session, but no Ray node started on the
loaded machine it was written on; running it and fixing what turns up is the next step.

Starts PostgreSQL (instance and LLM request cache), S3 (moto: stage tables, landing, published
folder), a deterministic OpenAI-compatible stub in place of a model (the embedded model would
take minutes per shard on 2 cores), two Ray nodes and the Dagster daemon, all on 127.0.0.1;
lands the sample as shards, backfills one run per shard through the run queue and RayRunLauncher,
prints which node ran each shard and the funnel, and stops everything. Last line:
`nodes=N shards=M` (N distinct Ray nodes ran a shard).
"""

from __future__ import annotations

import sys
import time


def main() -> int:
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
    print(f"nodes={nodes} shards={len(done)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
