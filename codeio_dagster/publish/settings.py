"""The `publish:` section of codeio.yaml and the publisher it selects."""

from __future__ import annotations

import re
from typing import Literal

import dagster as dg
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from codeio_dagster.hfhub import check_repo_id
from codeio_dagster.publish.resources import HubPublisher, LocalFolderPublisher, PublisherResource


class PublishSettings(BaseModel):
    """Where finished shards go: a local folder (default) or a Hub dataset repo."""

    model_config = ConfigDict(extra="forbid")

    target: Literal["local", "hub"] = "local"
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
    def _hub_needs_repo(self) -> PublishSettings:
        if self.target == "hub" and self.repo_id is None:
            raise ValueError("publish.target is 'hub' but publish.repo_id is not set")
        return self


def publisher_from_settings(
    settings: PublishSettings, token: str | dg.EnvVar | None = None
) -> PublisherResource:
    """The publisher resource for the settings; pass `token=dg.EnvVar("HF_TOKEN")` for the Hub."""
    common = {
        "license": settings.license,
        "pretty_name": settings.pretty_name,
        "tags": settings.tags,
    }
    if settings.target == "hub":
        assert settings.repo_id is not None
        return HubPublisher(
            repo_id=settings.repo_id,
            endpoint=settings.endpoint,
            token=token,
            private=settings.private,
            revision=settings.revision,
            max_attempts=settings.max_attempts,
            retry_base_seconds=settings.retry_base_seconds,
            **common,
        )
    return LocalFolderPublisher(path=settings.local_dir, **common)
