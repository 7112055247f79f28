"""The Hugging Face Hub's names, in one place: the repo-id rule and the endpoint to talk to."""

from __future__ import annotations

import os
import re

DEFAULT_ENDPOINT = "https://huggingface.co"
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")


def is_repo_id(value: object) -> bool:
    """Whether `value` is an `owner/name` repo id."""
    return isinstance(value, str) and _REPO_ID.fullmatch(value) is not None


def check_repo_id(value: str, what: str = "repo_id") -> str:
    """`value` if it is an `owner/name` repo id, else a ValueError naming `what` was wrong."""
    if not is_repo_id(value):
        raise ValueError(f"{what} {value!r} must look like 'owner/name'")
    return value


def hub_endpoint(endpoint: str | None = None) -> str:
    """The Hub URL: `endpoint`, else `$HF_ENDPOINT`, else huggingface.co, without a final `/`.

    Read at call time: huggingface_hub reads HF_ENDPOINT once, at its import, so a client made
    later must be handed the endpoint explicitly.
    """
    return (endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
