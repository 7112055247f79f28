"""Raw-code source plugins (entry-point group `codeio_dagster.sources`)."""

from codeio_dagster.sources.base import RawFile, Source, SourceOptions
from codeio_dagster.sources.files import FolderSource, JsonlSource, ParquetSource


def __getattr__(name: str):
    # The Hub source needs huggingface_hub; import it only when asked for.
    if name == "HubSource":
        from codeio_dagster.sources.hub import HubSource

        return HubSource
    raise AttributeError(name)


__all__ = ["FolderSource", "JsonlSource", "ParquetSource", "RawFile", "Source", "SourceOptions"]
