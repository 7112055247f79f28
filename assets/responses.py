import json
from typing import TYPE_CHECKING

import dagster as dg
import polars as pl

from codeio_dagster.assets.checks import check_specs, checked
from codeio_dagster.feedback import revision_messages
from codeio_dagster.llm import ChatRequest, LLMResource, SamplingParams
from codeio_dagster.metadata import example_errors, funnel, llm_metadata, stage_metadata
from codeio_dagster.models import ResponseRecord, to_frame
from codeio_dagster.partitions import shards
from codeio_dagster.request_failures import fail_if_too_many_failed
from codeio_dagster.resources import CodeioResource
from codeio_dagster.turns import responses_name, verdicts_name

if TYPE_CHECKING:
    from codeio_dagster.config import CodeioConfig

# Not asked again: right already, or no reply to revise.
NO_REVISION_STATUSES = ("correct", "request_failed")


def ask(
    context: dg.AssetExecutionContext,
    llm: LLMResource,
    conversations: list[tuple[str, list[dict[str, str]]]],
    params: SamplingParams,
    turn: int,
    config: "CodeioConfig",
):
    requests = [
        ChatRequest(key=key, messages=messages, params=params) for key, messages in conversations
    ]
    outcomes, stats = llm.complete_many(
        requests, progress=context.asset_key.to_user_string(), log=context.log
    )
    failures = fail_if_too_many_failed(
        context.asset_key.to_user_string(), outcomes, config.llm.max_failure_rate
    )
    records = [
        ResponseRecord(
            task_id=o.key,
            shard=context.partition_key,
            turn=turn,
            messages=json.dumps(r.messages, ensure_ascii=False),
            content=o.content,
            status=o.status,
            finish_reason=o.finish_reason,
            error=o.error,
            prompt_tokens=o.prompt_tokens,
            completion_tokens=o.completion_tokens,
            cost_usd=o.cost_usd,
            cached=o.cached,
            request_hash=o.request_hash,
            model=o.model,
        )
        for r, o in zip(requests, outcomes, strict=True)
    ]
    frame = to_frame(records, ResponseRecord)
    yield from checked(
        context,
        frame,
        stage_metadata(
            funnel(len(requests), frame),
            sample=frame,
            sample_columns=["task_id", "status", "content"],
            examples=example_errors(frame, "error"),
            extra={**llm_metadata(llm, frame), **stats.as_metadata(), **failures},
        ),
        config,
    )


@dg.asset(
    partitions_def=shards,
    group_name="predict",
    kinds={"openai"},
    check_specs=check_specs("responses"),
)
def responses(
    context: dg.AssetExecutionContext,
    codeio: CodeioResource,
    llm: LLMResource,
    prediction_tasks: pl.DataFrame,
):
    """Turn 0: the model's chain-of-thought prediction for every task."""
    tasks = prediction_tasks.filter(pl.col("status") == "ok")
    conversations = [
        (row["task_id"], [{"role": "user", "content": row["prompt"]}])
        for row in tasks.iter_rows(named=True)
    ]
    config = codeio.config
    yield from ask(context, llm, conversations, config.stages.prediction, 0, config)


def build_revision_responses(turn: int) -> dg.AssetsDefinition:
    """Revision turn `turn`: non-correct answers asked again with the execution feedback."""
    previous_responses, previous_verdicts = responses_name(turn - 1), verdicts_name(turn - 1)

    @dg.asset(
        name=responses_name(turn),
        partitions_def=shards,
        group_name="revise",
        kinds={"openai"},
        check_specs=check_specs(responses_name(turn)),
        ins={
            "previous_responses": dg.AssetIn(previous_responses),
            "previous_verdicts": dg.AssetIn(previous_verdicts),
        },
        description=f"Revision turn {turn}: wrong answers asked again with execution feedback.",
    )
    def _responses(
        context: dg.AssetExecutionContext,
        codeio: CodeioResource,
        llm: LLMResource,
        previous_responses: pl.DataFrame,
        previous_verdicts: pl.DataFrame,
    ):
        retry = previous_verdicts.filter(~pl.col("status").is_in(NO_REVISION_STATUSES)).join(
            previous_responses.select("task_id", "messages", "content"), on="task_id"
        )
        conversations = [
            (
                row["task_id"],
                revision_messages(
                    json.loads(row["messages"]), row["content"] or "", row["feedback"]
                ),
            )
            for row in retry.iter_rows(named=True)
        ]
        config = codeio.config
        yield from ask(context, llm, conversations, config.stages.revision, turn, config)

    return _responses
