"""Assembly of the released datasets from tasks, replies and verdicts (DESIGN section 1, step 8),
as lazy polars plans without row loops, so the engine can stream them to Parquet.

Decisions (documented here, relied on by the dataset card):
- Only replies with response status `ok` are usable: a `truncated` reply is cut mid-reasoning
  and a `request_failed` one has no text, so their rows are dropped and counted
  (`dropped_truncated`, `dropped_request_failed`; `dropped_no_response` / `dropped_no_verdict`
  when a task has no reply or no verdict yet).
- `messages` is the conversation exactly as the model received it (the JSON `messages` of the
  ResponseRecord of the last turn used) plus that turn's reply as the assistant message.
- CodeI/O (`assemble_codeio`): every usable turn-0 answer, right or wrong; `feedback_1` is the
  verdict's feedback (null when correct); the turn-2 columns are null.
- CodeI/O++ (`assemble_codeio_pp`): a turn-0 answer that is correct stands alone. Any other
  usable turn-0 answer becomes (turn_1, feedback_1, turn_2, feedback_2) with the FIRST revision
  turn, whether or not it is right: `feedback_1` is the user message sent at turn 1 (feedback
  plus revision request, verbatim), `feedback_2` the turn-1 verdict's feedback (null when
  correct). Later revision turns are not used: the released layout holds two answers and the
  paper found a second revision does not help. If the revision reply is missing, failed or
  truncated the row is dropped (`dropped_revision_missing`, `dropped_revision_request_failed`,
  `dropped_revision_truncated`, `dropped_revision_no_verdict`): a wrong answer alone is not a
  CodeI/O++ sample.
"""

from __future__ import annotations

import polars as pl

from codeio_dagster.models import ChatMessage, DatasetRow, polars_schema

DATASET_SCHEMA = polars_schema(DatasetRow)
_MESSAGES = pl.List(pl.Struct(polars_schema(ChatMessage)))


def _tasks(tasks: pl.LazyFrame) -> pl.LazyFrame:
    return tasks.filter(pl.col("status") == "ok").select(
        "task_id", "function_id", "shard", "kind", "prompt"
    )


def _turn(responses: pl.LazyFrame, verdicts: pl.LazyFrame, k: int) -> pl.LazyFrame:
    """One turn's reply and verdict per task, columns suffixed with the turn number."""
    r = responses.filter(pl.col("turn") == k).select(
        "task_id",
        pl.col("status").alias(f"r{k}_status"),
        pl.col("content").alias(f"r{k}_content"),
        pl.col("messages").alias(f"r{k}_messages"),
    )
    v = verdicts.filter(pl.col("turn") == k).select(
        "task_id",
        pl.col("status").alias(f"v{k}_status"),
        pl.col("feedback").alias(f"v{k}_feedback"),
    )
    return r.join(v, on="task_id", how="left", maintain_order="left")


def _joined(tasks: pl.LazyFrame, responses, verdicts, turns: int) -> pl.LazyFrame:
    frame = _tasks(tasks)
    for k in range(turns):
        frame = frame.join(
            _turn(responses[k], verdicts[k], k), on="task_id", how="left", maintain_order="left"
        )
    return frame


def _turn_reason(k: int, prefix: str) -> pl.Expr:
    """Why turn k's reply is unusable, or null when it is usable."""
    status = pl.col(f"r{k}_status")
    missing = "dropped_revision_missing" if prefix else "dropped_no_response"
    return (
        pl.when(status.is_null())
        .then(pl.lit(missing))
        .when(status != "ok")
        .then(pl.lit(f"dropped_{prefix}") + status)
        .when(pl.col(f"v{k}_status").is_null())
        .then(pl.lit(f"dropped_{prefix}no_verdict"))
        .otherwise(pl.lit(None, dtype=pl.String))
    )


def _codeio_reason() -> pl.Expr:
    return pl.coalesce(_turn_reason(0, ""), pl.lit("kept")).alias("reason")


def _codeio_pp_reason() -> pl.Expr:
    return pl.coalesce(
        _turn_reason(0, ""),
        pl.when(pl.col("v0_status") == "correct").then(pl.lit("kept")),
        _turn_reason(1, "revision_"),
        pl.lit("kept"),
    ).alias("reason")


def _conversation(k: int) -> pl.Expr:
    """Turn k's messages as sent, plus its reply as the assistant message."""
    sent = pl.col(f"r{k}_messages").str.json_decode(_MESSAGES)
    reply = pl.struct(
        role=pl.lit("assistant", dtype=pl.String), content=pl.col(f"r{k}_content")
    ).cast(_MESSAGES.inner)
    return pl.concat_list(sent, reply)


def _null() -> pl.Expr:
    return pl.lit(None, dtype=pl.String)


def _check_turns(responses: list[pl.LazyFrame], verdicts: list[pl.LazyFrame], need: int) -> None:
    if len(responses) != len(verdicts):
        raise ValueError(
            f"responses and verdicts must list the same turns; got {len(responses)} response "
            f"frames and {len(verdicts)} verdict frames"
        )
    if len(responses) < need:
        raise ValueError(f"need frames for turns 0..{need - 1}, got {len(responses)}")


def assemble_codeio(
    tasks: pl.LazyFrame, responses0: pl.LazyFrame, verdicts0: pl.LazyFrame
) -> pl.LazyFrame:
    """CodeI/O: every usable turn-0 answer, right or wrong, in the DatasetRow layout."""
    frame = _joined(tasks, [responses0], [verdicts0], 1).filter(_codeio_reason() == "kept")
    return frame.select(
        "task_id",
        "function_id",
        "shard",
        "kind",
        "prompt",
        pl.col("r0_content").alias("turn_1"),
        pl.when(pl.col("v0_status") == "correct")
        .then(_null())
        .otherwise(pl.col("v0_feedback"))
        .alias("feedback_1"),
        _null().alias("turn_2"),
        _null().alias("feedback_2"),
        pl.col("v0_status").alias("verdict_1"),
        _null().alias("verdict_2"),
        _conversation(0).alias("messages"),
    ).cast(dict(DATASET_SCHEMA))


def assemble_codeio_pp(
    tasks: pl.LazyFrame, responses: list[pl.LazyFrame], verdicts: list[pl.LazyFrame]
) -> pl.LazyFrame:
    """CodeI/O++: correct first answers alone, others with their first revision (see module
    docstring for the exact rule)."""
    _check_turns(responses, verdicts, 2)
    frame = _joined(tasks, responses, verdicts, 2).filter(_codeio_pp_reason() == "kept")
    first_right = pl.col("v0_status") == "correct"
    revised = ~first_right
    conversation1 = _conversation(1)
    return frame.select(
        "task_id",
        "function_id",
        "shard",
        "kind",
        "prompt",
        pl.col("r0_content").alias("turn_1"),
        pl.when(revised)
        .then(pl.col("r1_messages").str.json_decode(_MESSAGES).list.last().struct.field("content"))
        .alias("feedback_1"),
        pl.when(revised).then(pl.col("r1_content")).alias("turn_2"),
        pl.when(revised & (pl.col("v1_status") != "correct"))
        .then(pl.col("v1_feedback"))
        .alias("feedback_2"),
        pl.col("v0_status").alias("verdict_1"),
        pl.when(revised).then(pl.col("v1_status")).alias("verdict_2"),
        pl.when(first_right).then(_conversation(0)).otherwise(conversation1).alias("messages"),
    ).cast(dict(DATASET_SCHEMA))


def drop_counts(
    tasks: pl.LazyFrame, responses: list[pl.LazyFrame], verdicts: list[pl.LazyFrame]
) -> dict[str, dict[str, int]]:
    """Rows kept and dropped (by reason) for each dataset: {"codeio": {...}, "codeio_pp": ...}.

    Only status-ok tasks are counted (contaminated tasks are reported by the tasks stage).
    """
    _check_turns(responses, verdicts, 1)
    out: dict[str, dict[str, int]] = {}
    codeio = _joined(tasks, responses[:1], verdicts[:1], 1).select(_codeio_reason())
    out["codeio"] = _count(codeio)
    if len(responses) >= 2:
        pp = _joined(tasks, responses[:2], verdicts[:2], 2).select(_codeio_pp_reason())
        out["codeio_pp"] = _count(pp)
    return out


def _count(reasons: pl.LazyFrame) -> dict[str, int]:
    counted = reasons.group_by("reason").len().collect(engine="streaming")
    result = {"kept": 0}
    result |= {r: int(n) for r, n in counted.sort("reason").iter_rows()}
    return result
