import dagster as dg
import polars as pl

from codeio_dagster.assembly import assemble_codeio, assemble_codeio_pp
from codeio_dagster.assets.responses import responses_name, verdicts_name
from codeio_dagster.metadata import stage_metadata
from codeio_dagster.models import UnifiedDatasetRow, polars_schema
from codeio_dagster.partitions import shards

_SAMPLE = ["kind", "verdict_1", "verdict_2", "turn_1"]


def build_datasets(turns: int) -> list[dg.AssetsDefinition]:
    """The released datasets; CodeI/O++ reads every revision turn that is configured."""
    turn_ins = {f"responses_{t}": dg.AssetIn(responses_name(t)) for t in range(turns + 1)}
    turn_ins |= {f"verdicts_{t}": dg.AssetIn(verdicts_name(t)) for t in range(turns + 1)}

    @dg.asset(
        partitions_def=shards,
        group_name="datasets",
        kinds={"polars"},
        ins={"responses_0": dg.AssetIn("responses"), "verdicts_0": dg.AssetIn("verdicts")},
    )
    def codeio_dataset(
        prediction_tasks: pl.DataFrame, responses_0: pl.DataFrame, verdicts_0: pl.DataFrame
    ) -> dg.Output[pl.DataFrame]:
        """CodeI/O: every first answer, right or wrong, in the released column layout."""
        tasks = prediction_tasks.filter(pl.col("status") == "ok").lazy()
        frame = assemble_codeio(tasks, responses_0.lazy(), verdicts_0.lazy()).collect()
        return _output(frame, responses_0.height)

    @dg.asset(partitions_def=shards, group_name="datasets", kinds={"polars"}, ins=turn_ins)
    def codeio_pp_dataset(
        prediction_tasks: pl.DataFrame, **turn_frames: pl.DataFrame
    ) -> dg.Output[pl.DataFrame]:
        """CodeI/O++: right first answers, and first answer + feedback + revision for the rest."""
        tasks = prediction_tasks.filter(pl.col("status") == "ok").lazy()
        frame = assemble_codeio_pp(
            tasks,
            [turn_frames[f"responses_{t}"].lazy() for t in range(turns + 1)],
            [turn_frames[f"verdicts_{t}"].lazy() for t in range(turns + 1)],
        ).collect()
        return _output(frame, turn_frames["responses_0"].height)

    @dg.asset(partitions_def=shards, group_name="datasets", kinds={"polars"})
    def unified_dataset(
        unified_functions: pl.DataFrame, io_pairs: pl.DataFrame
    ) -> dg.Output[pl.DataFrame]:
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
        return dg.Output(
            frame,
            metadata=stage_metadata(
                counters, sample=frame, sample_columns=["function_id", "problem_statement"]
            ),
        )

    return [codeio_dataset, codeio_pp_dataset, unified_dataset]


def _output(frame: pl.DataFrame, rows_in: int) -> dg.Output[pl.DataFrame]:
    verdicts = frame.group_by("verdict_1").len()
    counters = {
        "rows_in": rows_in,
        "kept": frame.height,
        "dropped_no_reply": rows_in - frame.height,
    }
    extra = {f"first_{k}": int(n) for k, n in verdicts.iter_rows()}
    return dg.Output(
        frame, metadata=stage_metadata(counters, sample=frame, sample_columns=_SAMPLE, extra=extra)
    )
