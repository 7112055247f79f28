import dagster as dg
import polars as pl

from codeio_dagster.assets.checks import check_specs, checked
from codeio_dagster.decontam import decontamination_index
from codeio_dagster.metadata import example_errors, funnel, stage_metadata
from codeio_dagster.models import PredictionTaskRecord, to_frame
from codeio_dagster.partitions import shards
from codeio_dagster.plugins import task_kinds
from codeio_dagster.resources import CodeioResource
from codeio_dagster.tasks import FunctionView, make_all_tasks


@dg.asset(
    partitions_def=shards,
    group_name="tasks",
    kinds={"polars"},
    check_specs=check_specs("prediction_tasks"),
)
def prediction_tasks(
    context: dg.AssetExecutionContext,
    codeio: CodeioResource,
    unified_functions: pl.DataFrame,
    io_pairs: pl.DataFrame,
):
    """Input- and output-prediction prompts built from each function's pairs; contaminated ones dropped."""
    config = codeio.config
    kept = io_pairs.filter(pl.col("status") == "ok")
    functions = unified_functions.join(kept.select("function_id", "pairs"), on="function_id")
    views = [
        FunctionView(
            function_id=row["function_id"],
            problem_statement=row["problem_statement"],
            io_description=row["io_description"],
            reference_code=row["reference_code"],
        )
        for row in functions.iter_rows(named=True)
    ]
    pairs_by_function = {
        row["function_id"]: row["pairs"]
        for row in functions.select("function_id", "pairs").iter_rows(named=True)
    }
    records, built = make_all_tasks(
        task_kinds(config.tasks.kinds, config.tasks.plugin_modules),
        config.tasks.kinds,
        views,
        pairs_by_function,
        include_code=config.tasks.include_reference_code,
        shard=context.partition_key,
    )
    frame = to_frame(records, PredictionTaskRecord)
    decontam = config.decontamination
    index, benchmarks = decontamination_index(decontam.builtin, decontam.benchmarks, decontam.ngram)
    if index is not None and not frame.is_empty():
        hits = [index.first_overlap(p) for p in frame.get_column("prompt").to_list()]
        frame = (
            frame.with_columns(
                pl.Series("hit", hits, dtype=pl.String),
            )
            .with_columns(
                status=pl.when(pl.col("hit").is_not_null())
                .then(pl.lit("contaminated"))
                .otherwise("status"),
                detail=pl.when(pl.col("hit").is_not_null())
                .then("shares " + pl.col("hit"))
                .otherwise("detail"),
            )
            .drop("hit")
        )
    # kept is read from the final table (contaminated tasks count as dropped_contaminated); the
    # pairs a task kind rejected never became rows, so their reasons come from its counters.
    counters = funnel(built["rows_in"], frame)
    for key, n in built.items():
        if key.startswith("dropped_"):
            counters[key] = counters.get(key, 0) + n
    by_kind = frame.group_by("kind").len().sort("kind")
    yield from checked(
        context,
        frame,
        stage_metadata(
            counters,
            sample=frame,
            sample_columns=["kind", "given", "expected"],
            examples=example_errors(frame, "detail"),
            extra={
                **{f"tasks_{k}": int(n) for k, n in by_kind.iter_rows()},
                "decontamination_benchmarks": ", ".join(benchmarks) or "none",
            },
        ),
        config,
    )
