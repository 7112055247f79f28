import dagster as dg
import polars as pl

from codeio_dagster.assets.responses import responses_name, verdicts_name
from codeio_dagster.metadata import stage_metadata, status_counts
from codeio_dagster.partitions import shards
from codeio_dagster.plugins import task_kinds
from codeio_dagster.resources import CodeioResource
from codeio_dagster.sandbox import InputCheck, check_input_predictions
from codeio_dagster.verify import InputRunResult, judge


def build_verdicts(turn: int) -> dg.AssetsDefinition:
    """The verdict asset of one turn: every reply judged by execution, with feedback."""

    @dg.asset(
        name=verdicts_name(turn),
        partitions_def=shards,
        group_name="verify" if turn == 0 else "revise",
        kinds={"nsjail"},
        ins={"replies": dg.AssetIn(responses_name(turn))},
        description=f"Turn {turn} replies verified by execution, each with a status and feedback.",
    )
    def _verdicts(
        context: dg.AssetExecutionContext,
        codeio: CodeioResource,
        replies: pl.DataFrame,
        prediction_tasks: pl.DataFrame,
        unified_functions: pl.DataFrame,
    ) -> dg.Output[pl.DataFrame]:
        kinds = task_kinds(
            prediction_tasks.get_column("kind").unique().to_list(),
            codeio.config.tasks.plugin_modules,
        )
        code = dict(
            unified_functions.filter(pl.col("status") == "ok")
            .select("function_id", "reference_code")
            .iter_rows()
        )
        with codeio.executor() as executor:

            def run_inputs(runs):
                checks = [
                    InputCheck(
                        id=r.task_id,
                        code=r.code,
                        predicted_input=r.predicted_input,
                        expected_output=r.expected_output,
                    )
                    for r in runs
                ]
                return [
                    InputRunResult(v.status, v.actual_output, v.error)
                    for v in check_input_predictions(executor, checks)
                ]

            frame = judge(
                replies,
                prediction_tasks,
                kinds=kinds,
                code_by_function=code,
                run_inputs=run_inputs,
            )
        counts = status_counts(frame)
        rates = {
            f"pass_rate_{kind}": round(
                sub.filter(pl.col("status") == "correct").height / max(sub.height, 1), 4
            )
            for (kind,), sub in frame.group_by("kind")
        }
        meta = {"rows_in": replies.height, "kept": counts.get("correct", 0)}
        meta |= {f"dropped_{k}": v for k, v in counts.items() if k != "correct"}
        meta["pass_rate"] = round(meta["kept"] / max(replies.height, 1), 4)
        return dg.Output(
            frame,
            metadata=stage_metadata(
                meta,
                sample=frame,
                sample_columns=["kind", "status", "answer", "feedback"],
                extra=rates,
            ),
        )

    return _verdicts
