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

import functools
import hashlib
import importlib.util
import io
import json
import re
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

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
_PACKAGES = (
    "codeio_dagster",
    "codeio_dagster.assets",
    "codeio_dagster.sensors",
    "codeio_dagster.sandbox",
)
_SOURCE_SUFFIXES = {".py", ".md", ".sh"}


@functools.cache
def source_digest() -> str:
    """sha256 of every module, prompt and script of the project's packages (path and bytes)."""
    files: dict[str, Path] = {}
    for package in _PACKAGES:
        spec = importlib.util.find_spec(package)
        for location in (spec.submodule_search_locations or []) if spec else []:
            root = Path(location)
            for path in root.rglob("*"):
                if path.suffix in _SOURCE_SUFFIXES and "__pycache__" not in path.parts:
                    files[f"{package}/{path.relative_to(root).as_posix()}"] = path
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + files[name].read_bytes() + b"\0")
    return digest.hexdigest()


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


def stale_assets(
    instance: dg.DagsterInstance,
    assets: Sequence[dg.AssetsDefinition | dg.AssetChecksDefinition],
    partition_key: str,
) -> list[dg.AssetKey]:
    """The assets of one shard that must run again, in dependency order: missing, or stale as
    the Dagster UI marks them (the code version differs from the one recorded at the last
    materialisation, or an input has a new data version since), and everything downstream.
    """
    # Dagster has no public call for this yet; the UI and sensors' stale_assets_only use this
    # resolver, so the CLI and the UI agree on what is stale.
    from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
    from dagster._core.definitions.assets.graph.asset_graph import AssetGraph
    from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
    from dagster._time import get_current_datetime

    graph = AssetGraph.from_assets([a for a in assets if isinstance(a, dg.AssetsDefinition)])
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
        # Dagster marks only the asset whose code or input changed; what reads it becomes stale
        # once it is materialised again, so it is part of the work now.
        if stale & set(node.parent_keys) or resolver.get_status(key, partition_key) != (
            StaleStatus.FRESH
        ):
            stale.add(key)
    return [key for key in graph.toposorted_asset_keys if key in stale]
