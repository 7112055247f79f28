"""Assembly of the released datasets from tasks, replies and verdicts (DESIGN section 1, step 8),
as lazy polars plans without row loops, so the engine can stream them to Parquet.

Decisions (documented here, relied on by the dataset card):
- Only replies with response status `ok` are usable: a `truncated` reply is cut mid-reasoning
  and a `request_failed` one has no text, so their rows are dropped and counted
  (`dropped_truncated`, `dropped_request_failed`; `dropped_no_response` / `dropped_no_verdict`
  when a task has no reply or no verdict yet).
- `messages` is the conversation exactly as the model received it (the JSON `messages` of the
  ResponseRecord of the last turn used) plus that turn's reply as the assistant message.
  `prompt` is the last user message the model received at turn 0 (the task prompt as sent);
  in a revised row `prompt`, `turn_1` and `feedback_1` are read from the turn-1 conversation
  (its last three messages), so the row shows exactly what the model saw.
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
- Memory: the joins hold hash tables of the narrow sides (ids, statuses, feedback), which grow
  with the row count (about 0.5-1 KB per task measured). For very large inputs pass
  `part=(i, k)` and build the k parts one after another (e.g. one Parquet file each): each part
  keeps only the tasks whose task_id hashes to bucket i, so memory is bounded by rows / k at
  the price of reading the inputs k times. Per-shard partitions never need this.
"""

from __future__ import annotations

import polars as pl

from codeio_dagster.models import ChatMessage, DatasetRow, polars_schema

DATASET_SCHEMA = polars_schema(DatasetRow)
_MESSAGES = pl.List(pl.Struct(polars_schema(ChatMessage)))

# Memory: polars builds a hash table of the right side of each join and streams the left. The
# wide text columns (replies, conversations) therefore only ever sit on the left, and the right
# sides are narrow (ids, statuses, feedback). The prompt is read from the conversation the model
# received rather than joined in from the tasks table, for the same reason.


def _task_meta(tasks: pl.LazyFrame) -> pl.LazyFrame:
    return tasks.filter(pl.col("status") == "ok").select("task_id", "function_id")


def _replies(responses: pl.LazyFrame, k: int) -> pl.LazyFrame:
    """Usable replies of turn k (status ok) with the conversation they answered, decoded."""
    return responses.filter((pl.col("turn") == k) & (pl.col("status") == "ok")).select(
        "task_id",
        "shard",
        pl.col("content").alias("reply"),
        pl.col("messages").str.json_decode(_MESSAGES).alias("sent"),
    )


def _verdict(verdicts: pl.LazyFrame, k: int) -> pl.LazyFrame:
    columns = [pl.col("status").alias(f"v{k}_status"), pl.col("feedback").alias(f"v{k}_feedback")]
    if k == 0:
        columns.append("kind")
    return verdicts.filter(pl.col("turn") == k).select("task_id", *columns)


_UNUSABLE = ["truncated", "request_failed"]


def _join(left: pl.LazyFrame, right: pl.LazyFrame, how: str = "inner") -> pl.LazyFrame:
    return left.join(right, on="task_id", how=how, maintain_order="left")


def _content(messages: pl.Expr, index: int) -> pl.Expr:
    return messages.list.get(index, null_on_oob=True).struct.field("content")


def _with_reply(sent: pl.Expr, reply: pl.Expr) -> pl.Expr:
    """The conversation as sent plus the reply as the assistant message."""
    message = pl.struct(role=pl.lit("assistant", dtype=pl.String), content=reply)
    return pl.concat_list(sent, message.cast(_MESSAGES.inner))


def _null() -> pl.Expr:
    return pl.lit(None, dtype=pl.String)


def _bucket(frame: pl.LazyFrame, part: tuple[int, int] | None) -> pl.LazyFrame:
    if part is None:
        return frame
    return frame.filter(pl.col("task_id").hash(seed=0) % part[1] == part[0])


def _check_part(part: tuple[int, int] | None) -> None:
    if part is not None and not (
        len(part) == 2 and isinstance(part[1], int) and part[1] >= 1 and 0 <= part[0] < part[1]
    ):
        raise ValueError(f"part must be (index, count) with 0 <= index < count, got {part!r}")


def _check_turns(responses: list[pl.LazyFrame], verdicts: list[pl.LazyFrame], need: int) -> None:
    if len(responses) != len(verdicts):
        raise ValueError(
            f"responses and verdicts must list the same turns; got {len(responses)} response "
            f"frames and {len(verdicts)} verdict frames"
        )
    if len(responses) < need:
        raise ValueError(f"need frames for turns 0..{need - 1}, got {len(responses)}")


def _first_turn_rows(tasks, responses0, verdicts0) -> pl.LazyFrame:
    rows = _join(_replies(responses0, 0), _task_meta(tasks))
    return _join(rows, _verdict(verdicts0, 0))


def _codeio_rows(rows: pl.LazyFrame) -> pl.LazyFrame:
    return rows.select(
        "task_id",
        "function_id",
        "shard",
        "kind",
        _content(pl.col("sent"), -1).alias("prompt"),
        pl.col("reply").alias("turn_1"),
        pl.when(pl.col("v0_status") != "correct").then(pl.col("v0_feedback")).alias("feedback_1"),
        _null().alias("turn_2"),
        _null().alias("feedback_2"),
        pl.col("v0_status").alias("verdict_1"),
        _null().alias("verdict_2"),
        _with_reply(pl.col("sent"), pl.col("reply")).alias("messages"),
    ).cast(dict(DATASET_SCHEMA))


def assemble_codeio(
    tasks: pl.LazyFrame,
    responses0: pl.LazyFrame,
    verdicts0: pl.LazyFrame,
    *,
    part: tuple[int, int] | None = None,
) -> pl.LazyFrame:
    """CodeI/O: every usable turn-0 answer, right or wrong, in the DatasetRow layout."""
    _check_part(part)
    tasks, responses0, verdicts0 = (_bucket(f, part) for f in (tasks, responses0, verdicts0))
    return _codeio_rows(_first_turn_rows(tasks, responses0, verdicts0))


def assemble_codeio_pp(
    tasks: pl.LazyFrame,
    responses: list[pl.LazyFrame],
    verdicts: list[pl.LazyFrame],
    *,
    part: tuple[int, int] | None = None,
) -> pl.LazyFrame:
    """CodeI/O++: correct first answers alone, others with their first revision (see module
    docstring for the exact rule). Correct first answers come first, then revised ones."""
    _check_turns(responses, verdicts, 2)
    _check_part(part)
    tasks = _bucket(tasks, part)
    responses = [_bucket(f, part) for f in responses]
    verdicts = [_bucket(f, part) for f in verdicts]
    first = _first_turn_rows(tasks, responses[0], verdicts[0]).filter(
        pl.col("v0_status") == "correct"
    )
    # A revised row is built from the turn-1 reply alone: its conversation already holds the
    # prompt, the first answer and the revision request exactly as sent.
    usable_first = (
        responses[0].filter((pl.col("turn") == 0) & (pl.col("status") == "ok")).select("task_id")
    )
    revised = _join(_replies(responses[1], 1), _task_meta(tasks))
    revised = _join(revised, usable_first)
    revised = _join(revised, _verdict(verdicts[0], 0).filter(pl.col("v0_status") != "correct"))
    revised = _join(revised, _verdict(verdicts[1], 1))
    revised_rows = revised.select(
        "task_id",
        "function_id",
        "shard",
        "kind",
        _content(pl.col("sent"), -3).alias("prompt"),
        _content(pl.col("sent"), -2).alias("turn_1"),
        _content(pl.col("sent"), -1).alias("feedback_1"),
        pl.col("reply").alias("turn_2"),
        pl.when(pl.col("v1_status") != "correct").then(pl.col("v1_feedback")).alias("feedback_2"),
        pl.col("v0_status").alias("verdict_1"),
        pl.col("v1_status").alias("verdict_2"),
        _with_reply(pl.col("sent"), pl.col("reply")).alias("messages"),
    ).cast(dict(DATASET_SCHEMA))
    return pl.concat([_codeio_rows(first), revised_rows], how="vertical")


def _keys(responses: pl.LazyFrame, verdicts: pl.LazyFrame, k: int) -> pl.LazyFrame:
    r = responses.filter(pl.col("turn") == k).select(
        "task_id", pl.col("status").alias(f"r{k}_status")
    )
    v = verdicts.filter(pl.col("turn") == k).select(
        "task_id", pl.col("status").alias(f"v{k}_status")
    )
    return _join(r, v, "left")


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
        .otherwise(_null())
    )


def drop_counts(
    tasks: pl.LazyFrame, responses: list[pl.LazyFrame], verdicts: list[pl.LazyFrame]
) -> dict[str, dict[str, int]]:
    """Rows kept and dropped (by reason) for each dataset: {"codeio": {...}, "codeio_pp": ...}
    (codeio_pp only when a revision turn is given). Only status-ok tasks are counted; the
    tasks stage reports contaminated ones."""
    _check_turns(responses, verdicts, 1)
    base = tasks.filter(pl.col("status") == "ok").select("task_id")
    turns = min(len(responses), 2)
    for k in range(turns):
        base = _join(base, _keys(responses[k], verdicts[k], k), "left")
    out = {
        "codeio": _count(
            base.select(pl.coalesce(_turn_reason(0, ""), pl.lit("kept")).alias("reason"))
        )
    }
    if turns == 2:
        pp = pl.coalesce(
            _turn_reason(0, ""),
            pl.when(pl.col("v0_status") == "correct").then(pl.lit("kept")),
            _turn_reason(1, "revision_"),
            pl.lit("kept"),
        ).alias("reason")
        out["codeio_pp"] = _count(base.select(pp))
    return out


def _count(reasons: pl.LazyFrame) -> dict[str, int]:
    counted = reasons.group_by("reason").len().collect(engine="streaming")
    result = {"kept": 0}
    result |= {r: int(n) for r, n in counted.sort("reason").iter_rows()}
    return result
