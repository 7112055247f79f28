"""Raw-code source plugins (entry-point group `codeio_dagster.sources`)."""

from codeio_dagster.sources.base import RawFile, Source, SourceOptions
from codeio_dagster.sources.files import FolderSource, JsonlSource, ParquetSource


def __getattr__(name: str):
    # The Hub sources need huggingface_hub; import them only when asked for.
    if name == "HubSource":
        from codeio_dagster.sources.hub import HubSource

        return HubSource
    if name in ("UnifiedSource", "UnifiedHubSource"):
        from codeio_dagster.sources import unified

        return getattr(unified, name)
    raise AttributeError(name)


__all__ = [
    "FolderSource",
    "JsonlSource",
    "ParquetSource",
    "RawFile",
    "Source",
    "SourceOptions",
    "UnifiedHubSource",
    "UnifiedSource",
]


def build_source(config, *, plugin_modules: list[str] = ()) -> Source:
    """A source plugin instance from a `sources:` entry, options validated by the plugin."""
    from pydantic import ValidationError

    from codeio_dagster.plugins import sources_registry

    registry = sources_registry()
    for module in plugin_modules:
        registry.load_module(module)
    cls = registry.get(config.kind)
    try:
        options = cls.Options.model_validate(config.options)
    except ValidationError as err:
        problems = "; ".join(
            f"sources[{config.name}].options.{'.'.join(map(str, e['loc']))} = "
            f"{e.get('input')!r}: {e['msg']}"
            for e in err.errors()
        )
        raise ValueError(problems) from None
    return cls(options)
