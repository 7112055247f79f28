"""The one partitioning of the pipeline: a shard is a few hundred raw files (DESIGN section 2)."""

import dagster as dg

shards = dg.DynamicPartitionsDefinition(name="shards")
