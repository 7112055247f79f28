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
        from codeio_dagster.llm import EMBEDDED_MODEL_ALIAS
        from codeio_dagster.publish import CardInfo
        from codeio_dagster.refactor import template_hash
        from codeio_dagster.tasks import prompt_hashes

        stages = config.stages.model_dump()
        default = EMBEDDED_MODEL_ALIAS if config.llm.base_url is None else "unset"
        models = {stage: params.get("model") or default for stage, params in stages.items()}
        names = ["raw_code", "unified_functions", "io_pairs", "prediction_tasks", "verdicts"]
        names += [f"verdicts_turn_{t}" for t in range(1, config.revision.turns + 1)]
        stored = load_tables(config.data_dir / "assets", [context.partition_key], names)
        base = CardInfo(
            models=models,
            sampling=stages,
            prompt_template_hashes={"refactor": template_hash(), **prompt_hashes()},
            funnel=compute_funnel(
                {
                    **stored,
                    "codeio_dataset": tables.get("codeio"),
                    "codeio_pp_dataset": tables.get("codeio_pp"),
                },
                config.revision.turns,
            ),
        )
        return card_info_for(context, tables, base)

    return provide
