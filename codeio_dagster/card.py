"""What the dataset card says about how a shard was made: models, sampling, prompts, funnel."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import polars as pl

from codeio_dagster.config import CodeioConfig


def card_info_provider(config: CodeioConfig, config_path: str) -> Callable:
    """A provider for `build_hub_publication`: the config's stages and the shard's stage tables."""

    def provide(context, tables: Mapping[str, pl.DataFrame]):
        from codeio_dagster.assets.hub_publication import card_info_for
        from codeio_dagster.funnel import compute_funnel, load_tables
        from codeio_dagster.io_manager import stage_tables_dir
        from codeio_dagster.llm import embedded_model_id
        from codeio_dagster.plugins import task_kinds
        from codeio_dagster.publish import CardInfo
        from codeio_dagster.tasks import prompt_hashes
        from codeio_dagster.turns import verdicts_name

        stages = config.stages.model_dump()
        # The embedded model is named with its weights hash, as in the request cache.
        default = embedded_model_id() if config.llm.base_url is None else "unset"
        models = {stage: params.get("model") or default for stage, params in stages.items()}
        names = ["raw_code", "unified_functions", "io_pairs", "prediction_tasks", "verdicts"]
        names += [verdicts_name(t) for t in range(1, config.revision.turns + 1)]
        # The card names the kinds this config runs (plugins included), not a fixed pair.
        kinds = task_kinds(config.tasks.kinds, config.tasks.plugin_modules).values()
        stored = load_tables(stage_tables_dir(config.data_dir), [context.partition_key], names)
        funnel = compute_funnel(
            {
                **stored,
                "codeio_dataset": tables.get("codeio"),
                "codeio_pp_dataset": tables.get("codeio_pp"),
            },
            config.revision.turns,
        )
        if not config.revision.turns:
            # Nothing was revised and no CodeI/O++ built: a zero here would read as a result.
            del funnel["correct_after_revision"], funnel["codeio_pp_rows"]
        base = CardInfo(
            models=models,
            sampling=stages,
            prompt_template_hashes=prompt_hashes(type(kind) for kind in kinds),
            funnel=funnel,
        )
        return card_info_for(context, tables, base)

    return provide
