"""Publishers: one commit per shard to a Hugging Face Hub dataset repo, or the same layout on disk.

Their one config field is the `publish:` section itself (`PublishSettings`), as codeio.yaml
validated it; `publisher_from_settings` picks the implementation `settings.target` names. The
interface and the local folder are here, the Hub in `hub.py`; both write the files `layout.py`
lays out for a shard.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import dagster as dg
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, model_validator

from codeio_dagster import storage
from codeio_dagster.publish.card import CardInfo, CardStatic
from codeio_dagster.publish.layout import GITATTRIBUTES, shard_files, usable_tables
from codeio_dagster.publish.sections import PublishSection
from codeio_dagster.publish.settings import PublishSettings

# Hidden, so `datasets` and the card's data_files patterns never see it. It is left in place:
# removing it while another process waits on it would let a third one lock a new file.
_LOCK_NAME = ".publish.lock"


class PublishError(RuntimeError):
    """Publishing a shard failed; the message never contains a token."""


class PublishResult(BaseModel):
    """Where a shard went: the repo or folder, the commit, the files and the rows per config."""

    model_config = ConfigDict(extra="forbid")

    target: str
    location: str
    revision: str | None = None
    files: list[str]
    rows: dict[str, int]
    url: str | None = None
    attempts: int = 1


class PublisherResource(dg.ConfigurableResource):
    """Publishes one shard's tables plus an updated dataset card; implementations pick the target.

    Its one config field is the `publish:` section; `settings.target` must name this class's.
    """

    # The target this implementation serves (not configuration: the class is the choice).
    target: ClassVar[str]

    settings: PublishSettings = Field(
        default_factory=PublishSettings, description="The publish: section of codeio.yaml."
    )

    @model_validator(mode="after")
    def _target_matches(self) -> PublisherResource:
        if self.settings.target != self.target:
            raise ValueError(
                f"{type(self).__name__} publishes to target {self.target!r}, but "
                f"settings.target is {self.settings.target!r}: use publisher_from_settings"
            )
        return self

    def static_card(self) -> CardStatic:
        s = self.settings
        return CardStatic(license=s.license, pretty_name=s.pretty_name, tags=s.tags)

    def publish_partition(
        self, shard: str, tables: dict[str, pl.DataFrame], info: CardInfo
    ) -> PublishResult:
        raise NotImplementedError(f"{type(self).__name__} does not implement publish_partition")


class LocalFolderPublisher(PublisherResource):
    """Writes the Hub repo's layout into a folder; `datasets.load_dataset(folder, cfg)` reads it.

    `settings.local_dir` may also be an object-storage URL (`s3://bucket/prefix/published`): every file is
    then one PUT and the lock a lease object (`codeio_dagster.storage`).
    """

    target: ClassVar[str] = "local"

    def static_card(self) -> CardStatic:
        root = str(storage.location(self.settings.local_dir))
        return super().static_card().model_copy(update={"repo_id": root})

    def publish_partition(
        self, shard: str, tables: dict[str, pl.DataFrame], info: CardInfo
    ) -> PublishResult:
        root = storage.location(self.settings.local_dir)
        # Shards are published by parallel runs; without the lock two of them read the same
        # summary and the later write drops the other's shard from the totals and the card.
        with storage.exclusive(root / _LOCK_NAME):
            files, stale = shard_files(
                shard, tables, info, self.static_card(), lambda rel: _read_file(root / rel)
            )
            # Data first, records and card last, each replaced atomically: a crash midway
            # leaves a card that only counts files already complete.
            order = list(files)
            for rel in order:
                _write_atomic(root / rel, files[rel])
            for rel in stale:
                storage.delete(root / rel)
            storage.write_bytes(root / ".gitattributes", GITATTRIBUTES, if_absent=True)
        return PublishResult(
            target="local",
            location=str(root),
            files=order,
            rows={name: frame.height for name, frame in usable_tables(tables).items()},
            url=root.resolve().as_uri() if isinstance(root, Path) else str(root),
        )


def _read_file(path: storage.Location) -> bytes | None:
    try:
        return storage.read_bytes(path)
    except FileNotFoundError:
        return None


def _write_atomic(path: storage.Location, data: bytes) -> None:
    storage.write_bytes(path, data)


def publisher_from_settings(
    settings: PublishSection, token: str | dg.EnvVar | None = None
) -> PublisherResource:
    """The publisher for `settings.target`, configured with the whole section; pass
    `token=dg.EnvVar("HF_TOKEN")` for the Hub (a local folder needs none and keeps none)."""
    settings = PublishSettings.of(settings)
    if settings.target == "hub":
        from codeio_dagster.publish.hub import HubPublisher  # hub.py builds on this module

        return HubPublisher(settings=settings, token=token)
    return LocalFolderPublisher(settings=settings)
