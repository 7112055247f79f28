"""Stores each asset partition as one Parquet file written with polars."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import dagster as dg
import polars as pl

from codeio_dagster.shards import write_parquet_atomic


def stage_tables_dir(data_dir: str | Path) -> Path:
    """Where the stage tables of a config's `data_dir` live (the IO manager's base_dir)."""
    return Path(data_dir) / "assets"


def partition_path(base_dir: str | Path, asset: str | Sequence[str], partition: str) -> Path:
    """`<base_dir>/<asset key>/<partition>.parquet`: the one place that knows the layout."""
    key = [asset] if isinstance(asset, str) else list(asset)
    return Path(base_dir).joinpath(*key) / f"{partition}.parquet"


class PolarsParquetIOManager(dg.ConfigurableIOManager):
    """`<base_dir>/<asset key>/<partition>.parquet`; written to a temp name, then renamed."""

    base_dir: str

    def _path(self, context: dg.OutputContext | dg.InputContext) -> Path:
        partition = context.asset_partition_key if context.has_asset_partitions else "all"
        return partition_path(self.base_dir, context.asset_key.path, partition)

    def handle_output(self, context: dg.OutputContext, obj: pl.DataFrame | None) -> None:
        if obj is None:
            return
        path = self._path(context)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_parquet_atomic(obj, path)
        context.add_output_metadata({"path": dg.MetadataValue.path(str(path))})

    def load_input(self, context: dg.InputContext) -> pl.DataFrame:
        path = self._path(context)
        if not path.exists():
            raise FileNotFoundError(
                f"{'/'.join(context.asset_key.path)} has no stored partition at {path}; "
                "materialise it first"
            )
        return pl.read_parquet(path)
