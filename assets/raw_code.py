import json

import dagster as dg
import polars as pl

from codeio_dagster.assets.checks import check_specs, checked
from codeio_dagster.metadata import funnel, stage_metadata
from codeio_dagster.partitions import shards
from codeio_dagster.rawcode import classify_landed, landing_metadata
from codeio_dagster.resources import CodeioResource


@dg.asset(
    partitions_def=shards,
    group_name="ingest",
    kinds={"polars"},
    check_specs=check_specs("raw_code"),
)
def raw_code(context: dg.AssetExecutionContext, codeio: CodeioResource):
    """Raw files of one shard, decoded; duplicates and unreadable files kept with their reason."""
    landing = codeio.landing()
    landed = landing.read(context.partition_key)
    frame = classify_landed(landed, max_bytes=codeio.config.shards.max_file_bytes)
    counters = funnel(landed.height, frame)
    yield from checked(
        context,
        frame,
        stage_metadata(
            counters,
            sample=frame.filter(pl.col("status") != "ok"),
            sample_columns=["path", "status", "size_bytes", "detail"],
            extra={
                "sources": sorted(set(frame.get_column("source").to_list())),
                # Pinned revisions of Hub sources, so a shard can be traced to exact bytes.
                "source_revisions": sorted(
                    {
                        f"{o['repo_id']}@{o['revision']}"
                        for o in map(json.loads, frame.get_column("origin").to_list())
                        if "revision" in o and "repo_id" in o
                    }
                ),
                **landing_metadata(landing.read_record(context.partition_key)),
            },
        ),
        codeio.config,
    )
