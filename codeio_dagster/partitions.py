"""The one partitioning of the pipeline: a shard is a few hundred raw files (DESIGN section 2)."""

import dagster as dg

shards = dg.DynamicPartitionsDefinition(name="shards")


def add_missing_shards(instance: dg.DagsterInstance, names: list[str]) -> list[str]:
    """Add the shards of `names` the instance lacks, asking it once for all (not once per shard)."""
    known = set(instance.get_dynamic_partitions(shards.name))
    missing = [name for name in names if name not in known]
    if missing:
        instance.add_dynamic_partitions(shards.name, missing)
    return missing
