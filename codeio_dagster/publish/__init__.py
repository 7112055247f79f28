"""Publishing finished shards to the Hugging Face Hub (or a folder laid out like it) and pulling."""

from codeio_dagster.publish.card import CardInfo
from codeio_dagster.publish.resources import (
    HubPublisher,
    LocalFolderPublisher,
    PublisherResource,
    PublishError,
    PublishResult,
)
from codeio_dagster.publish.settings import PublishSettings, publisher_from_settings

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
