"""Publishers: one commit per shard to a Hugging Face Hub dataset repo, or the same layout on disk."""

from __future__ import annotations

import fcntl
import os
import re
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from codeio_dagster.publish.card import (
    STATS_PATH,
    CardInfo,
    CardStatic,
    data_path,
    dump_stats,
    merge_stats,
    parquet_bytes,
    render_card,
    shard_stats,
)

DEFAULT_ENDPOINT = "https://huggingface.co"
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
    stats_text: str | None,
    existing: set[str],
) -> tuple[dict[str, bytes], list[str]]:
    """The files one shard's commit adds (data, stats index, card) and the stale ones it deletes."""
    check_shard(shard)
    usable = _usable_tables(tables)
    files = {data_path(name, shard): parquet_bytes(frame) for name, frame in usable.items()}
    index = merge_stats(stats_text, shard_stats(shard, usable, info))
    files[STATS_PATH] = dump_stats(index)
    files["README.md"] = render_card(static, info, index, usable).encode()
    stale = sorted(
        path
        for path in existing
        if re.fullmatch(rf"data/[^/]+/{re.escape(shard)}\.parquet", path) and path not in files
    )
    return files, stale


class PublisherResource(dg.ConfigurableResource):
    """Publishes one shard's tables plus an updated dataset card; implementations pick the target."""

    license: str = "apache-2.0"
    pretty_name: str = "CodeI/O reasoning data"
    tags: list[str] = Field(default_factory=list)

    def static_card(self) -> CardStatic:
        return CardStatic(license=self.license, pretty_name=self.pretty_name, tags=self.tags)

    def publish_partition(
        self, shard: str, tables: dict[str, pl.DataFrame], info: CardInfo
    ) -> PublishResult:
        raise NotImplementedError(f"{type(self).__name__} does not implement publish_partition")


class LocalFolderPublisher(PublisherResource):
    """Writes the Hub repo's layout into a folder; `datasets.load_dataset(folder, cfg)` reads it."""

    path: str

    def static_card(self) -> CardStatic:
        return super().static_card().model_copy(update={"repo_id": str(Path(self.path))})

    def publish_partition(
        self, shard: str, tables: dict[str, pl.DataFrame], info: CardInfo
    ) -> PublishResult:
        root = Path(self.path)
        root.mkdir(parents=True, exist_ok=True)
        stats = root / STATS_PATH
        # Shards are published by parallel runs; without the lock two of them read the same
        # stats index and the later write drops the other's record from the index and card.
        with open(root / _LOCK_NAME, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            existing = {p.relative_to(root).as_posix() for p in root.glob("data/*/*.parquet")}
            files, stale = shard_files(
                shard,
                tables,
                info,
                self.static_card(),
                stats.read_text() if stats.exists() else None,
                existing,
            )
            # Data first, index and card last, each replaced atomically: a crash midway leaves
            # a card that only names files already complete.
            order = sorted(files, key=lambda p: (p == "README.md", p == STATS_PATH, p))
            for rel in order:
                _write_atomic(root / rel, files[rel])
            for rel in stale:
                (root / rel).unlink(missing_ok=True)
            if not (root / ".gitattributes").exists():
                _write_atomic(root / ".gitattributes", _GITATTRIBUTES)
        return PublishResult(
            target="local",
            location=str(root),
            files=order,
            rows={name: frame.height for name, frame in _usable_tables(tables).items()},
            url=root.resolve().as_uri(),
        )


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class HubPublisher(PublisherResource):
    """Commits each shard to a Hub dataset repo through the real `HfApi` (any endpoint)."""

    repo_id: str
    endpoint: str | None = Field(
        default=None, description="Hub URL; HF_ENDPOINT or huggingface.co when unset."
    )
    token: str | None = Field(default=None, repr=False, description="Set from dg.EnvVar.")
    private: bool = False
    revision: str = "main"
    max_attempts: int = 4
    retry_base_seconds: float = 2.0

    def resolved_endpoint(self) -> str:
        # Read at call time: huggingface_hub reads HF_ENDPOINT once, at its import.
        return (self.endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")

    def static_card(self) -> CardStatic:
        return super().static_card().model_copy(update={"repo_id": self.repo_id})

    def api(self):
        from huggingface_hub import HfApi

        return HfApi(endpoint=self.resolved_endpoint(), token=self.token or None)

    def publish_partition(
        self, shard: str, tables: dict[str, pl.DataFrame], info: CardInfo
    ) -> PublishResult:
        check_shard(shard)
        _check_repo_id(self.repo_id)
        _usable_tables(tables)
        api = self.api()
        last: str = ""
        for attempt in range(1, self.max_attempts + 1):
            try:
                result = self._publish_once(api, shard, tables, info)
                return result.model_copy(update={"attempts": attempt})
            except Exception as exc:
                last = redact(f"{type(exc).__name__}: {exc}", self.token)
                if not _retryable(exc, last) or attempt == self.max_attempts:
                    raise PublishError(
                        f"publishing shard {shard!r} to dataset {self.repo_id} at "
                        f"{self.resolved_endpoint()} failed after {attempt} attempt(s); the repo "
                        f"is left at its last good commit. Last error: {last}{_hint(last)}"
                    ) from None
                time.sleep(self.retry_base_seconds * 2 ** (attempt - 1))
        raise AssertionError("unreachable")

    def _publish_once(
        self, api, shard: str, tables: dict[str, pl.DataFrame], info: CardInfo
    ) -> PublishResult:
        from huggingface_hub import CommitOperationAdd, CommitOperationDelete

        api.create_repo(self.repo_id, repo_type="dataset", private=self.private, exist_ok=True)
        repo = api.repo_info(self.repo_id, repo_type="dataset", revision=self.revision)
        parent = repo.sha
        existing = {s.rfilename for s in repo.siblings or []}
        stats_text = None
        if STATS_PATH in existing:
            with tempfile.TemporaryDirectory() as tmp:
                local = api.hf_hub_download(
                    self.repo_id, STATS_PATH, repo_type="dataset", revision=parent, local_dir=tmp
                )
                stats_text = Path(local).read_text()
        files, stale = shard_files(shard, tables, info, self.static_card(), stats_text, existing)
        operations: list[Any] = [
            CommitOperationAdd(path_in_repo=path, path_or_fileobj=data)
            for path, data in files.items()
        ]
        operations += [CommitOperationDelete(path_in_repo=path) for path in stale]
        # parent_commit makes the server refuse the commit if someone else committed since we
        # read the stats index, so concurrent shards never overwrite each other's card.
        commit = api.create_commit(
            self.repo_id,
            operations,
            commit_message=f"Publish shard {shard}",
            commit_description=f"codeio-dagster {info.project_version}",
            repo_type="dataset",
            revision=self.revision,
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


def _check_repo_id(repo_id: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*", repo_id or ""):
        raise ValueError(f"repo_id {repo_id!r} must look like 'owner/name'")
    return repo_id
