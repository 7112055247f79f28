"""The CodeI/O asset graph, one stage per module; revision turns come from the config."""

from __future__ import annotations

from typing import TYPE_CHECKING

import dagster as dg

if TYPE_CHECKING:
    from codeio_dagster.config import CodeioConfig


def build_assets(config: CodeioConfig, config_path: str = "") -> list[dg.AssetsDefinition]:
    from codeio_dagster.assets.codeio_datasets import build_codeio_datasets
    from codeio_dagster.assets.hub_publication import build_hub_publication
    from codeio_dagster.assets.io_pairs import io_pairs
    from codeio_dagster.assets.prediction_tasks import prediction_tasks
    from codeio_dagster.assets.raw_code import raw_code
    from codeio_dagster.assets.responses import build_revision_responses, responses
    from codeio_dagster.assets.unified_dataset import unified_dataset
    from codeio_dagster.assets.unified_functions import unified_functions
    from codeio_dagster.assets.verdicts import build_verdicts
    from codeio_dagster.card import card_info_provider
    from codeio_dagster.versions import with_code_versions

    turns = config.revision.turns
    graph = [raw_code, unified_functions, io_pairs, prediction_tasks, responses, build_verdicts(0)]
    for turn in range(1, turns + 1):
        graph += [build_revision_responses(turn), build_verdicts(turn)]
    datasets = [*build_codeio_datasets(turns), unified_dataset]
    hub = build_hub_publication(
        provider=card_info_provider(config, config_path),
        datasets=[d.key.to_user_string() for d in datasets],
    )
    return with_code_versions(config, graph + datasets + [hub])
