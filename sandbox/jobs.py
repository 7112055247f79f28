"""What a sandbox job is, and how a fork-server reply becomes its checked result."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from codeio_dagster.sandbox.values import read_json

Status = Literal["ok", "exception", "timeout", "memory", "output_limit", "killed", "invalid_output"]


class Job(BaseModel):
    """One call of `call` from `code` with `input` as kwargs (dict) or positional args (list)."""

    model_config = ConfigDict(extra="forbid")

    id: str
    code: str
    call: str = "main_solution"
    input: dict[str, Any] | list[Any] = Field(default_factory=dict)
    timeout_s: float | None = Field(None, gt=0, le=3600)
    hash_seed: int | None = Field(
        None, ge=0, le=4294967295, description="Run under another PYTHONHASHSEED (own jails)."
    )


class JobResult(BaseModel):
    """How one job ended; output is canonical JSON text when status is ok."""

    model_config = ConfigDict(extra="forbid")

    id: str
    status: Status
    output: str | None = None
    error: str | None = None
    duration_ms: float = 0.0
    conversions: list[str] = Field(default_factory=list)
    stdout: str = ""


_STATUSES = set(Status.__args__)
# Marks a reply the host wrote because a jail died or hung: never cached, it says nothing about
# the job.
HOST_MADE = "_host_made"  # type: ignore[attr-defined]


def _json_fault(value: Any) -> str | None:
    """Why value is not canonical JSON text a job could have produced, or None if it is."""
    try:
        read_json(value)
    except ValueError as exc:
        return str(exc)
    return None


def result_from_reply(job_id: str, reply: dict[str, Any]) -> JobResult:
    """A checked JobResult from a fork-server reply; a malformed one becomes invalid_output."""
    # The reply crossed a pipe the job could also write to: trust its shape only after checking.
    status = reply.get("status")
    error = reply.get("error")
    error = None if error is None else str(error)[:4000]
    output = reply.get("output") if status == "ok" else None
    fault = _json_fault(output) if status == "ok" else None
    if not isinstance(status, str) or status not in _STATUSES:
        status, error = "invalid_output", f"malformed reply status {str(status)[:80]!r}"
    elif fault is not None:
        status, output, error = "invalid_output", None, f"reply output is not JSON text: {fault}"
    conversions = reply.get("conversions")
    if not (isinstance(conversions, list) and all(isinstance(c, str) for c in conversions)):
        conversions = []
    try:
        duration = float(reply.get("duration_ms", 0.0))
    except (TypeError, ValueError, OverflowError):
        duration = 0.0
    return JobResult(
        id=job_id,
        status=status,
        output=output,
        error=error,
        duration_ms=duration,
        conversions=conversions[:50],
        stdout=str(reply.get("stdout") or "")[:8192],
    )
