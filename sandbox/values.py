"""Canonical JSON for execution results and the CodeI/O answer-comparison rule.

This module is pure standard library and Python 3.11 compatible because it is also mounted
read-only into the jail, where the fork-server converts outputs with it.

Canonical JSON policy (``canonical_json``):

* ``None``, ``bool``, ``int`` and ``str`` are kept as they are; ``bool`` stays ``true``/``false``.
* finite ``float`` is kept (``1.0`` stays ``1.0``; ``-0.0`` stays ``-0.0``).
* NaN and infinities are written as the tokens ``NaN``, ``Infinity``, ``-Infinity`` (what Python's
  ``json`` reads back as floats) and recorded as ``"nan->NaN token"`` / ``"inf->Infinity token"``:
  the value survives a round trip, but under the comparison rule it never equals anything, so the
  I/O-pair stage drops pairs that contain one.
* ``tuple`` -> list (``"tuple->list"``); ``set``/``frozenset`` -> sorted list
  (``"set->sorted list"``), sorted by value when the elements are mutually orderable, otherwise by
  their canonical text, so the text never depends on the hash seed.
* ``bytes``/``bytearray`` -> ``str`` when valid UTF-8 (``"bytes->str"``), otherwise a list of
  ints (``"bytes->list of ints"``).
* numpy scalars -> the Python scalar (``"numpy.int64->int"``), arrays -> nested lists
  (``"ndarray->list"``); numpy is detected by module name, never imported here.
* ``decimal.Decimal`` and ``fractions.Fraction`` -> ``float`` (``"Decimal->float"``).
* dict keys: ``str`` kept; ``int``/``float``/``bool``/``None`` keys become their JSON text
  (``"dict key int->str"``) as ``json.dumps`` does; other keys are rejected. Keys are sorted.
* anything else (complex, custom objects, generators, cycles, collisions of converted keys)
  raises ``ValueError``: the job ends as ``invalid_output``.

Text form: ``json.dumps(..., sort_keys=True, ensure_ascii=False)`` with the default separators.

Comparison rule (``outputs_equal``, CodeI/O step 6), on parsed JSON values:

* dicts: same key set, then every value equal under this rule;
* lists: same length, then element-wise;
* numbers: if both are ints, exact ``==``; otherwise NaN/inf are never equal (not even to
  themselves), the integer parts (truncation toward zero) must be equal and
  ``abs(pred - truth) <= 1e-3 * abs(truth)``; a ``0.0`` target therefore needs an exact zero;
* ``bool`` is not a number here: ``true`` never equals ``1`` (a type mistake is a wrong answer);
* everything else: ``==``.
"""

from __future__ import annotations

import json
import math
from typing import Any

REL_TOL = 1e-3
# Deepest nesting canonical_json writes; anything deeper that claims to come from it is forged.
MAX_DEPTH = 100


def canonical_json(value: Any) -> tuple[str, list[str]]:
    """Return the canonical JSON text of value and the conversions made to get there."""
    conversions: list[str] = []
    plain = _to_plain(value, conversions, 0, set())
    text = json.dumps(plain, sort_keys=True, ensure_ascii=False, allow_nan=True)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"output contains a string that is not valid Unicode: {exc}") from None
    return text, sorted(set(conversions))


def _note(conversions: list[str], what: str) -> None:
    if what not in conversions:
        conversions.append(what)


def _to_plain(value: Any, conv: list[str], depth: int, active: set[int]) -> Any:
    if depth > MAX_DEPTH:
        raise ValueError(f"value nested deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if math.isnan(value):
            _note(conv, "nan->NaN token")
        elif math.isinf(value):
            _note(conv, "inf->Infinity token")
        return float(value)
    module = type(value).__module__
    if module == "numpy" or module.startswith("numpy."):
        return _numpy_to_plain(value, conv, depth, active)
    if isinstance(value, (list, tuple, set, frozenset, dict)):
        if id(value) in active:
            raise ValueError("value contains a reference cycle")
        active.add(id(value))
        try:
            return _container_to_plain(value, conv, depth, active)
        finally:
            active.discard(id(value))
    if isinstance(value, (bytes, bytearray)):
        try:
            text = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            _note(conv, "bytes->list of ints")
            return list(bytes(value))
        _note(conv, "bytes->str")
        return text
    name = type(value).__name__
    if name in ("Decimal", "Fraction") and module in ("decimal", "fractions", "_pydecimal"):
        _note(conv, f"{name}->float")
        return _to_plain(float(value), conv, depth, active)
    raise ValueError(f"value of type {module}.{name} is not JSON-serialisable")


def _container_to_plain(value: Any, conv: list[str], depth: int, active: set[int]) -> Any:
    if isinstance(value, list):
        return [_to_plain(v, conv, depth + 1, active) for v in value]
    if isinstance(value, tuple):
        _note(conv, "tuple->list")
        return [_to_plain(v, conv, depth + 1, active) for v in value]
    if isinstance(value, (set, frozenset)):
        _note(conv, "set->sorted list")
        items = [_to_plain(v, conv, depth + 1, active) for v in value]
        try:
            return sorted(items)
        except TypeError:
            return sorted(items, key=lambda v: json.dumps(v, sort_keys=True, allow_nan=True))
    out: dict[str, Any] = {}
    for key, val in value.items():
        skey = _key_to_str(key, conv)
        if skey in out:
            raise ValueError(f"dict keys collide after conversion to strings: {skey!r}")
        out[skey] = _to_plain(val, conv, depth + 1, active)
    return out


def _key_to_str(key: Any, conv: list[str]) -> str:
    if isinstance(key, str):
        return key
    module = type(key).__module__
    if module == "numpy" and hasattr(key, "item"):
        _note(conv, f"numpy.{type(key).__name__}->{type(key.item()).__name__}")
        key = key.item()
    if key is None or isinstance(key, (bool, int, float)):
        _note(conv, f"dict key {type(key).__name__}->str")
        return json.dumps(key, allow_nan=True)
    raise ValueError(f"dict key of type {type(key).__name__} ({key!r:.40}) cannot be a JSON key")


def _numpy_to_plain(value: Any, conv: list[str], depth: int, active: set[int]) -> Any:
    name = type(value).__name__
    if name == "ndarray" or (hasattr(value, "tolist") and getattr(value, "ndim", 0) > 0):
        _note(conv, "ndarray->list")
        return _to_plain(value.tolist(), conv, depth, active)
    if hasattr(value, "item"):
        plain = value.item()
        if isinstance(plain, complex):
            raise ValueError(f"numpy.{name} is complex, which has no JSON form")
        _note(conv, f"numpy.{name}->{type(plain).__name__}")
        return _to_plain(plain, conv, depth, active)
    raise ValueError(f"value of type numpy.{name} is not JSON-serialisable")


def read_json(text: Any) -> Any:
    """The value of a canonical JSON text that crossed from a job; ValueError naming the fault
    if it cannot be one (not text, not JSON, nested deeper than canonical_json writes, too
    large to decode), so that a caller never meets RecursionError or MemoryError."""
    if not isinstance(text, str):
        raise ValueError(f"expected JSON text, got {type(text).__name__}")
    try:
        value = json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply to decode") from None
    except MemoryError:
        raise ValueError(f"JSON text of {len(text)} characters too large to decode") from None
    if nested_deeper(value, MAX_DEPTH + 1):
        raise ValueError(f"JSON value nested deeper than {MAX_DEPTH} levels")
    return value


def nested_deeper(value: Any, limit: int) -> bool:
    """Whether containers nest deeper than limit in value (iterative: safe at any depth)."""
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, dict):
            v = list(v.values())
        if isinstance(v, list):
            if depth > limit:
                return True
            stack.extend((item, depth + 1) for item in v)
    return False


def outputs_equal(pred: Any, truth: Any) -> bool:
    """CodeI/O's answer check on parsed JSON values (see the module docstring)."""
    if isinstance(truth, bool) or isinstance(pred, bool):
        return isinstance(truth, bool) and isinstance(pred, bool) and pred == truth
    if isinstance(truth, dict) and isinstance(pred, dict):
        if pred.keys() != truth.keys():
            return False
        return all(outputs_equal(pred[k], truth[k]) for k in truth)
    if isinstance(truth, list) and isinstance(pred, list):
        if len(pred) != len(truth):
            return False
        return all(outputs_equal(p, t) for p, t in zip(pred, truth, strict=True))
    if isinstance(truth, (int, float)) and isinstance(pred, (int, float)):
        if isinstance(truth, int) and isinstance(pred, int):
            return pred == truth
        if not (math.isfinite(pred) and math.isfinite(truth)):
            return False
        if int(pred) != int(truth):
            return False
        return abs(pred - truth) <= REL_TOL * abs(truth)
    if type(pred) is not type(truth):
        return False
    return pred == truth


def json_stats(value: Any) -> tuple[int, int, bool]:
    """Largest container length, longest string, and whether a non-finite float occurs."""
    max_items = 0
    max_str = 0
    nonfinite = False
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            max_str = max(max_str, len(v))
        elif isinstance(v, float):
            nonfinite = nonfinite or not math.isfinite(v)
        elif isinstance(v, list):
            max_items = max(max_items, len(v))
            stack.extend(v)
        elif isinstance(v, dict):
            max_items = max(max_items, len(v))
            max_str = max([max_str, *(len(k) for k in v)])
            stack.extend(v.values())
    return max_items, max_str, nonfinite
