"""The feedback and revision texts of CodeI/O++: what was wrong with a reply, and the next turn.

Feedback policy: for output prediction the true output is never revealed (the revision turn
would otherwise become copying the answer with reasons made up afterwards); the model is told
that its value is wrong. For input prediction the feedback shows what the predicted input really
produces, which is execution evidence, not the answer (the required output is in the prompt).
"""

from __future__ import annotations

from codeio_dagster.prompt_templates import text_hash

FEEDBACK_TEMPLATE_VERSION = "feedback-v1"

# Keyed by (verdict status, task kind or "*"); {placeholders} filled from feedback_text's
# arguments. Every non-correct verdict status has a text.
FEEDBACK_TEMPLATES: dict[tuple[str, str], str] = {
    ("wrong", "output_prediction"): (
        "Your predicted output {answer} is not what the code returns for the given input."
    ),
    ("wrong", "input_prediction"): (
        "Running the code on your predicted input {answer} returns {actual}, "
        "which is not the output given in the task."
    ),
    ("wrong", "*"): "Your answer {answer} is not correct.",
    ("parse_error", "*"): (
        "Your final answer could not be read as JSON ({error}). The reply must end with a "
        "```json block holding a JSON object."
    ),
    ("missing_key", "*"): (
        'Your final JSON answer does not have the required "{key}" key ({error}). The reply '
        'must end with a ```json block of the form {{"{key}": ...}}.'
    ),
    ("exec_error", "*"): "Running the code on your predicted input {answer} raised {error}.",
    ("timeout", "*"): (
        "Running the code on your predicted input {answer} did not finish within the time limit."
    ),
    ("truncated", "*"): (
        "Your reply was cut off before it reached the final JSON answer. Keep the reasoning "
        "shorter so the answer fits."
    ),
    ("request_failed", "*"): "No reply was received for this task.",
    ("judge_error", "*"): "Your answer {answer} could not be checked ({error}).",
}

# The request is kind-agnostic on purpose: the task prompt already fixed the answer format.
REVISION_REQUEST = (
    "Please solve the task again. Reason step by step, do not repeat any of your earlier wrong "
    "answers, and end your reply with the JSON block in the format the task asks for."
)

_KEY_OF_KIND = {"output_prediction": "output", "input_prediction": "input"}


def feedback_text(
    status: str,
    *,
    kind: str,
    answer_json: str | None = None,
    expected_json: str | None = None,
    actual_json: str | None = None,
    error: str | None = None,
    key: str | None = None,
) -> str:
    """What was wrong with a reply, in words for the model (see module docstring for policy).

    `expected_json` is accepted for symmetry but never shown: for output prediction it is the
    answer, for input prediction it is the original input (also an answer).
    """
    del expected_json
    if status == "correct":
        raise ValueError("a correct verdict has no feedback")
    template = FEEDBACK_TEMPLATES.get((status, kind)) or FEEDBACK_TEMPLATES.get((status, "*"))
    if template is None:
        known = sorted({s for s, _ in FEEDBACK_TEMPLATES})
        raise ValueError(f"no feedback for verdict status {status!r}; known: {known}")
    return template.format(
        answer=_short(answer_json) if answer_json is not None else "(none)",
        actual=_short(actual_json) if actual_json is not None else "(nothing)",
        error=(error or "unknown error").strip(),
        key=key or _KEY_OF_KIND.get(kind, "answer"),
    )


def revision_request(feedback: str) -> str:
    """The user turn of a revision: the feedback plus the request to try again."""
    return f"{feedback.strip()}\n\n{REVISION_REQUEST}"


def revision_messages(
    history: list[dict[str, str]], reply: str, feedback: str
) -> list[dict[str, str]]:
    """The conversation for the next turn: history, the model's reply, the feedback request."""
    if not history:
        raise ValueError("history must hold at least the original user prompt")
    for i, msg in enumerate(history):
        if not isinstance(msg, dict) or "role" not in msg or "content" not in msg:
            raise ValueError(f"history[{i}] must be a dict with role and content, got {msg!r:.80}")
    if not isinstance(reply, str):
        raise TypeError(f"reply must be the assistant's text, got {type(reply).__name__}")
    return [
        *[{"role": m["role"], "content": m["content"]} for m in history],
        {"role": "assistant", "content": reply},
        {"role": "user", "content": revision_request(feedback)},
    ]


def feedback_hash() -> str:
    """sha256 over the feedback and revision templates."""
    parts = [FEEDBACK_TEMPLATE_VERSION, REVISION_REQUEST]
    parts += [f"{s}|{k}|{t}" for (s, k), t in sorted(FEEDBACK_TEMPLATES.items())]
    return text_hash(*parts)


def _short(json_text: str, limit: int = 300) -> str:
    text = json_text.strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."
