"""Prompt templates shipped in `codeio_dagster/prompts/`: loading, `{{name}}` filling, hashing.

Every stage that talks to a model (refactor, prediction tasks, feedback) builds its prompts and
the template hashes of its cache keys and dataset card from these helpers.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import re


@functools.cache
def load_template(name: str) -> str:
    """The text of a prompt template shipped in `codeio_dagster/prompts/`."""
    resource = importlib.resources.files("codeio_dagster") / "prompts" / name
    if not resource.is_file():
        raise FileNotFoundError(f"prompt template {name!r} not found in codeio_dagster/prompts")
    return resource.read_text(encoding="utf-8")


_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


def render(template: str, **values: str) -> str:
    """Fill `{{name}}` placeholders in one pass, so inserted text is never re-substituted."""

    def fill(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise KeyError(
                f"template placeholder {{{{{key}}}}} has no value; given: {sorted(values)}"
            )
        return values[key]

    return _PLACEHOLDER.sub(fill, template)


def text_hash(*parts: str) -> str:
    """sha256 of template texts (NUL-separated so part boundaries count)."""
    return hashlib.sha256("\0".join(parts).encode("utf-8")).hexdigest()


def fence_for(text: str) -> str:
    """A backtick fence longer than any backtick run inside `text`."""
    longest = max((len(m.group(0)) for m in re.finditer(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)
