"""Publishers: one commit per shard to a Hugging Face Hub dataset repo, or the same layout on disk.

Their one config field is the `publish:` section itself (`PublishSettings`), as codeio.yaml
validated it; `publisher_from_settings` picks the implementation `settings.target` names.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import dagster as dg
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, model_validator

from codeio_dagster import storage
from codeio_dagster.hfhub import hub_endpoint
from codeio_dagster.publish.card import (
    LEGACY_INDEX_PATH,
    SUMMARY_PATH,
    CardInfo,
    CardStatic,
    data_path,
    dump_json,
    parquet_bytes,
    render_card,
    shard_record_path,
    shard_stats,
    summary_from_legacy,
    update_summary,
)
from codeio_dagster.publish.settings import PublishSettings

_SHARD_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_TOKEN_RE = re.compile(r"hf_[A-Za-z0-9]{8,}")
# Statuses a later attempt can fix: timeouts, conflicts with a concurrent commit, rate limits,
# server errors. Anything else 4xx (bad token, missing repo, invalid card) fails at once.
_RETRY_STATUSES = {408, 409, 412, 423, 429}
_GITATTRIBUTES = b"*.parquet filter=lfs diff=lfs merge=lfs -text\n"
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


def redact(text: str, token: str | None = None) -> str:
    """Text with the given token and anything shaped like a Hub token replaced."""
    if token:
        text = text.replace(token, "***")
    return _TOKEN_RE.sub("hf_***", text)


def check_shard(shard: str) -> str:
    if not isinstance(shard, str) or not _SHARD_RE.fullmatch(shard) or ".." in shard:
        raise ValueError(
            f"shard key {shard!r} cannot name a file: use letters, digits, '.', '_' or '-'"
        )
    return shard


def _usable_tables(tables: Mapping[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    out = {}
    for name, frame in tables.items():
        if not isinstance(frame, pl.DataFrame):
            raise TypeError(
                f"table {name!r} must be a polars DataFrame, got {type(frame).__name__}"
            )
        if not re.fullmatch(r"[a-z0-9_]+", name):
            raise ValueError(f"config name {name!r} must be lower-case letters, digits or '_'")
        # A frame without columns cannot be written as Parquet that `datasets` reads back.
        if frame.width:
            out[name] = frame
    return out


def shard_files(
    shard: str,
    tables: Mapping[str, pl.DataFrame],
    info: CardInfo,
    static: CardStatic,
    read: Callable[[str], bytes | None],
) -> tuple[dict[str, bytes], list[str]]:
    """The files one shard's commit writes (data, its stats record, the summary, the card) and
    the stale ones it deletes, in write order: data first, card last.

    `read(path)` returns a file of the repo as it is now (None when absent). Only the summary
    and this shard's previous record are read, so the cost does not depend on how many shards
    were published before; a repo with the single index of earlier versions is converted once.
    """
    check_shard(shard)
    usable = _usable_tables(tables)
    files = {data_path(name, shard): parquet_bytes(frame) for name, frame in usable.items()}
    summary_bytes = read(SUMMARY_PATH)
    summary, legacy = (json.loads(summary_bytes), {}) if summary_bytes else (None, {})
    if summary is None and (legacy_bytes := read(LEGACY_INDEX_PATH)) is not None:
        summary, legacy = summary_from_legacy(legacy_bytes.decode())
    if shard in legacy:
        old = legacy[shard]
    else:
        old_bytes = read(shard_record_path(shard))
        old = json.loads(old_bytes) if old_bytes else None
    record = shard_stats(shard, usable, info)
    summary = update_summary(summary, old, record)
    for name, rec in legacy.items():
        files.setdefault(shard_record_path(name), dump_json(rec))
    files[shard_record_path(shard)] = dump_json(record)
    files[SUMMARY_PATH] = dump_json(summary)
    files["README.md"] = render_card(static, info, summary, usable).encode()
    stale = sorted(set(old["files"].values()) - set(files)) if old else []
    if legacy:
        stale.append(LEGACY_INDEX_PATH)
    return files, stale


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

    `path` may also be an object-storage URL (`s3://bucket/prefix/published`): every file is
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
            storage.write_bytes(root / ".gitattributes", _GITATTRIBUTES, if_absent=True)
        return PublishResult(
            target="local",
            location=str(root),
            files=order,
            rows={name: frame.height for name, frame in _usable_tables(tables).items()},
            url=root.resolve().as_uri() if isinstance(root, Path) else str(root),
        )


def _read_file(path: storage.Location) -> bytes | None:
    try:
        return storage.read_bytes(path)
    except FileNotFoundError:
        return None


def _write_atomic(path: storage.Location, data: bytes) -> None:
    storage.write_bytes(path, data)


class HubPublisher(PublisherResource):
    """Commits each shard to a Hub dataset repo through the real `HfApi` (any endpoint)."""

    target: ClassVar[str] = "hub"

    token: str | None = Field(default=None, repr=False, description="Set from dg.EnvVar.")

    @property
    def repo_id(self) -> str:
        assert self.settings.repo_id is not None  # PublishSettings requires it for the hub
        return self.settings.repo_id

    def resolved_endpoint(self) -> str:
        return hub_endpoint(self.settings.endpoint)

    def static_card(self) -> CardStatic:
        return super().static_card().model_copy(update={"repo_id": self.repo_id})

    def api(self):
        from huggingface_hub import HfApi

        return HfApi(endpoint=self.resolved_endpoint(), token=self.token or None)

    def publish_partition(
        self, shard: str, tables: dict[str, pl.DataFrame], info: CardInfo
    ) -> PublishResult:
        check_shard(shard)
        _usable_tables(tables)
        api = self.api()
        last: str = ""
        for attempt in range(1, self.settings.max_attempts + 1):
            try:
                result = self._publish_once(api, shard, tables, info)
                return result.model_copy(update={"attempts": attempt})
            except Exception as exc:
                last = redact(f"{type(exc).__name__}: {exc}", self.token)
                if not _retryable(exc, last) or attempt == self.settings.max_attempts:
                    raise PublishError(
                        f"publishing shard {shard!r} to dataset {self.repo_id} at "
                        f"{self.resolved_endpoint()} failed after {attempt} attempt(s); the repo "
                        f"is left at its last good commit. Last error: {last}{_hint(last)}"
                    ) from None
                time.sleep(self.settings.retry_base_seconds * 2 ** (attempt - 1))
        raise AssertionError("unreachable")

    def _head(self, api) -> str:
        """The commit the revision points at, found through the summary file's metadata (one
        request whatever the repo holds); a repo without a summary yet asks for its info."""
        from huggingface_hub import hf_hub_url
        from huggingface_hub.errors import RemoteEntryNotFoundError

        url = hf_hub_url(
            self.repo_id,
            SUMMARY_PATH,
            repo_type="dataset",
            revision=self.settings.revision,
            endpoint=self.resolved_endpoint(),
        )
        try:
            commit = api.get_hf_file_metadata(url=url).commit_hash
        except RemoteEntryNotFoundError:
            commit = None
        return (
            commit
            or api.repo_info(self.repo_id, repo_type="dataset", revision=self.settings.revision).sha
        )

    def _publish_once(
        self, api, shard: str, tables: dict[str, pl.DataFrame], info: CardInfo
    ) -> PublishResult:
        from huggingface_hub import CommitOperationAdd, CommitOperationDelete
        from huggingface_hub.errors import RemoteEntryNotFoundError

        api.create_repo(
            self.repo_id, repo_type="dataset", private=self.settings.private, exist_ok=True
        )
        parent = self._head(api)
        with tempfile.TemporaryDirectory() as tmp:

            def read(path: str) -> bytes | None:
                try:
                    local = api.hf_hub_download(
                        self.repo_id, path, repo_type="dataset", revision=parent, local_dir=tmp
                    )
                except RemoteEntryNotFoundError:
                    return None
                return Path(local).read_bytes()

            files, stale = shard_files(shard, tables, info, self.static_card(), read)
        operations: list[Any] = [
            CommitOperationAdd(path_in_repo=path, path_or_fileobj=data)
            for path, data in files.items()
        ]
        operations += [CommitOperationDelete(path_in_repo=path) for path in stale]
        # parent_commit makes the server refuse the commit if someone else committed since we
        # read the summary, so concurrent shards never overwrite each other's totals.
        commit = api.create_commit(
            self.repo_id,
            operations,
            commit_message=f"Publish shard {shard}",
            commit_description=f"codeio-dagster {info.project_version}",
            repo_type="dataset",
            revision=self.settings.revision,
            parent_commit=parent,
        )
        return PublishResult(
            target="hub",
            location=self.repo_id,
            revision=commit.oid,
            files=sorted(files),
            rows={name: frame.height for name, frame in _usable_tables(tables).items()},
            url=f"{self.resolved_endpoint()}/datasets/{self.repo_id}/tree/{commit.oid}",
        )


def _hint(message: str) -> str:
    if "xet-write-token" in message:
        return (
            ". This endpoint does not accept Xet uploads: start the process with "
            "HF_HUB_DISABLE_XET=1 (huggingface_hub reads it at import)"
        )
    return ""


def _retryable(exc: Exception, message: str) -> bool:
    from huggingface_hub.errors import HfHubHTTPError

    if "xet-write-token" in message and "501" in message:
        return False
    if isinstance(exc, HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else 500
        return status >= 500 or status in _RETRY_STATUSES
    # A ValueError is the client refusing our input (e.g. an invalid card); retrying won't help.
    return not isinstance(exc, ValueError | TypeError)


def publisher_from_settings(
    settings: PublishSettings, token: str | dg.EnvVar | None = None
) -> PublisherResource:
    """The publisher for `settings.target`, configured with the whole section; pass
    `token=dg.EnvVar("HF_TOKEN")` for the Hub (a local folder needs none and keeps none)."""
    if settings.target == "hub":
        return HubPublisher(settings=settings, token=token)
    return LocalFolderPublisher(settings=settings)
