"""Code versions of the assets, and which of a shard's assets are stale, so unchanged work is free.

An asset's code version is a hash of the project's source (every module and prompt template of
the `codeio_dagster` packages), of `data_dir` and of the config keys that decide its output
(`ASSET_CONFIG`). Every stage table gets a data version from its content (`data_version`).
Dagster records the code version and the data versions of the inputs with every
materialisation, so the UI marks a shard's asset stale when its code, its config keys or an
input changed, and `stale_assets` tells `codeio demo` / `codeio build` what to run: a shard
whose assets are all fresh is not run at all.

The source hash is deliberately coarse: any edit of the project's code makes every asset stale
(nothing is reused by mistake after a change); the LLM request cache and the sandbox result
cache keep the re-run of unchanged work cheap. Config keys are fine-grained: changing
`checks.min_pass_rate` makes nothing stale, changing `stages.revision` only the revision turns
and what reads them. Plugin modules are named by the config keys, but their source is not
hashed: after editing a plugin, change its name or rebuild the shards it touches.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import dagster as dg
import polars as pl

from codeio_dagster.code_digest import source_digest
from codeio_dagster.config import CodeioConfig

# The config keys (dotted paths) each asset's output depends on; the revision-turn assets
# (responses_turn_N, verdicts_turn_N) use their family's entry. An asset not listed here
# (a plugin's, a new one) depends on the whole config, which is never wrong, only eager.
ASSET_CONFIG: dict[str, tuple[str, ...]] = {
    "raw_code": ("shards.max_file_bytes",),
    "unified_functions": ("stages.refactor", "llm.base_url", "llm.local_model", "dedup"),
    "io_pairs": ("io_pairs", "sandbox"),
    "prediction_tasks": ("tasks", "decontamination"),
    "responses": ("stages.prediction", "llm.base_url", "llm.local_model"),
    "verdicts": ("tasks", "sandbox"),
    "responses_turn": ("stages.revision", "llm.base_url", "llm.local_model"),
    "verdicts_turn": ("tasks", "sandbox"),
    "codeio_dataset": (),
    "codeio_pp_dataset": (),
    "unified_dataset": (),
    "hub_publication": ("publish",),
}


def _family(asset: str) -> str:
    return re.sub(r"_\d+$", "", asset)


def _pick(data: dict[str, Any], dotted: str) -> Any:
    value: Any = data
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def config_slice(config: CodeioConfig, asset: str) -> dict[str, Any]:
    """The config values `asset` depends on, keyed by their dotted paths."""
    data = config.model_dump(mode="json")
    keys = ASSET_CONFIG.get(asset, ASSET_CONFIG.get(_family(asset)))
    if keys is None:
        return {"": data}
    # The stored tables live under data_dir: pointed elsewhere, nothing there is fresh.
    return {key: _pick(data, key) for key in ("data_dir", *keys)}


def code_version(config: CodeioConfig, asset: str) -> str:
    """The code version Dagster records for `asset`: project source plus its config keys."""
    text = json.dumps(config_slice(config, asset), sort_keys=True, default=str)
    return hashlib.sha256(f"{source_digest()}\0{asset}\0{text}".encode()).hexdigest()[:16]


def with_code_versions(
    config: CodeioConfig, assets: Iterable[dg.AssetsDefinition]
) -> list[dg.AssetsDefinition]:
    """The assets with their code versions set (from the one place that knows the rule)."""
    return [
        asset.map_asset_specs(
            lambda spec: spec.replace_attributes(
                code_version=code_version(config, spec.key.to_user_string())
            )
        )
        for asset in assets
    ]


def data_version(frame: pl.DataFrame) -> dg.DataVersion:
    """The data version of a stage table: a hash of its content (Arrow IPC bytes), so an asset
    materialised again with the same rows leaves what reads it fresh, and one whose rows
    changed (a model sampled anew, say) makes it stale, whatever its code version says."""
    buffer = io.BytesIO()
    frame.write_ipc(buffer, compression="uncompressed")
    return dg.DataVersion(hashlib.sha256(buffer.getvalue()).hexdigest()[:32])


def versioned_output(frame: pl.DataFrame, metadata: dict[str, Any]) -> dg.Output:
    """A stage's output carrying its content's data version."""
    # Output's data_version is marked beta; the warning would repeat on every step of every run.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        return dg.Output(frame, metadata=metadata, data_version=data_version(frame))


def latest_materializations(
    instance: dg.DagsterInstance, partition_key: str, keys: Iterable[dg.AssetKey]
) -> dict[dg.AssetKey, Any]:
    """The latest materialisation record of each of `keys` for one shard, from one question to the
    event log for the shard's materialisations (newest first, paged) and one for wipe times,
    instead of one question per asset and per fact, so a shard's cost stays a few queries."""
    return latest_by_shard(instance, [partition_key], keys)[partition_key]


def latest_by_shard(
    instance: dg.DagsterInstance, partition_keys: Sequence[str], keys: Iterable[dg.AssetKey]
) -> dict[str, dict[dg.AssetKey, Any]]:
    """`latest_materializations` of many shards, asked in chunks of `SHARDS_PER_QUERY` shards."""
    keys = list(keys)
    out: dict[str, dict[dg.AssetKey, Any]] = {}
    for i in range(0, len(partition_keys), SHARDS_PER_QUERY):
        chunk = partition_keys[i : i + SHARDS_PER_QUERY]
        out.update(_shard_records(instance, chunk, keys)[0])
    return out


def _shard_records(
    instance: dg.DagsterInstance, partition_keys: Sequence[str], keys: Iterable[dg.AssetKey]
) -> tuple[dict[str, dict[dg.AssetKey, Any]], dict[int, Any]]:
    """The latest record of each of `keys` per shard, and every record read on the way by
    storage id (in memory: the history of these shards' materialisations)."""
    from dagster._core.event_api import EventRecordsFilter

    wanted = set(keys)
    # A wiped asset's older materialisations are history, not its current state (as the UI sees
    # it): the asset records leave out an asset wiped since, and carry the time of the last wipe.
    since: dict[dg.AssetKey, float] = {}
    for record in instance.get_asset_records(sorted(wanted, key=str)):
        details = record.asset_entry.asset_details
        since[record.asset_entry.asset_key] = (details and details.last_wipe_timestamp) or -1.0
    found: dict[str, dict[dg.AssetKey, Any]] = {p: {} for p in partition_keys}
    missing = len(since) * len(found)
    seen: dict[int, Any] = {}
    cursor = None
    while True:
        page = instance.event_log_storage.get_event_records(
            EventRecordsFilter(
                event_type=dg.DagsterEventType.ASSET_MATERIALIZATION,
                asset_partitions=list(found),
                before_cursor=cursor,
            ),
            limit=_PAGE,
            ascending=False,
        )
        for record in page:
            seen[record.storage_id] = record
            key, latest = record.asset_key, found.get(record.partition_key)
            if (
                latest is not None
                and key in since
                and key not in latest
                and record.timestamp > since[key]
            ):
                latest[key] = record
                missing -= 1
        if len(page) < _PAGE or missing == 0:
            return found, seen
        cursor = page[-1].storage_id


SHARDS_PER_QUERY = 100  # shards whose records are asked for (and held) together
_PAGE = 1000


def _one_partition_per_run(graph) -> bool:
    """Whether every asset is materialisable and partitioned like its parents, one to one (the
    project's own graph), so a shard's staleness needs only that shard's records."""
    from dagster._core.definitions.partitions.mapping import IdentityPartitionMapping

    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if not node.is_materializable or node.is_virtual or node.partitions_def is None:
            return False
        for parent in node.parent_keys:
            parent_node = graph.get(parent)
            if parent_node.partitions_def != node.partitions_def or not isinstance(
                graph.get_partition_mapping(key, parent), IdentityPartitionMapping
            ):
                return False
    return True


def _is_fresh(
    node, latest: dict[dg.AssetKey, Any], read: Callable[[dg.AssetKey, int], Any]
) -> bool:
    """Dagster's stale-cause rules (`CachingStaleStatusResolver`) for one shard's asset whose
    parents are the same shard of other assets, read from the latest records."""
    from dagster._core.definitions.data_version import (
        DEFAULT_DATA_VERSION,
        NULL_DATA_VERSION,
        extract_data_provenance_from_entry,
        extract_data_version_from_entry,
    )

    record = latest.get(node.key)
    if record is None:
        return False  # missing
    provenance = extract_data_provenance_from_entry(record.event_log_entry)
    parents = set(node.parent_keys)
    if provenance is None:
        # Recorded before data versions: a parent materialised later makes it stale.
        return all(p in latest and latest[p].timestamp <= record.timestamp for p in sorted(parents))
    if node.code_version and node.code_version != provenance.code_version:
        return False
    if set(provenance.input_data_versions) - parents:
        return False  # a dependency was removed
    for parent in parents:
        if not provenance.has_input_asset(parent):
            return False  # a new dependency
        cursor = provenance.input_storage_ids.get(parent)
        newest = latest.get(parent)
        # As Dagster: an input is updated when its newest record has another data version than
        # the record that was read (no record read recorded: not updated).
        if cursor is None or newest is None or newest.storage_id <= cursor:
            continue
        was = read(parent, cursor)
        before = extract_data_version_from_entry(was.event_log_entry) if was else None
        now = extract_data_version_from_entry(newest.event_log_entry)
        if not (before == DEFAULT_DATA_VERSION and now == NULL_DATA_VERSION) and before != now:
            return False
    return True


def stale_assets(
    instance: dg.DagsterInstance,
    assets: Sequence[dg.AssetsDefinition | dg.AssetChecksDefinition],
    partition_key: str,
) -> list[dg.AssetKey]:
    """The assets of one shard that must run again, in dependency order: missing, or stale as
    the Dagster UI marks them (the code version differs from the one recorded at the last
    materialisation, or an input has a new data version since), and everything downstream."""
    return stale_by_shard(instance, assets, [partition_key])[partition_key]


def stale_by_shard(
    instance: dg.DagsterInstance,
    assets: Sequence[dg.AssetsDefinition | dg.AssetChecksDefinition],
    partition_keys: Sequence[str],
) -> dict[str, list[dg.AssetKey]]:
    """`stale_assets` of each shard.

    For the project's graph (every asset partitioned by shard, one to one) the latest records
    of up to `SHARDS_PER_QUERY` shards are fetched at once and Dagster's rules applied to them;
    any other graph goes through Dagster's own resolver, which asks the event log several times
    per asset and shard.
    """
    from dagster._core.definitions.assets.graph.asset_graph import AssetGraph

    graph = AssetGraph.from_assets([a for a in assets if isinstance(a, dg.AssetsDefinition)])
    if not _one_partition_per_run(graph):
        return {p: _stale_by_resolver(instance, graph, p) for p in partition_keys}
    out: dict[str, list[dg.AssetKey]] = {}
    for i in range(0, len(partition_keys), SHARDS_PER_QUERY):
        chunk = list(partition_keys[i : i + SHARDS_PER_QUERY])
        latest, seen = _shard_records(instance, chunk, graph.get_all_asset_keys())
        for partition_key in chunk:
            out[partition_key] = _stale_in_shard(instance, graph, partition_key, latest, seen)
    return out


def _stale_in_shard(instance, graph, partition_key: str, latest, seen) -> list[dg.AssetKey]:
    def read(key: dg.AssetKey, storage_id: int):
        """The record of `key` an asset read (its latest at or before `storage_id`)."""
        record = seen.get(storage_id)
        if record is not None and record.asset_key == key:
            return record
        # Older than the records fetched (a long history): asked for alone.
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=key, asset_partitions=[partition_key], before_storage_id=storage_id + 1
            ),
            limit=1,
        ).records
        return records[0] if records else None

    stale: set[dg.AssetKey] = set()
    for key in graph.toposorted_asset_keys:
        node = graph.get(key)
        # Dagster marks only the asset whose code or input changed; what reads it becomes stale
        # once it is materialised again, so it is part of the work now.
        if stale & set(node.parent_keys) or not _is_fresh(node, latest[partition_key], read):
            stale.add(key)
    return [key for key in graph.toposorted_asset_keys if key in stale]


def _stale_by_resolver(
    instance: dg.DagsterInstance, graph, partition_key: str
) -> list[dg.AssetKey]:
    """`stale_assets` through Dagster's resolver (the one the UI uses), for any graph."""
    # Dagster has no public call for this yet; the UI and sensors' stale_assets_only use this
    # resolver.
    from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
    from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
    from dagster._time import get_current_datetime

    view = AssetGraphView(
        temporal_context=TemporalContext(effective_dt=get_current_datetime(), last_event_id=None),
        instance=instance,
        asset_graph=graph,
    )
    resolver = CachingStaleStatusResolver(
        instance=instance, asset_graph=graph, loading_context=view
    )
    stale: set[dg.AssetKey] = set()
    for key in graph.toposorted_asset_keys:
        node = graph.get(key)
        if not node.is_materializable:
            continue
        if stale & set(node.parent_keys) or resolver.get_status(key, partition_key) != (
            StaleStatus.FRESH
        ):
            stale.add(key)
    return [key for key in graph.toposorted_asset_keys if key in stale]
