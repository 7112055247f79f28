import dagster as dg
import polars as pl

from codeio_dagster.assets.checks import check_specs, checked
from codeio_dagster.metadata import stage_metadata
from codeio_dagster.models import UnifiedDatasetRow, polars_schema
from codeio_dagster.partitions import shards


@dg.asset(
    partitions_def=shards,
    group_name="datasets",
    kinds={"polars"},
    check_specs=check_specs("unified_dataset"),
)
def unified_dataset(
    context: dg.AssetExecutionContext, unified_functions: pl.DataFrame, io_pairs: pl.DataFrame
):
    """Functions in the unified format with their I/O pairs and input generators."""
    frame = (
        unified_functions.join(
            io_pairs.filter(pl.col("status") == "ok"), on=["function_id", "shard"]
        )
        .select(list(polars_schema(UnifiedDatasetRow)))
        .cast(polars_schema(UnifiedDatasetRow))
    )
    counters = {
        "rows_in": unified_functions.filter(pl.col("status") == "ok").height,
        "kept": frame.height,
    }
    counters["dropped_no_pairs"] = counters["rows_in"] - frame.height
    metadata = stage_metadata(
        counters, sample=frame, sample_columns=["function_id", "problem_statement"]
    )
    yield from checked(context, frame, metadata)
