"""Stores each asset partition as one Parquet file written with polars, locally or on S3."""

from __future__ import annotations

import dagster as dg
import polars as pl

from codeio_dagster import storage

# The layout lives with the storage layer, which reading it (`codeio demo`'s report) can import
# without Dagster; imported here too, where the IO manager's users look for it.
from codeio_dagster.storage import Location, partition_path, stage_tables_dir

__all__ = ["PolarsParquetIOManager", "partition_path", "stage_tables_dir"]


class PolarsParquetIOManager(dg.ConfigurableIOManager):
    """`<base_dir>/<asset key>/<partition>.parquet`; each write atomic (rename or one PUT).

    `base_dir` is a folder or an object-storage URL (`s3://bucket/prefix/assets`).
    """

    base_dir: str

    def _path(self, context: dg.OutputContext | dg.InputContext) -> Location:
        partition = context.asset_partition_key if context.has_asset_partitions else "all"
        return partition_path(self.base_dir, context.asset_key.path, partition)

    def handle_output(self, context: dg.OutputContext, obj: pl.DataFrame | None) -> None:
        if obj is None:
            return
        path = self._path(context)
        storage.write_parquet(obj, path)
        shown = dg.MetadataValue.path(str(path))
        if isinstance(path, storage.ObjectPath):
            shown = dg.MetadataValue.url(str(path))
        context.add_output_metadata({"path": shown})

    def load_input(self, context: dg.InputContext) -> pl.DataFrame:
        path = self._path(context)
        if not storage.exists(path):
            raise FileNotFoundError(
                f"{'/'.join(context.asset_key.path)} has no stored partition at {path}; "
                "materialise it first"
            )
        return storage.read_parquet(path)
