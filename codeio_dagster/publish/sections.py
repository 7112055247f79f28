"""The `publish:` section of codeio.yaml as a plain pydantic model, declared once: what the YAML
is validated into without importing Dagster. `settings.py` makes it a `dg.Config`
(`PublishSettings`), which the publishers take whole as their one config field.
"""

from __future__ import annotations

import os
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from codeio_dagster.hfhub import check_repo_id
from codeio_dagster.storage import location


class PublishSection(BaseModel):
    """Where finished shards go: a local folder (default) or a Hub dataset repo."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    target: Literal["local", "hub"] = "local"
    # A folder, or an object-storage URL (s3://bucket/prefix); a string because Dagster config
    # has no path type.
    local_dir: str = "published"
    repo_id: str | None = None
    endpoint: str | None = None
    private: bool = False
    revision: str = "main"
    license: str = "apache-2.0"
    pretty_name: str = "CodeI/O reasoning data"
    tags: list[str] = Field(default_factory=list)
    max_attempts: int = Field(default=4, ge=1, le=20)
    retry_base_seconds: float = Field(default=2.0, ge=0)

    @field_validator("local_dir", mode="before")
    @classmethod
    def _local_dir(cls, value: object) -> object:
        # An unsupported URL (gs://...) is refused here, so the config error names the key; as
        # a `Path` it would silently become the local folder `gs:/...`.
        return str(location(os.fspath(value))) if isinstance(value, str | os.PathLike) else value

    @field_validator("repo_id")
    @classmethod
    def _repo_id_shape(cls, value: str | None) -> str | None:
        return value if value is None else check_repo_id(value, "publish.repo_id")

    @field_validator("endpoint")
    @classmethod
    def _endpoint_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"https?://[^/\s]+", value):
            raise ValueError(f"publish.endpoint {value!r} must be an http(s) URL")
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _hub_needs_repo(self) -> PublishSection:
        if self.target == "hub" and self.repo_id is None:
            raise ValueError("publish.target is 'hub' but publish.repo_id is not set")
        return self
