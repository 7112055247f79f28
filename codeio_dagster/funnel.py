"""The funnel from raw files to samples, built from what each stage reported about itself.

Every number here is read from one stage's materialisation metadata (the counters the stage
computed from its own rows), never from stored tables: the demo, the dataset card and the UI
therefore show the same numbers whatever the IO manager or storage. A stage that has not
reported is an error, never a zero.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from codeio_dagster.turns import responses_name, verdicts_name

# The funnel in display order: (key, label, stage, the stage's metadata key), the one
# definition of each count. A stage ending in `_turn_t` is summed over revision turns 1..T;
# a row without a stage is computed from the others in `compute_funnel`.
FUNNEL: tuple[tuple[str, str, str, str], ...] = (
    ("raw_files", "raw files landed", "raw_code", "rows_in"),
    ("readable_files", "readable raw files", "raw_code", "kept"),
    ("functions", "unified functions", "unified_functions", "kept"),
    (
        "near_duplicate_functions",
        "near-duplicate functions dropped",
        "unified_functions",
        "dropped_near_duplicate",
    ),
    ("functions_with_pairs", "functions with enough I/O pairs", "io_pairs", "kept"),
    ("io_pairs", "I/O pairs", "io_pairs", "pairs"),
    ("tasks", "prediction tasks", "prediction_tasks", "kept"),
    ("replies_turn_0", "usable replies at turn 0", "responses", "kept"),
    (
        "truncated_turn_0",
        "replies cut at the token limit, turn 0",
        "responses",
        "dropped_truncated",
    ),
    ("request_failed_turn_0", "requests failed, turn 0", "responses", "dropped_request_failed"),
    ("correct_turn_0", "correct at turn 0", "verdicts", "verdict_correct"),
    ("not_correct_turn_0", "not correct at turn 0 (what a revision turn asks again)", "", ""),
    ("revision_replies", "usable revision replies", "responses_turn_t", "kept"),
    (
        "truncated_revision",
        "revision replies cut at the token limit",
        "responses_turn_t",
        "dropped_truncated",
    ),
    (
        "request_failed_revision",
        "revision requests failed",
        "responses_turn_t",
        "dropped_request_failed",
    ),
    (
        "fixed_by_revision",
        "wrong at turn 0, correct after revision",
        "verdicts_turn_t",
        "verdict_correct",
    ),
    ("correct_after_revision", "correct after revision (turn 0 + fixed)", "", ""),
    ("codeio_rows", "codeio rows", "codeio_dataset", "kept"),
    ("codeio_pp_rows", "codeio_pp rows", "codeio_pp_dataset", "kept"),
    ("unified_rows", "unified rows", "unified_dataset", "kept"),
)
_PER_TURN = "_turn_t"
ORDER = [key for key, *_ in FUNNEL]
LABELS = {key: label for key, label, *_ in FUNNEL}


class MissingReport(LookupError):
    """A stage the funnel needs has not reported for the shard."""


def funnel_stages(turns: int) -> list[str]:
    """The stages whose reports the funnel reads."""
    stages = {stage for _, _, stage, _ in FUNNEL if stage and not stage.endswith(_PER_TURN)}
    if not turns:
        stages.discard("codeio_pp_dataset")
    for t in range(1, turns + 1):
        stages |= {responses_name(t), verdicts_name(t)}
    return sorted(stages)


def compute_funnel(reports: Mapping[str, Mapping[str, Any]], turns: int) -> dict[str, int]:
    """The funnel of one shard from its stages' reports (stage -> materialisation metadata).

    A counter a stage did not emit (no row dropped for that reason) is zero; a stage that did
    not report at all raises MissingReport."""

    def read(stage: str, key: str) -> int:
        if stage not in reports:
            raise MissingReport(f"stage {stage} has no materialisation for this shard")
        return int(reports[stage].get(key, 0) or 0)

    out: dict[str, int] = {}
    for name, _, stage, key in FUNNEL:
        if stage.endswith(_PER_TURN):
            make = responses_name if stage.startswith("responses") else verdicts_name
            if turns:
                out[name] = sum(read(make(t), key) for t in range(1, turns + 1))
        elif stage and (turns or stage != "codeio_pp_dataset"):
            out[name] = read(stage, key)
    out["not_correct_turn_0"] = read("verdicts", "kept") - out["correct_turn_0"]
    if turns:
        out["correct_after_revision"] = out["correct_turn_0"] + out["fixed_by_revision"]
    return {k: out[k] for k in ORDER if k in out}


def add_funnels(funnels: Iterable[Mapping[str, int]]) -> dict[str, int]:
    """Shard funnels added up key by key, in funnel order."""
    total: dict[str, int] = {}
    for funnel in funnels:
        for key, n in funnel.items():
            total[key] = total.get(key, 0) + int(n)
    return {k: total[k] for k in [*ORDER, *sorted(set(total) - set(ORDER))] if k in total}


def metadata_values(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Plain values of a materialisation's metadata (Dagster wraps them in MetadataValue)."""
    return {k: getattr(v, "value", v) for k, v in metadata.items()}


def stage_reports(instance, stages: Iterable[str], partition: str) -> dict[str, dict[str, Any]]:
    """The latest materialisation metadata of each stage for one shard, read from the instance
    in one question for the shard (stages that never materialised the shard are left out)."""
    return stage_reports_by_shard(instance, stages, [partition])[partition]


def stage_reports_by_shard(
    instance, stages: Iterable[str], partitions: Sequence[str]
) -> dict[str, dict[str, dict[str, Any]]]:
    """`stage_reports` of many shards, asked for many shards at a time."""
    import dagster as dg

    from codeio_dagster.versions import latest_by_shard

    keys = {dg.AssetKey(stage): stage for stage in stages}
    return {
        partition: {
            keys[key]: metadata_values(record.asset_materialization.metadata)
            for key, record in latest.items()
            if record.asset_materialization is not None
        }
        for partition, latest in latest_by_shard(instance, partitions, keys).items()
    }


def shard_funnel(instance, partition: str, turns: int) -> dict[str, int]:
    """The funnel of one shard as its stages reported it to the Dagster instance."""
    return compute_funnel(stage_reports(instance, funnel_stages(turns), partition), turns)


def shard_funnels(instance, partitions: Sequence[str], turns: int) -> dict[str, dict[str, int]]:
    """The funnel of each shard, read with a few questions for many shards."""
    reports = stage_reports_by_shard(instance, funnel_stages(turns), partitions)
    return {p: compute_funnel(reports[p], turns) for p in partitions}
