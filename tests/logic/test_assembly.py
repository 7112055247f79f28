"""Assembly of the CodeI/O and CodeI/O++ datasets on small hand-built tables."""

from __future__ import annotations

import json

import polars as pl
import pytest

from codeio_dagster.assembly import assemble_codeio, assemble_codeio_pp, drop_counts
from codeio_dagster.feedback import revision_messages
from codeio_dagster.models import (
    DatasetRow,
    PredictionTaskRecord,
    ResponseRecord,
    VerdictRecord,
    polars_schema,
    to_frame,
)


def task(i: int, status: str = "ok") -> PredictionTaskRecord:
    return PredictionTaskRecord(
        task_id=f"t{i}",
        function_id=f"f{i // 2}",
        shard="s1",
        kind="output_prediction" if i % 2 else "input_prediction",
        pair_index=i,
        given="{}",
        expected="1",
        prompt=f"prompt {i}",
        status=status,
        detail=None,
    )


def response(i: int, turn: int, status: str, content: str | None, messages: list) -> ResponseRecord:
    return ResponseRecord(
        task_id=f"t{i}",
        shard="s1",
        turn=turn,
        messages=json.dumps(messages),
        content=content,
        status=status,
        finish_reason="stop" if status == "ok" else "length",
        error=None,
        prompt_tokens=10,
        completion_tokens=20,
        cost_usd=0.0,
        cached=False,
        request_hash=f"h{i}{turn}",
        model="m",
    )


def verdict(i: int, turn: int, status: str) -> VerdictRecord:
    return VerdictRecord(
        task_id=f"t{i}",
        shard="s1",
        turn=turn,
        kind="output_prediction",
        status=status,
        answer="1",
        actual=None,
        feedback=None if status == "correct" else f"feedback {i}/{turn}",
    )


def user(i: int) -> list[dict]:
    return [{"role": "user", "content": f"prompt {i}"}]


# Task outcomes (turn 0 -> turn 1):
#   t0 correct; t1 wrong -> wrong; t2 parse_error -> correct; t3 truncated at turn 0;
#   t4 request_failed at turn 0; t5 wrong, revision truncated; t6 wrong, revision missing;
#   t7 contaminated task (never counted); t8 no reply at all.
TURN0 = {0: "correct", 1: "wrong", 2: "parse_error", 5: "wrong", 6: "wrong"}
TURN1 = {1: "wrong", 2: "correct"}


@pytest.fixture
def frames():
    tasks = [task(i) for i in range(9) if i != 7] + [task(7, "contaminated")]
    r0 = [response(i, 0, "ok", f"answer {i}", user(i)) for i in TURN0]
    r0 += [response(3, 0, "truncated", "partial", user(3))]
    r0 += [response(4, 0, "request_failed", None, user(4))]
    r0 += [response(7, 0, "ok", "answer 7", user(7))]
    v0 = [verdict(i, 0, s) for i, s in TURN0.items()]
    v0 += [verdict(3, 0, "truncated"), verdict(4, 0, "request_failed"), verdict(7, 0, "correct")]
    sent1 = {i: revision_messages(user(i), f"answer {i}", f"feedback {i}/0") for i in (1, 2, 5)}
    r1 = [response(i, 1, "ok", f"revised {i}", sent1[i]) for i in (1, 2)]
    r1 += [response(5, 1, "truncated", "partial", sent1[5])]
    v1 = [verdict(i, 1, s) for i, s in TURN1.items()] + [verdict(5, 1, "truncated")]
    return {
        "tasks": to_frame(tasks, PredictionTaskRecord).lazy(),
        "r": [to_frame(r0, ResponseRecord).lazy(), to_frame(r1, ResponseRecord).lazy()],
        "v": [to_frame(v0, VerdictRecord).lazy(), to_frame(v1, VerdictRecord).lazy()],
        "sent1": sent1,
    }


def by_id(frame: pl.DataFrame) -> dict[str, dict]:
    return {row["task_id"]: row for row in frame.iter_rows(named=True)}


def test_codeio_keeps_every_usable_first_answer(frames):
    out = assemble_codeio(frames["tasks"], frames["r"][0], frames["v"][0]).collect()
    assert out.schema == polars_schema(DatasetRow)
    rows = by_id(out)
    assert set(rows) == {"t0", "t1", "t2", "t5", "t6"}
    assert rows["t0"]["feedback_1"] is None and rows["t0"]["verdict_1"] == "correct"
    assert rows["t1"]["feedback_1"] == "feedback 1/0" and rows["t1"]["verdict_1"] == "wrong"
    assert rows["t2"]["verdict_1"] == "parse_error"
    for row in rows.values():
        assert row["turn_2"] is None and row["feedback_2"] is None and row["verdict_2"] is None
    assert rows["t1"]["prompt"] == "prompt 1"
    assert rows["t1"]["turn_1"] == "answer 1"
    assert rows["t1"]["function_id"] == "f0" and rows["t1"]["kind"] == "output_prediction"
    assert rows["t1"]["messages"] == [
        {"role": "user", "content": "prompt 1"},
        {"role": "assistant", "content": "answer 1"},
    ]


def test_codeio_pp_rule(frames):
    out = assemble_codeio_pp(frames["tasks"], frames["r"], frames["v"]).collect()
    assert out.schema == polars_schema(DatasetRow)
    rows = by_id(out)
    assert set(rows) == {"t0", "t1", "t2"}
    # correct first answer stands alone
    assert rows["t0"]["turn_2"] is None and rows["t0"]["feedback_1"] is None
    assert len(rows["t0"]["messages"]) == 2
    # wrong then wrong: kept with both turns and the second feedback
    t1 = rows["t1"]
    request = frames["sent1"][1][-1]["content"]
    assert (t1["prompt"], t1["turn_1"], t1["feedback_1"]) == ("prompt 1", "answer 1", request)
    assert "do not repeat" in t1["feedback_1"]
    assert (t1["turn_2"], t1["verdict_2"], t1["feedback_2"]) == (
        "revised 1",
        "wrong",
        "feedback 1/1",
    )
    assert [m["role"] for m in t1["messages"]] == ["user", "assistant", "user", "assistant"]
    assert t1["messages"][-1]["content"] == "revised 1"
    assert t1["messages"][2]["content"] == request
    # parse_error then correct: kept, no second feedback
    assert rows["t2"]["verdict_2"] == "correct" and rows["t2"]["feedback_2"] is None


def test_drop_counts_match_the_assembled_rows(frames):
    counts = drop_counts(frames["tasks"], frames["r"], frames["v"])
    assert counts["codeio"] == {
        "kept": 5,
        "dropped_truncated": 1,
        "dropped_request_failed": 1,
        "dropped_no_response": 1,
    }
    assert counts["codeio_pp"] == {
        "kept": 3,
        "dropped_truncated": 1,
        "dropped_request_failed": 1,
        "dropped_no_response": 1,
        "dropped_revision_truncated": 1,
        "dropped_revision_missing": 1,
    }
    codeio = assemble_codeio(frames["tasks"], frames["r"][0], frames["v"][0]).collect()
    pp = assemble_codeio_pp(frames["tasks"], frames["r"], frames["v"]).collect()
    assert counts["codeio"]["kept"] == codeio.height
    assert counts["codeio_pp"]["kept"] == pp.height


def test_missing_verdict_is_dropped_and_counted(frames):
    v0 = frames["v"][0].filter(pl.col("task_id") != "t0")
    assert "t0" not in by_id(assemble_codeio(frames["tasks"], frames["r"][0], v0).collect())
    counts = drop_counts(frames["tasks"], frames["r"][:1], [v0])
    assert counts["codeio"]["dropped_no_verdict"] == 1
    assert "codeio_pp" not in counts


def test_codeio_pp_needs_a_revision_turn(frames):
    with pytest.raises(ValueError, match="turns 0..1"):
        assemble_codeio_pp(frames["tasks"], frames["r"][:1], frames["v"][:1])
    with pytest.raises(ValueError, match="same turns"):
        assemble_codeio_pp(frames["tasks"], frames["r"], frames["v"][:1])


def test_empty_inputs_give_empty_frames_with_the_schema(frames):
    empty = {k: v.head(0) for k, v in (("t", frames["tasks"]),)}
    out = assemble_codeio(empty["t"], frames["r"][0].head(0), frames["v"][0].head(0)).collect()
    assert out.height == 0 and out.schema == polars_schema(DatasetRow)
    pp = assemble_codeio_pp(
        empty["t"], [r.head(0) for r in frames["r"]], [v.head(0) for v in frames["v"]]
    )
    assert pp.collect().schema == polars_schema(DatasetRow)


def test_parts_partition_the_dataset_exactly(frames):
    whole = assemble_codeio_pp(frames["tasks"], frames["r"], frames["v"]).collect()
    parts = [
        assemble_codeio_pp(frames["tasks"], frames["r"], frames["v"], part=(i, 3)).collect()
        for i in range(3)
    ]
    assert sorted(pl.concat(parts)["task_id"].to_list()) == sorted(whole["task_id"].to_list())
    codeio_parts = [
        assemble_codeio(frames["tasks"], frames["r"][0], frames["v"][0], part=(i, 2)).collect()
        for i in range(2)
    ]
    assert sum(p.height for p in codeio_parts) == 5
    with pytest.raises(ValueError, match="0 <= index < count"):
        assemble_codeio(frames["tasks"], frames["r"][0], frames["v"][0], part=(3, 3))


def _materialise_datasets(frames, turns: int) -> dict[str, dict]:
    """The dataset assets run by Dagster on stand-in upstream tables; metadata per asset."""
    import dagster as dg

    from codeio_dagster.assets.codeio_datasets import build_codeio_datasets
    from codeio_dagster.partitions import shards

    upstream = {"prediction_tasks": frames["tasks"], "responses": frames["r"][0]}
    upstream |= {"verdicts": frames["v"][0]}
    if turns:
        upstream |= {"responses_turn_1": frames["r"][1], "verdicts_turn_1": frames["v"][1]}

    def stand_in(name: str, frame: pl.LazyFrame) -> dg.AssetsDefinition:
        @dg.asset(name=name, partitions_def=shards)
        def _asset() -> pl.DataFrame:
            return frame.collect()

        return _asset

    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(shards.name, ["s1"])
    datasets = build_codeio_datasets(turns)
    result = dg.materialize(
        [*(stand_in(k, v) for k, v in upstream.items()), *datasets],
        partition_key="s1",
        instance=instance,
        resources={"io_manager": dg.InMemoryIOManager()},
    )
    assert result.success
    return {
        e.asset_key.to_user_string(): {k: v.value for k, v in e.metadata.items()}
        for e in (ev.materialization for ev in result.get_asset_materialization_events())
        if e.asset_key in {d.key for d in datasets}
    }


def test_dataset_assets_report_every_drop_reason(frames):
    meta = _materialise_datasets(frames, turns=1)
    counts = drop_counts(frames["tasks"], frames["r"], frames["v"])
    for name, config in (("codeio_dataset", "codeio"), ("codeio_pp_dataset", "codeio_pp")):
        reported = {k: v for k, v in meta[name].items() if k == "kept" or k.startswith("dropped_")}
        assert reported == counts[config]
        # 8 status-ok tasks in (t7 is contaminated): each one kept or dropped with a reason
        assert meta[name]["rows_in"] == 8 == sum(counts[config].values())
    assert meta["codeio_pp_dataset"]["dropped_revision_truncated"] == 1
    assert meta["codeio_dataset"]["first_wrong"] == 3


def test_without_a_revision_turn_only_codeio_is_built(frames):
    meta = _materialise_datasets(frames, turns=0)
    assert list(meta) == ["codeio_dataset"]
    assert meta["codeio_dataset"]["kept"] == 5 and meta["codeio_dataset"]["rows_in"] == 8
