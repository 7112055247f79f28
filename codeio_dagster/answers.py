"""Reading the model's final answer, and the feedback and revision texts of CodeI/O++.

Extraction order (never repairing text by string replacement):
1. the last fenced block labelled json, or unlabelled, whose body parses as JSON;
2. else the last balanced top-level `{...}` in the text that parses as JSON;
3. else the same candidates (last first) read as a Python literal with `ast.literal_eval`,
   converted to JSON values (tuples and sets become lists, dict keys become strings).
The chosen value must be a JSON object holding `key`, otherwise the status is `missing_key`.

Feedback policy: for output prediction the true output is never revealed (the revision turn
would otherwise become copying the answer with reasons made up afterwards); the model is told
that its value is wrong. For input prediction the feedback shows what the predicted input really
produces, which is execution evidence, not the answer (the required output is in the prompt).
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from typing import Any

from codeio_dagster.markdown import code_blocks
from codeio_dagster.prompt_templates import text_hash

FEEDBACK_TEMPLATE_VERSION = "feedback-v1"

EXTRACTION_STATUSES = {
    "ok": "a JSON object with the answer key was found",
    "parse_error": "no fenced block or balanced object in the reply parses as JSON or a literal",
    "missing_key": "the answer parsed but is not an object holding the answer key",
}


@dataclass(frozen=True)
class Extraction:
    status: str  # ok, parse_error, missing_key
    value: Any = None  # the JSON value under the key when status is ok
    detail: str | None = None
    method: str | None = None  # json_block, json_object, python_literal


def canonical_json(value: Any) -> str:
    """JSON with sorted keys, the same text form as the sandbox's canonical JSON."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def balanced_objects(text: str) -> list[str]:
    """Every top-level balanced `{...}` span, in order, skipping braces inside string literals
    (double- or single-quoted, with backslash escapes)."""
    spans: list[str] = []
    start = text.find("{")
    while start != -1:
        end = _match_brace(text, start)
        if end is None:
            # Unbalanced from here (e.g. a truncated reply): try the next opening brace.
            start = text.find("{", start + 1)
            continue
        spans.append(text[start : end + 1])
        start = text.find("{", end + 1)
    return spans


def _match_brace(text: str, start: int) -> int | None:
    depth = 0
    quote: str | None = None
    i = start
    n = len(text)
    while i < n:
        ch = text[i]
        if quote is not None:
            if ch == "\\":
                i += 2
                continue
            if ch == quote:
                quote = None
            elif ch == "\n" and quote == "'":
                # A newline ends a single-quoted "string": it was an apostrophe in prose.
                return None
        elif ch in "\"'":
            quote = ch
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


class _NotJson(ValueError):
    pass


def _to_json_value(value: Any) -> Any:
    """A Python literal as a JSON value; raises _NotJson for what JSON cannot hold."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, list | tuple):
        return [_to_json_value(v) for v in value]
    if isinstance(value, set | frozenset):
        items = [_to_json_value(v) for v in value]
        try:
            return sorted(items)
        except TypeError:
            return items
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if isinstance(k, str):
                key = k
            elif k is None or isinstance(k, bool | int | float):
                key = json.dumps(k)  # what json.dumps does with such keys
            else:
                raise _NotJson(f"dict key {k!r} cannot be a JSON key")
            out[key] = _to_json_value(v)
        return out
    raise _NotJson(f"{type(value).__name__} value {value!r:.60} is not JSON")


def _literal(text: str) -> Any:
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
        raise _NotJson(str(exc)) from exc
    return _to_json_value(value)


def extract_answer(text: str | None, key: str) -> Extraction:
    """The value under `key` in the reply's final JSON answer (see module docstring)."""
    if text is None or not text.strip():
        return Extraction("parse_error", detail="the reply is empty")
    blocks = code_blocks(text)
    json_blocks = [b.body for b in blocks if b.label.startswith("json") or b.label == ""]
    objects = balanced_objects(text)

    found: tuple[Any, str] | None = None
    for body in reversed(json_blocks):
        try:
            found = (json.loads(body), "json_block")
            break
        except ValueError:
            continue
    if found is None:
        for span in reversed(objects):
            try:
                found = (json.loads(span), "json_object")
                break
            except ValueError:
                continue
    if found is None:
        literal_candidates = [b.body for b in blocks] + objects
        # Prefer what comes last in the text: order candidates by their position.
        literal_candidates.sort(key=lambda c: text.rfind(c))
        for candidate in reversed(literal_candidates):
            try:
                found = (_literal(candidate), "python_literal")
                break
            except _NotJson:
                continue
    if found is None:
        if not blocks and not objects:
            detail = "no JSON block or object found in the reply"
        else:
            detail = "no fenced block or {...} object in the reply parses as JSON or a literal"
        return Extraction("parse_error", detail=detail)

    value, method = found
    if not isinstance(value, dict):
        return Extraction(
            "missing_key",
            detail=f"the answer is a JSON {_json_type(value)}, expected an object with key {key!r}",
            method=method,
        )
    if key not in value:
        keys = ", ".join(repr(k) for k in list(value)[:5]) or "none"
        return Extraction(
            "missing_key",
            detail=f"the answer object has no key {key!r} (keys: {keys})",
            method=method,
        )
    return Extraction("ok", value=value[key], method=method)


def _json_type(value: Any) -> str:
    return {list: "array", str: "string", bool: "boolean", int: "number", float: "number"}.get(
        type(value), "null" if value is None else type(value).__name__
    )


# -- feedback ----------------------------------------------------------------------------------

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
