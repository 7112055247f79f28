"""The funnel from raw files to samples, built from what each stage reported about itself.

Every number here is read from one stage's materialisation metadata (the counters the stage
computed from its own rows), never from stored tables: the demo, the dataset card and the UI
therefore show the same numbers whatever the IO manager or storage. A stage that has not
reported is an error, never a zero.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from codeio_dagster.turns import responses_name, verdicts_name

# Funnel key -> (label, stage, the stage's metadata key). The one definition of each count.
STAGE_COUNTS: dict[str, tuple[str, str, str]] = {
    "raw_files": ("raw files landed", "raw_code", "rows_in"),
    "readable_files": ("readable raw files", "raw_code", "kept"),
    "functions": ("unified functions", "unified_functions", "kept"),
    "near_duplicate_functions": (
        "near-duplicate functions dropped",
        "unified_functions",
        "dropped_near_duplicate",
    ),
    "functions_with_pairs": ("functions with enough I/O pairs", "io_pairs", "kept"),
    "io_pairs": ("I/O pairs", "io_pairs", "pairs"),
    "tasks": ("prediction tasks", "prediction_tasks", "kept"),
    "replies_turn_0": ("usable replies at turn 0", "responses", "kept"),
    "truncated_turn_0": (
        "replies cut at the token limit, turn 0",
        "responses",
        "dropped_truncated",
    ),
    "request_failed_turn_0": ("requests failed, turn 0", "responses", "dropped_request_failed"),
    "correct_turn_0": ("correct at turn 0", "verdicts", "verdict_correct"),
    "codeio_rows": ("codeio rows", "codeio_dataset", "kept"),
    "codeio_pp_rows": ("codeio_pp rows", "codeio_pp_dataset", "kept"),
    "unified_rows": ("unified rows", "unified_dataset", "kept"),
}
# Counts summed over the revision turns 1..T, from the per-turn stages.
REVISION_COUNTS: dict[str, tuple[str, str, str]] = {
    "revision_replies": ("usable revision replies", "responses", "kept"),
    "truncated_revision": (
        "revision replies cut at the token limit",
        "responses",
        "dropped_truncated",
    ),
    "request_failed_revision": ("revision requests failed", "responses", "dropped_request_failed"),
    "fixed_by_revision": ("wrong at turn 0, correct after revision", "verdicts", "verdict_correct"),
}
DERIVED_LABELS = {
    "not_correct_turn_0": "not correct at turn 0 (what a revision turn asks again)",
    "correct_after_revision": "correct after revision (turn 0 + fixed)",
}
ORDER = [
    "raw_files",
    "readable_files",
    "functions",
    "near_duplicate_functions",
    "functions_with_pairs",
    "io_pairs",
    "tasks",
    "replies_turn_0",
    "truncated_turn_0",
    "request_failed_turn_0",
    "correct_turn_0",
    "not_correct_turn_0",
    "revision_replies",
    "truncated_revision",
    "request_failed_revision",
    "fixed_by_revision",
    "correct_after_revision",
    "codeio_rows",
    "codeio_pp_rows",
    "unified_rows",
]
LABELS = {
    **{k: v[0] for k, v in STAGE_COUNTS.items()},
    **{k: v[0] for k, v in REVISION_COUNTS.items()},
    **DERIVED_LABELS,
}


class MissingReport(LookupError):
    """A stage the funnel needs has not reported for the shard."""


def funnel_stages(turns: int) -> list[str]:
    """The stages whose reports the funnel reads."""
    stages = {stage for _, stage, _ in STAGE_COUNTS.values()}
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
    for name, (_, stage, key) in STAGE_COUNTS.items():
        if stage == "codeio_pp_dataset" and not turns:
            continue
        out[name] = read(stage, key)
    verdicts_kept = read("verdicts", "kept")
    out["not_correct_turn_0"] = verdicts_kept - out["correct_turn_0"]
    if turns:
        for name, (_, stage, key) in REVISION_COUNTS.items():
            make = responses_name if stage == "responses" else verdicts_name
            out[name] = sum(read(make(t), key) for t in range(1, turns + 1))
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
    (stages that never materialised the shard are left out)."""
    import dagster as dg

    reports = {}
    for stage in stages:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(stage), asset_partitions=[partition]),
            limit=1,
        ).records
        if records and records[0].asset_materialization is not None:
            reports[stage] = metadata_values(records[0].asset_materialization.metadata)
    return reports


def shard_funnel(instance, partition: str, turns: int) -> dict[str, int]:
    """The funnel of one shard as its stages reported it to the Dagster instance."""
    return compute_funnel(stage_reports(instance, funnel_stages(turns), partition), turns)
