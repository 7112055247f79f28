"""The code location: assets (their checks run inside them), sensors and resources, from codeio.yaml."""

import os

import dagster as dg

from codeio_dagster.assets import build_assets
from codeio_dagster.config import CONFIG_ENV, DEFAULT_CONFIG, load_config
from codeio_dagster.resources import build_resources
from codeio_dagster.sensors import build_sensors


@dg.definitions
def defs() -> dg.Definitions:
    # Absolute, as `codeio build` sets it: the path is part of the job's snapshot, and `make dev`
    # would otherwise show every run the build launched as made from another version of the job.
    config_path = os.path.abspath(os.environ.get(CONFIG_ENV, DEFAULT_CONFIG))
    config = load_config(config_path)
    assets = build_assets(config)
    return dg.Definitions(
        assets=assets,
        sensors=build_sensors(),
        jobs=[dg.define_asset_job("codeio_job", selection=dg.AssetSelection.all())],
        resources=build_resources(config, config_path),
        # A shard's stages run one after another, and shards already run in parallel as separate
        # runs; a process per step would only restart the model server and the jails each step.
        executor=dg.in_process_executor,
    )
