"""What the dataset card says about how a shard was made: models, sampling, prompts, funnel."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import polars as pl

from codeio_dagster.config import CodeioConfig


def card_facts(
    config: CodeioConfig,
    reports: Mapping[str, Mapping[str, Any]],
    tables: Mapping[str, pl.DataFrame],
):
    """The card's facts for one shard, all in one place: the models and sampling the config
    ran, the prompt hashes of its task kinds, and the funnel as the stages reported it
    (`reports`: stage -> materialisation metadata)."""
    from codeio_dagster.assets.hub_publication import card_info_for
    from codeio_dagster.funnel import compute_funnel
    from codeio_dagster.llm import embedded_model_id
    from codeio_dagster.plugins import task_kinds
    from codeio_dagster.publish import CardInfo
    from codeio_dagster.tasks import prompt_hashes

    stages = config.stages.model_dump()
    # The embedded model is named with its weights hash, as in the request cache.
    default = embedded_model_id() if config.llm.base_url is None else "unset"
    models = {stage: params.get("model") or default for stage, params in stages.items()}
    # The card names the kinds this config runs (plugins included), not a fixed pair.
    kinds = task_kinds(config.tasks.kinds, config.tasks.plugin_modules).values()
    base = CardInfo(
        models=models,
        sampling=stages,
        prompt_template_hashes=prompt_hashes(type(kind) for kind in kinds),
        funnel=compute_funnel(reports, config.revision.turns),
    )
    return card_info_for(None, tables, base)


def card_info_provider(config: CodeioConfig, config_path: str) -> Callable:
    """A provider for `build_hub_publication`: the card facts from the stages' reports of the
    shard being published, read from the Dagster instance."""

    def provide(context, tables: Mapping[str, pl.DataFrame]):
        from codeio_dagster.funnel import funnel_stages, stage_reports

        stages = funnel_stages(config.revision.turns)
        reports = stage_reports(context.instance, stages, context.partition_key)
        return card_facts(config, reports, tables)

    return provide
