import dagster as dg
import polars as pl

from codeio_dagster.assets.checks import check_specs, checked
from codeio_dagster.metadata import (
    drop_reason_table,
    example_errors,
    outcome_counts,
    stage_metadata,
)
from codeio_dagster.partitions import shards
from codeio_dagster.plugins import task_kinds
from codeio_dagster.resources import CodeioResource
from codeio_dagster.sandbox import Job
from codeio_dagster.sandbox.cache import open_result_cache
from codeio_dagster.sandbox.resources import SandboxResource
from codeio_dagster.turns import responses_name, verdicts_name
from codeio_dagster.verify import judge


def build_verdicts(turn: int) -> dg.AssetsDefinition:
    """The verdict asset of one turn: every reply judged by execution, with feedback."""

    @dg.asset(
        name=verdicts_name(turn),
        partitions_def=shards,
        group_name="verify" if turn == 0 else "revise",
        kinds={"nsjail"},
        check_specs=check_specs(verdicts_name(turn)),
        ins={"replies": dg.AssetIn(responses_name(turn))},
        description=f"Turn {turn} replies verified by execution, each with a status and feedback.",
    )
    def _verdicts(
        context: dg.AssetExecutionContext,
        codeio: CodeioResource,
        sandbox: SandboxResource,
        replies: pl.DataFrame,
        prediction_tasks: pl.DataFrame,
        unified_functions: pl.DataFrame,
    ):
        # Only usable replies are judged: a truncated or failed reply was dropped by its
        # responses stage with that reason, so rows_in here is that stage's kept.
        usable = replies.filter(pl.col("status") == "ok")
        kinds = task_kinds(
            prediction_tasks.get_column("kind").unique().to_list(),
            codeio.config.tasks.plugin_modules,
        )
        code = dict(
            unified_functions.filter(pl.col("status") == "ok")
            .select("function_id", "reference_code")
            .iter_rows()
        )
        # Cached runs quote the same actual output on every rerun, so feedback (and with it
        # the revision prompt, and the LLM cache key) never changes for unchanged replies.
        with sandbox.executor() as executor, open_result_cache(codeio.config.data_dir) as cache:
            executor.progress = context.asset_key.to_user_string()

            def run_inputs(runs):
                jobs = [Job(id=r.task_id, code=r.code, input=r.predicted_input) for r in runs]
                return executor.run(jobs, cache=cache)

            frame = judge(
                usable,
                prediction_tasks,
                kinds=kinds,
                code_by_function=code,
                run_inputs=run_inputs,
            )
        # Wrong answers are data too (CodeI/O keeps them, revision asks again): every reply
        # gets a verdict, so the counters report outcomes rather than drops.
        counters = outcome_counts(usable.height, frame, prefix="verdict_")
        rates = {
            f"pass_rate_{kind}": round(
                sub.filter(pl.col("status") == "correct").height / max(sub.height, 1), 4
            )
            for (kind,), sub in frame.group_by("kind")
        }
        rates["pass_rate"] = round(counters.get("verdict_correct", 0) / max(frame.height, 1), 4)
        outcomes = drop_reason_table(
            counters,
            example_errors(frame, "feedback", kept=("correct",)),
            prefix="verdict_",
            header=("verdict", "replies", "example feedback"),
        )
        if outcomes:
            rates["verdicts"] = dg.MetadataValue.md(outcomes)
        yield from checked(
            context,
            frame,
            stage_metadata(
                counters,
                sample=frame,
                sample_columns=["kind", "status", "answer", "feedback"],
                extra=rates,
            ),
            codeio.config,
        )

    return _verdicts
