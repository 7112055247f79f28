"""`codeio demo`: land the raw code, materialise every shard through the whole graph, print the funnel."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="run the whole pipeline on the configured sources")
    parser.add_argument("--config", default="codeio.yaml", help="codeio.yaml to use")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import dagster as dg

    from codeio_dagster.assets import build_assets
    from codeio_dagster.config import ConfigError, load_config
    from codeio_dagster.funnel import LABELS, add_funnels, shard_funnel
    from codeio_dagster.io_manager import stage_tables_dir
    from codeio_dagster.partitions import add_missing_shards
    from codeio_dagster.resources import build_resources
    from codeio_dagster.shards import Landing, land_new_shards
    from codeio_dagster.versions import stale_assets

    start = time.perf_counter()
    try:
        config = load_config(args.config)
    except ConfigError as err:
        print(err)
        return 2
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(Path(".dagster_home").resolve())))
    home.mkdir(parents=True, exist_ok=True)
    instance = dg.DagsterInstance.get()

    landing = Landing(config.data_dir / "landing")
    new = land_new_shards(config, landing)
    names = sorted(landing.index().get_column("shard").unique().to_list())
    print(f"[codeio] {len(new)} new shard(s); {len(names)} in all: {', '.join(names)}")
    add_missing_shards(instance, names)

    graph = build_assets(config)
    resources = build_resources(config, str(Path(args.config).resolve()))
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    for shard in names:
        # A shard whose inputs, code and config are unchanged is not run again.
        todo = stale_assets(instance, graph, shard)
        if not todo:
            print(f"[codeio] shard {shard} is up to date: skipped")
            continue
        print(f"[codeio] materialising shard {shard} ({time.perf_counter() - start:.0f}s)")
        result = dg.materialize(
            graph,
            selection=todo,
            partition_key=shard,
            instance=instance,
            resources=resources,
            run_config=quiet,
            raise_on_error=False,
        )
        if not result.success:
            print(f"[codeio] shard {shard} failed; see the run in the Dagster UI (make dev)")
            return 1

    asset_dir = stage_tables_dir(config.data_dir)
    # The numbers each stage reported to Dagster: the same ones the UI and the card show.
    funnel = add_funnels(shard_funnel(instance, n, config.revision.turns) for n in names)
    print("\nfunnel")
    for key, count in funnel.items():
        print(f"  {LABELS.get(key, key):<42} {count:>6}")
    print(f"\nelapsed {time.perf_counter() - start:.0f}s")
    print(f"stage tables:  {asset_dir}")
    print(
        f"published:     {config.publish.local_dir if config.publish.target == 'local' else config.publish.repo_id}"
    )
    print(f"Dagster runs:  DAGSTER_HOME={home} (open with `make dev`)")
    return 0
