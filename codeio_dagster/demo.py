"""`codeio demo`: `codeio build` on the bundled sample (or any config), then the funnel."""

from __future__ import annotations

import argparse
import os
import sys
import time


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from codeio_dagster.build import add_common_arguments

    parser = subparsers.add_parser(
        "demo",
        help="build the datasets from the bundled sample",
        description="`codeio build` on the config (the shipped codeio.yaml builds the bundled "
        "sample), then the funnel of every shard, read from what the stages reported.",
    )
    add_common_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from codeio_dagster.build import BuildError, build, config_path

    start = time.perf_counter()
    path = config_path(args.config)

    def report(config, funnel: dict[str, int], names: list[str]) -> None:
        from codeio_dagster.funnel import LABELS
        from codeio_dagster.storage import stage_tables_dir

        # The numbers each stage reported to Dagster: the same ones the UI and the card show.
        print("\nfunnel")
        for key, count in funnel.items():
            print(f"  {LABELS.get(key, key):<42} {count:>6}")
        print(f"\nelapsed {time.perf_counter() - start:.0f}s")
        print(f"stage tables:  {stage_tables_dir(config.data_dir)}")
        print(
            f"published:     {config.publish.local_dir if config.publish.target == 'local' else config.publish.repo_id}"
        )
        print(
            f"Dagster runs:  DAGSTER_HOME={os.environ['DAGSTER_HOME']} (open with `make dev`; "
            "each shard's run can be re-executed there)"
        )

    try:
        return build(path, report=report)
    except BuildError as err:
        print(f"codeio demo: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("codeio demo: interrupted", file=sys.stderr)
        return 130
