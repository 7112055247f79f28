"""Config errors as the user reads them: each problem by key, value and expectation, and never
a credential-looking value (the message reaches the terminal, logs and Dagster's UI)."""

from __future__ import annotations

import difflib
import re
from typing import Any

import yaml
from pydantic import BaseModel

# Text that looks like a credential: a well-known token prefix, or a long run mixing upper- and
# lowercase letters and digits (API keys, base64 secrets; not paths, words or hex hashes).
_CREDENTIAL = re.compile(
    r"(?:hf_|sk-|ghp_|gho_|ghs_|github_pat_|glpat-|xox[abpr]-|AKIA|eyJ)[\w-]{8,}|[\w+=-]{24,}"
)
_PREFIXED = re.compile(r"(?:hf_|sk-|ghp_|gho_|ghs_|github_pat_|glpat-|xox[abpr]-|AKIA|eyJ)")


def _credential(token: str) -> bool:
    if _PREFIXED.match(token):
        return True
    return (
        any(c.isupper() for c in token)
        and any(c.islower() for c in token)
        and any(c.isdigit() for c in token)
    )


def redact_credentials(text: str) -> str:
    """`text` with every credential-looking run replaced by `***`."""
    return _CREDENTIAL.sub(lambda m: "***" if _credential(m.group(0)) else m.group(0), text)


class ConfigError(ValueError):
    """A config that cannot be used, with every problem named by key, value and expectation.

    Whatever raised it (a validator quoting its input, a plugin, the YAML parser), the message
    never carries a credential-looking value: it reaches the terminal, logs and Dagster's UI.
    """

    def __init__(self, message: str) -> None:
        super().__init__(redact_credentials(message))


def _key(loc: tuple) -> str:
    """A pydantic location as the user writes it: `sources[0].options.glob`."""
    key = ""
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    return key or "(top level)"


# A value under a key whose name holds one of these may be a credential pasted in the wrong
# place; the error names the key and never echoes the value (it would reach logs and the UI).
_SECRET_WORDS = ("key", "token", "secret", "password", "auth")


def _shown_value(error: dict[str, Any]) -> str:
    if error["type"] == "missing":
        return "(missing)"
    names = [part.lower() for part in error["loc"] if isinstance(part, str)]
    # An unknown key is wrong whatever its value, so its value is never needed to fix it.
    if error["type"] == "extra_forbidden" or any(w in n for n in names for w in _SECRET_WORDS):
        return "(value not shown)"
    shown = repr(error.get("input"))
    if redact_credentials(shown) != shown:
        return "(value not shown)"
    if error["type"] == "path":
        return shown  # the whole path: its cut-off end is what the user needs to see
    return shown[:77] + "..." if len(shown) > 80 else shown


def _known_keys(root: type[BaseModel], loc: tuple) -> list[str]:
    """The keys the config model accepts where `loc` points (empty where it cannot tell)."""
    model: Any = root
    for part in loc:
        if isinstance(part, int):
            continue  # a list item: the same model as the list's
        field = model.model_fields.get(part) if isinstance(model, type) else None
        if field is None:
            return []
        annotation = field.annotation
        inner = [a for a in getattr(annotation, "__args__", ()) if isinstance(a, type)]
        model = annotation if isinstance(annotation, type) else (inner[0] if inner else None)
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return []
    return list(model.model_fields)


def _hint(root: type[BaseModel], error: dict[str, Any]) -> str:
    """For an unknown key, the nearest accepted key (a typo such as `revison`)."""
    if error["type"] != "extra_forbidden" or not isinstance(error["loc"][-1], str):
        return ""
    known = _known_keys(root, error["loc"][:-1])
    near = difflib.get_close_matches(error["loc"][-1], known, n=1, cutoff=0.6)
    if near:
        return f"; did you mean {near[0]!r}?"
    return f"; expected one of: {', '.join(known)}" if known else ""


def format_errors(path: str, errors: list[dict[str, Any]], root: type[BaseModel]) -> str:
    """Every problem of a config file, one line each, with a hint for a mistyped key."""
    lines = [f"{path}: {len(errors)} problem(s)"]
    for e in errors:
        lines.append(f"  {_key(e['loc'])} = {_shown_value(e)}: {e['msg']}{_hint(root, e)}")
    return "\n".join(lines)


def yaml_problem(err: yaml.YAMLError) -> str:
    """What PyYAML found and where, without its snippet: the snippet quotes the line, which may
    hold a key pasted next to the mistake."""
    if not isinstance(err, yaml.MarkedYAMLError):
        return type(err).__name__
    mark = err.problem_mark or err.context_mark
    what = "; ".join(p for p in (err.context, err.problem) if p) or "syntax error"
    return f"{what} at line {mark.line + 1}, column {mark.column + 1}" if mark else what
