import json

import dagster as dg
import polars as pl

from codeio_dagster.assets.checks import check_specs, checked
from codeio_dagster.metadata import io_pairs_metadata
from codeio_dagster.models import IOPairRecord, IOPairsRecord, to_frame
from codeio_dagster.partitions import shards
from codeio_dagster.resources import CodeioResource
from codeio_dagster.sandbox import FunctionSpec, combine_for_sandbox, generate_io_pairs
from codeio_dagster.sandbox.cache import open_result_cache
from codeio_dagster.sandbox.given_pairs import GivenPairs, verify_given_pairs
from codeio_dagster.sandbox.resources import SandboxResource


@dg.asset(
    partitions_def=shards,
    group_name="execute",
    kinds={"nsjail"},
    check_specs=check_specs("io_pairs"),
)
def io_pairs(
    context: dg.AssetExecutionContext,
    codeio: CodeioResource,
    sandbox: SandboxResource,
    unified_functions: pl.DataFrame,
):
    """Input/output pairs from running each generator and function in the sandbox; the pairs
    an imported function came with (and no generator) are run again to verify them."""
    functions = unified_functions.filter(pl.col("status") == "ok")
    has_generator = pl.col("input_generator").is_not_null()
    specs = [
        FunctionSpec(
            id=row["function_id"],
            code=combine_for_sandbox(row["reference_code"], row["input_generator"]),
        )
        for row in functions.filter(has_generator).iter_rows(named=True)
    ]
    given = [
        GivenPairs(id=row["function_id"], code=row["reference_code"], pairs=row["ios"] or [])
        for row in functions.filter(~has_generator).iter_rows(named=True)
    ]
    with sandbox.executor() as executor, open_result_cache(codeio.config.data_dir) as cache:
        executor.progress = context.asset_key.to_user_string()
        outcomes = generate_io_pairs(executor, specs, codeio.config.io_pairs, cache=cache)
        if given:
            outcomes += verify_given_pairs(executor, given, codeio.config.io_pairs, cache=cache)
    records = [
        IOPairsRecord(
            function_id=o.function_id,
            shard=context.partition_key,
            status=o.status,
            detail=o.error,
            pairs=[IOPairRecord(input=p.input, output=p.output) for p in o.pairs],
            counts=json.dumps(o.counts, sort_keys=True),
        )
        for o in outcomes
    ]
    frame = to_frame(records, IOPairsRecord)
    yield from checked(
        context,
        frame,
        io_pairs_metadata(functions.height, frame),
        codeio.config,
    )
