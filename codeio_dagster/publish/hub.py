"""The Hub publisher: each shard one commit to a dataset repo through the real `HfApi`."""

from __future__ import annotations

import re
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

import polars as pl
from pydantic import Field

from codeio_dagster.hfhub import hub_endpoint
from codeio_dagster.publish.card import CardInfo, CardStatic
from codeio_dagster.publish.layout import check_shard, shard_files, usable_tables
from codeio_dagster.publish.resources import PublisherResource, PublishError, PublishResult
from codeio_dagster.publish.stats import SUMMARY_PATH

_TOKEN_RE = re.compile(r"hf_[A-Za-z0-9]{8,}")
# Statuses a later attempt can fix: timeouts, conflicts with a concurrent commit, rate limits,
# server errors. Anything else 4xx (bad token, missing repo, invalid card) fails at once.
_RETRY_STATUSES = {408, 409, 412, 423, 429}


def redact(text: str, token: str | None = None) -> str:
    """Text with the given token and anything shaped like a Hub token replaced."""
    if token:
        text = text.replace(token, "***")
    return _TOKEN_RE.sub("hf_***", text)


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
        usable_tables(tables)
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
            rows={name: frame.height for name, frame in usable_tables(tables).items()},
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
