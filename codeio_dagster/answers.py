"""Reading the model's final answer out of a reply (its feedback and revision turn: `feedback.py`).

Extraction order (never repairing text by string replacement):
1. the last fenced block labelled json, or unlabelled, whose body parses as JSON;
2. else the last balanced top-level `{...}` in the text that parses as JSON;
3. else the same candidates (last first) read as a Python literal with `ast.literal_eval`,
   converted to JSON values (tuples and sets become lists, dict keys become strings).
The chosen value must be a JSON object holding `key`, otherwise the status is `missing_key`.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from typing import Any

from codeio_dagster.markdown import code_blocks
from codeio_dagster.sandbox.values import nested_deeper

# Bounds on what one reply can cost: only its last MAX_REPLY_CHARS are read (a reply is at most
# max_tokens long, a few tens of thousands of characters in practice), and an answer nested
# deeper than MAX_ANSWER_DEPTH is a parse error (deeper values overflow recursive code later).
MAX_REPLY_CHARS = 200_000
MAX_ANSWER_DEPTH = 100
# The answer is at the end: only the last few candidates of each method are tried, so a reply
# of thousands of `{...}` fragments costs thousands of scans, not thousands of parses.
MAX_CANDIDATES = 32


@dataclass(frozen=True)
class Extraction:
    status: str  # ok, parse_error, missing_key
    value: Any = None  # the JSON value under the key when status is ok
    detail: str | None = None
    method: str | None = None  # json_block, json_object, python_literal


def balanced_objects(text: str) -> list[str]:
    """Every top-level balanced `{...}` span, in order, skipping braces inside string literals
    (double- or single-quoted, with backslash escapes)."""
    spans, _ = scan_objects(text)
    return [text[a : b + 1] for a, b in spans]


def scan_objects(text: str) -> tuple[list[tuple[int, int]], int]:
    """(start, end) of every top-level balanced `{...}` span, and the number of characters
    visited, which stays below 4 x len(text): the scan is linear whatever the text.

    One pass with a stack of open braces; quotes count only inside braces. A quote that never
    closes (a single quote before the line ends: an apostrophe in prose; any quote before the
    text ends) was not a string: whatever was open fails, and the scan resumes just after that
    quote. Every quote of the same kind that the failed string had swallowed would fail the same
    way (it can only have been escaped there, so a string opened on it reads the same characters
    as the failed one), so those quotes are prose on the rescan; hence each character is visited
    at most a few times instead of once per opening brace before it.
    """
    spans: list[tuple[int, int]] = []
    stack: list[int] = []
    # A quote of that kind before this position is prose (see above).
    dead = {"'": -1, '"': -1}
    quote: str | None = None
    quote_at = 0
    visited = 0
    i, n = 0, len(text)
    while True:
        if i >= n:
            if quote is None:
                break
            dead[quote], stack, quote, i = n, [], None, quote_at + 1
            continue
        visited += 1
        ch = text[i]
        if quote is not None:
            if ch == "\\":
                i += 2
                continue
            if ch == quote:
                quote = None
            elif ch == "\n" and quote == "'":
                dead["'"], stack, quote, i = i, [], None, quote_at + 1
                continue
        elif ch == "{":
            stack.append(i)
        elif ch == "}":
            if stack:
                start = stack.pop()
                while spans and spans[-1][0] > start:
                    spans.pop()  # nested in this one: not top level
                spans.append((start, i))
        elif stack and (ch == '"' or ch == "'") and i >= dead[ch]:
            quote, quote_at = ch, i
        i += 1
    return spans, visited


class _NotJson(ValueError):
    pass


class _TooDeep(_NotJson):
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
    except RecursionError as exc:
        raise _TooDeep(str(exc)) from exc
    except (ValueError, SyntaxError, TypeError, MemoryError) as exc:
        raise _NotJson(str(exc)) from exc
    return _to_json_value(value)


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except RecursionError as exc:  # nested deeper than the decoder's stack allows
        raise _TooDeep(str(exc)) from exc
    except (ValueError, MemoryError) as exc:
        raise _NotJson(str(exc)) from exc


def extract_answer(text: str | None, key: str) -> Extraction:
    """The value under `key` in the reply's final JSON answer (see module docstring).

    Never raises on any text: a reply that cannot be read is a `parse_error` with the reason.
    The work is linear in the reply, of which only the last MAX_REPLY_CHARS are read.
    """
    if text is None or not text.strip():
        return Extraction("parse_error", detail="the reply is empty")
    if len(text) > MAX_REPLY_CHARS:
        # The final answer is at the end; cut at a line start so no fence is split.
        tail = text[-MAX_REPLY_CHARS:]
        text = tail[tail.find("\n") + 1 :]
    blocks = code_blocks(text)
    json_blocks = [b.body for b in blocks if b.label.startswith("json") or b.label == ""]
    spans, _ = scan_objects(text)
    objects = [text[a : b + 1] for a, b in spans]

    found: tuple[Any, str] | None = None
    too_deep = False
    for body in json_blocks[: -MAX_CANDIDATES - 1 : -1]:
        try:
            found = (_json(body), "json_block")
            break
        except _NotJson as exc:
            too_deep |= isinstance(exc, _TooDeep)
    if found is None:
        for span in objects[: -MAX_CANDIDATES - 1 : -1]:
            try:
                found = (_json(span), "json_object")
                break
            except _NotJson as exc:
                too_deep |= isinstance(exc, _TooDeep)
    if found is None:
        # Prefer what comes last in the text: order candidates by where they start.
        literal_candidates = sorted(
            [(b.start, b.body) for b in blocks] + [(a, text[a : b + 1]) for a, b in spans],
            key=lambda c: c[0],
        )
        for _, candidate in literal_candidates[: -MAX_CANDIDATES - 1 : -1]:
            try:
                found = (_literal(candidate), "python_literal")
                break
            except _NotJson as exc:
                too_deep |= isinstance(exc, _TooDeep)
    if found is None:
        if not blocks and not objects:
            detail = "no JSON block or object found in the reply"
        elif too_deep:
            detail = f"the answer nests deeper than {MAX_ANSWER_DEPTH} levels"
        else:
            detail = "no fenced block or {...} object in the reply parses as JSON or a literal"
        return Extraction("parse_error", detail=detail)

    value, method = found
    if nested_deeper(value, MAX_ANSWER_DEPTH):
        return Extraction(
            "parse_error",
            detail=f"the answer nests deeper than {MAX_ANSWER_DEPTH} levels",
            method=method,
        )
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return Extraction(
            "parse_error",
            detail="the answer holds a lone surrogate escape (not valid Unicode text)",
            method=method,
        )
    if not isinstance(value, dict):
        return Extraction(
            "missing_key",
            detail=f"the answer is a JSON {_json_type(value)}, expected an object with key {key!r}",
            method=method,
        )
    if key not in value:
        keys = ", ".join(repr(k)[:40] for k in list(value)[:5]) or "none"
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
