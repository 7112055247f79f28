"""The last asset: each shard's datasets go to the Hub (or a local folder) in one commit."""

# No `from __future__ import annotations`: Dagster reads the asset's type hints at definition.

from collections.abc import Callable, Mapping, Sequence

import dagster as dg
import polars as pl

from codeio_dagster.partitions import shards
from codeio_dagster.publish.card import CardInfo
from codeio_dagster.publish.resources import PublisherResource, PublishResult

CardInfoProvider = Callable[[dg.AssetExecutionContext, Mapping[str, pl.DataFrame]], CardInfo]


def project_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("codeio-dagster")
    except PackageNotFoundError:
        return "unknown"


def card_info_for(
    context: dg.AssetExecutionContext | None,
    tables: Mapping[str, pl.DataFrame],
    base: CardInfo | None = None,
) -> CardInfo:
    """The card facts for this shard: `base` (models, sampling, hashes) plus a row-count funnel."""
    funnel = dict(base.funnel) if base else {}
    for name, frame in tables.items():
        funnel.setdefault(f"{name}_rows", frame.height)
    update = {"funnel": funnel}
    if base is None or base.project_version == "unknown":
        update["project_version"] = project_version()
    return (base or CardInfo()).model_copy(update=update)


def publication_metadata(result: PublishResult) -> dict[str, dg.MetadataValue]:
    """What the Dagster UI shows for one publication."""
    meta: dict[str, dg.MetadataValue] = {
        "target": dg.MetadataValue.text(result.target),
        "location": dg.MetadataValue.text(result.location),
        "files": dg.MetadataValue.json(result.files),
        "attempts": dg.MetadataValue.int(result.attempts),
    }
    if result.revision:
        meta["revision"] = dg.MetadataValue.text(result.revision)
    if result.url:
        meta["url"] = dg.MetadataValue.url(result.url)
    for name, rows in result.rows.items():
        meta[f"rows/{name}"] = dg.MetadataValue.int(rows)
    return meta


DATASETS = ("codeio_dataset", "codeio_pp_dataset", "unified_dataset")


def config_name(dataset: str) -> str:
    """The Hub config a dataset asset is published as: codeio_pp_dataset -> codeio_pp."""
    return dataset.removesuffix("_dataset")


def build_hub_publication(
    provider: CardInfoProvider | None = None, datasets: Sequence[str] = DATASETS
) -> dg.AssetsDefinition:
    """The publication asset of the dataset assets `datasets` (the ones the graph builds);
    `provider` supplies card facts (defaults to `card_info_for`)."""
    ins = {config_name(d): dg.AssetIn(d) for d in datasets}
    configs = list(ins)

    @dg.asset(
        name="hub_publication",
        partitions_def=shards,
        group_name="publish",
        kinds={"huggingface"},
        ins=ins,
        description=f"Publishes the shard's {', '.join(configs)} tables in one commit.",
    )
    def hub_publication(
        context: dg.AssetExecutionContext,
        publisher: PublisherResource,
        **frames: pl.DataFrame,
    ) -> dg.MaterializeResult:
        tables = {config: frames[config] for config in configs}
        info = provider(context, tables) if provider else card_info_for(context, tables)
        result = publisher.publish_partition(context.partition_key, tables, info)
        context.log.info(
            f"published shard {context.partition_key} to {result.location}"
            + (f" at {result.revision}" if result.revision else "")
        )
        return dg.MaterializeResult(metadata=publication_metadata(result))

    return hub_publication
