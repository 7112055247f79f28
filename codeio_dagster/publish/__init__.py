"""Publishing finished shards to the Hugging Face Hub (or a folder laid out like it) and pulling."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# Names resolve on first use (PEP 562), so `codeio pull`, which imports publish.cli, does not
# pay for Dagster, which the publishers need and the pull does not.
_EXPORTS = {
    "CardInfo": "codeio_dagster.publish.card",
    "HubPublisher": "codeio_dagster.publish.hub",
    "LocalFolderPublisher": "codeio_dagster.publish.resources",
    "PublishError": "codeio_dagster.publish.resources",
    "PublishResult": "codeio_dagster.publish.resources",
    "PublisherResource": "codeio_dagster.publish.resources",
    "PublishSettings": "codeio_dagster.publish.settings",
    "publisher_from_settings": "codeio_dagster.publish.resources",
}

if TYPE_CHECKING:
    from codeio_dagster.publish.card import CardInfo
    from codeio_dagster.publish.hub import HubPublisher
    from codeio_dagster.publish.resources import (
        LocalFolderPublisher,
        PublisherResource,
        PublishError,
        PublishResult,
        publisher_from_settings,
    )
    from codeio_dagster.publish.settings import PublishSettings

__all__ = [
    "CardInfo",
    "HubPublisher",
    "LocalFolderPublisher",
    "PublishError",
    "PublishResult",
    "PublishSettings",
    "PublisherResource",
    "publisher_from_settings",
]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
