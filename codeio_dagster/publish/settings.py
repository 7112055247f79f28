"""The `publish:` section as Dagster config.

`PublishSettings` is the plain model of `sections.py` (its fields and validators, declared there
once) made a `dg.Config`, so the publishers take it whole as their one config field
(`publish/resources.py`) and the Dagster UI shows it under the YAML's names. codeio.yaml is
validated into the plain model (`config.py`), which `publisher_from_settings` turns into this.
"""

from __future__ import annotations

import dagster as dg

from codeio_dagster.publish.sections import PublishSection


class PublishSettings(dg.Config, PublishSection):
    """Where finished shards go: a local folder (default) or a Hub dataset repo."""

    @classmethod
    def of(cls, section: PublishSection) -> PublishSettings:
        """The section as Dagster config (itself if it is already)."""
        return section if isinstance(section, cls) else cls.model_validate(section.model_dump())
