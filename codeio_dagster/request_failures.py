"""The failed-request bound of an LLM stage: an endpoint that is down fails the run loudly.

Every LLM stage reports `requests_failed` and `request_failure_rate`; a stage whose requests all
failed, or whose failure rate passes `llm.max_failure_rate`, raises instead of writing a table
of failures. Nothing done is lost: replies that came back are in the request cache, and only
the failed requests are sent again on the rerun.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dagster as dg

from codeio_dagster.llm import LLMOutcome


def failure_metadata(outcomes: Sequence[LLMOutcome]) -> dict[str, Any]:
    """requests_failed and request_failure_rate (0.0 when there were no requests)."""
    failed = sum(o.status == "request_failed" for o in outcomes)
    return {
        "requests_failed": failed,
        "request_failure_rate": round(failed / len(outcomes), 4) if outcomes else 0.0,
    }


def fail_if_too_many_failed(
    stage: str, outcomes: Sequence[LLMOutcome], max_failure_rate: float
) -> dict[str, Any]:
    """The failure metadata, after raising dg.Failure when the stage's requests failed beyond
    the bound (or all of them failed)."""
    meta = failure_metadata(outcomes)
    failed, rate = meta["requests_failed"], meta["request_failure_rate"]
    if failed and (failed == len(outcomes) or rate > max_failure_rate):
        errors = list(dict.fromkeys(o.error for o in outcomes if o.error))
        why = "every request failed" if failed == len(outcomes) else "too many requests failed"
        raise dg.Failure(
            description=(
                f"{stage}: {why}: {failed} of {len(outcomes)} (rate {rate:.2%}, bound "
                f"llm.max_failure_rate = {max_failure_rate:.2%}). First error: "
                f"{errors[0] if errors else 'none recorded'}. Is the LLM endpoint up and the "
                "key valid? Replies already received are cached; a rerun sends only the failed "
                "requests."
            ),
            metadata={
                **meta,
                "max_failure_rate": max_failure_rate,
                "first_errors": dg.MetadataValue.md("\n".join(f"- {e}" for e in errors[:5])),
            },
        )
    return meta
