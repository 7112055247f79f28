"""The released CodeI/O family: codeio_dataset always, codeio_pp_dataset when revision runs."""

import dagster as dg
import polars as pl

from codeio_dagster.assembly import assemble_codeio, assemble_codeio_pp, drop_counts
from codeio_dagster.assets.checks import check_specs, checked
from codeio_dagster.metadata import stage_metadata
from codeio_dagster.partitions import shards
from codeio_dagster.turns import responses_name, verdicts_name

_SAMPLE = ["kind", "verdict_1", "verdict_2", "turn_1"]


def build_codeio_datasets(turns: int) -> list[dg.AssetsDefinition]:
    """CodeI/O, plus CodeI/O++ (which reads every configured revision turn) when turns >= 1."""

    @dg.asset(
        partitions_def=shards,
        group_name="datasets",
        kinds={"polars"},
        check_specs=check_specs("codeio_dataset"),
        ins={"responses_0": dg.AssetIn("responses"), "verdicts_0": dg.AssetIn("verdicts")},
    )
    def codeio_dataset(
        context: dg.AssetExecutionContext,
        prediction_tasks: pl.DataFrame,
        responses_0: pl.DataFrame,
        verdicts_0: pl.DataFrame,
    ):
        """CodeI/O: every first answer, right or wrong, in the released column layout."""
        tasks = prediction_tasks.lazy()
        responses, verdicts = [responses_0.lazy()], [verdicts_0.lazy()]
        frame = assemble_codeio(tasks, responses[0], verdicts[0]).collect()
        yield from _output(context, frame, drop_counts(tasks, responses, verdicts)["codeio"])

    if turns == 0:
        # Without a revision turn there is no CodeI/O++ sample: a wrong answer alone is not one.
        return [codeio_dataset]

    turn_ins = {f"responses_{t}": dg.AssetIn(responses_name(t)) for t in range(turns + 1)}
    turn_ins |= {f"verdicts_{t}": dg.AssetIn(verdicts_name(t)) for t in range(turns + 1)}

    @dg.asset(
        partitions_def=shards,
        group_name="datasets",
        kinds={"polars"},
        ins=turn_ins,
        check_specs=check_specs("codeio_pp_dataset"),
    )
    def codeio_pp_dataset(
        context: dg.AssetExecutionContext, prediction_tasks: pl.DataFrame, **turn_frames
    ):
        """CodeI/O++: right first answers, and first answer + feedback + revision for the rest."""
        tasks = prediction_tasks.lazy()
        responses = [turn_frames[f"responses_{t}"].lazy() for t in range(turns + 1)]
        verdicts = [turn_frames[f"verdicts_{t}"].lazy() for t in range(turns + 1)]
        frame = assemble_codeio_pp(tasks, responses, verdicts).collect()
        yield from _output(context, frame, drop_counts(tasks, responses, verdicts)["codeio_pp"])

    return [codeio_dataset, codeio_pp_dataset]


def _output(context: dg.AssetExecutionContext, frame: pl.DataFrame, counts: dict[str, int]):
    # The counters are computed apart from the rows: a mismatch would mean rows left without a
    # reason. rows_in is the status-ok tasks; contaminated ones are the tasks stage's drops.
    if counts["kept"] != frame.height:
        raise RuntimeError(
            f"drop counters say {counts['kept']} rows kept but {frame.height} were assembled"
        )
    counters = {"rows_in": sum(counts.values()), **counts}
    verdicts = frame.group_by("verdict_1").len().sort("verdict_1")
    extra = {f"first_{k}": int(n) for k, n in verdicts.iter_rows()}
    metadata = stage_metadata(counters, sample=frame, sample_columns=_SAMPLE, extra=extra)
    yield from checked(context, frame, metadata)
