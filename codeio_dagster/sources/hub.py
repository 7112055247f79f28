"""Raw code from a Hugging Face Hub dataset (Parquet or JSONL files) at a pinned revision."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from pydantic import field_validator

from codeio_dagster.hfhub import check_repo_id, hub_endpoint
from codeio_dagster.sources.base import (
    RawFile,
    Source,
    SourceOptions,
    Unit,
    raw_file,
    row_path,
)

_SHA = re.compile(r"[0-9a-f]{40}")
_READABLE = (".parquet", ".jsonl", ".ndjson")


class HubRepoOptions(SourceOptions):
    """A dataset repo, the revision to pin and which files to read."""

    repo_id: str
    revision: str = "main"
    files: str = "**/*.parquet"
    endpoint: str | None = None
    cache_dir: str | None = None

    @field_validator("repo_id")
    @classmethod
    def _repo_id_shape(cls, value: str) -> str:
        return check_repo_id(value, "hub source repo_id")

    @field_validator("files")
    @classmethod
    def _readable(cls, value: str) -> str:
        if not value.endswith(_READABLE):
            raise ValueError(f"hub source files {value!r} must match {', '.join(_READABLE)} files")
        return value


class HubSourceOptions(HubRepoOptions):
    """A dataset repo, the revision to pin, which files and which columns hold path and code."""

    content_column: str = "content"
    path_column: str = "path"


class HubSource(Source):
    """Each row of the matched files is one raw file; a branch is resolved to its commit once."""

    name: ClassVar[str] = "hub"
    Options: ClassVar[type[SourceOptions]] = HubSourceOptions

    def __init__(self, options: SourceOptions):
        super().__init__(options)
        self._sha: str | None = None

    @property
    def opts(self) -> HubSourceOptions:
        assert isinstance(self.options, HubRepoOptions)
        return self.options

    def _api(self):
        from huggingface_hub import HfApi

        return HfApi(endpoint=hub_endpoint(self.opts.endpoint))

    def resolved_revision(self) -> str:
        """The commit sha read from; a branch or tag is resolved on first use and then kept."""
        if self._sha is None:
            revision = self.opts.revision
            if _SHA.fullmatch(revision):
                self._sha = revision
            else:
                info = self._api().repo_info(
                    self.opts.repo_id, repo_type="dataset", revision=revision
                )
                if not info.sha:
                    raise RuntimeError(
                        f"the Hub reported no commit for {self.opts.repo_id}@{revision}"
                    )
                self._sha = info.sha
        return self._sha

    def _matches(self, name: str) -> bool:
        pattern = self.opts.files
        # fnmatch's `*` already crosses '/', so `**/` only needs to also match the top level.
        return any(fnmatch.fnmatch(name, p) for p in {pattern, pattern.replace("**/", "")})

    def units(self) -> list[Unit]:
        """Matched files at the pinned commit, stamped by blob id; one listing call, no download."""
        from huggingface_hub.hf_api import RepoFile

        opts, sha = self.opts, self.resolved_revision()
        entries = self._api().list_repo_tree(
            opts.repo_id, repo_type="dataset", revision=sha, recursive=True
        )
        units = sorted(
            (
                Unit(e.path, e.blob_id)
                for e in entries
                if isinstance(e, RepoFile) and self._matches(e.path)
            ),
            key=lambda unit: unit.key,
        )
        if not units:
            raise FileNotFoundError(f"no file of {opts.repo_id}@{sha} matches files={opts.files!r}")
        return units

    def unit_files(self, key: str) -> Iterator[RawFile]:
        api, sha, opts = self._api(), self.resolved_revision(), self.opts
        local = api.hf_hub_download(
            opts.repo_id, key, repo_type="dataset", revision=sha, cache_dir=opts.cache_dir
        )
        yield from self._frame_files(key, sha, _read(Path(local), key))

    def _frame_files(self, key: str, sha: str, frame) -> Iterator[RawFile]:
        """The raw files of one downloaded table (a subclass lands rows in another form)."""
        import polars as pl

        opts = self.opts
        missing = [c for c in (opts.path_column, opts.content_column) if c not in frame.columns]
        if missing:
            raise KeyError(
                f"{opts.repo_id}@{sha}:{key} has no column(s) {missing}; "
                f"columns are {frame.columns} (set path_column / content_column)"
            )
        rows = frame.select(pl.col(opts.path_column), pl.col(opts.content_column))
        for i, (path, content) in enumerate(rows.iter_rows()):
            # Text and bytes as they are, a null as no bytes (raw_code keeps it as `empty`),
            # anything else a rejected row with its reason.
            origin = {"repo_id": opts.repo_id, "revision": sha, "file": key, "row": i}
            yield raw_file(row_path(key, i, path), content, origin)

    def files(self) -> Iterator[RawFile]:
        for unit in self.units():
            yield from self.unit_files(unit.key)

    def provenance(self) -> dict[str, Any]:
        return {
            "source": self.name,
            "repo_id": self.opts.repo_id,
            "revision": self.resolved_revision(),
            "requested_revision": self.opts.revision,
            "files": self.opts.files,
        }


def _read(path: Path, name: str):
    import polars as pl

    if name.endswith(".parquet"):
        return pl.read_parquet(path)
    return pl.read_ndjson(path)
