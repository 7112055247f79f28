"""Reading model replies as markdown: fenced code blocks and heading-delimited sections.

Lenient on spelling (fence length and kind, `Python`/`py`/bare labels, heading level and
punctuation), because models vary; what a section must contain is checked by the caller.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

PYTHON_LABELS = {"python", "python3", "py", "py3"}

# Possessive quantifiers: the same matches as the greedy pattern, but a long line that is no
# fence (many spaces, then a backtick) fails in one pass instead of backtracking quadratically.
_FENCE_OPEN = re.compile(r"^\s{0,8}(?P<fence>`{3,}+|~{3,}+)\s*+(?P<label>[^`\s]*+)[^`]*+$")


@dataclass(frozen=True)
class CodeBlock:
    label: str  # lowercased info string ("" when bare)
    body: str
    closed: bool
    start: int = 0  # offset in the text of the opening fence line


def _heading_section(line: str, aliases: Sequence[tuple[str, str]]) -> str | None:
    """The section a heading line names (`## Main Function:`, `### 1. Input Generator`, a bold
    line `**Problem Statement**`), or None when the line is no such heading."""
    stripped = line.strip()
    plain = False
    if stripped.startswith("#"):
        text = stripped.lstrip("#")
    elif stripped.startswith("**") and stripped.rstrip(":").endswith("**"):
        text = stripped
    elif 0 < len(stripped) <= 40 and stripped[0].isalpha():
        # A bare line such as "Main Function:" counts only when it is exactly a heading name.
        text, plain = stripped, True
    else:
        return None
    words = re.sub(r"[^a-z0-9]+", " ", text.lower()).split()
    while words and (words[0].isdigit() or words[0] in {"step", "part", "section"}):
        words.pop(0)
    norm = " ".join(words)
    if plain:
        return next((sec for alias, sec in aliases if norm == alias), None)
    for alias, section in aliases:
        # A long sentence that merely begins like a heading name is not a heading.
        if (norm == alias or norm.startswith(alias + " ")) and len(words) - len(alias.split()) <= 3:
            return section
    return None


def split_sections(text: str, aliases: Sequence[tuple[str, str]]) -> dict[str, str]:
    """Section bodies keyed by section; `aliases` maps normalised heading text (lowercase words,
    longest first) to a section. Headings inside code fences are ignored and a repeated heading's
    last occurrence wins (models sometimes echo the example first)."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    fence: str | None = None
    for line in text.splitlines():
        if fence is None:
            section = _heading_section(line, aliases)
            if section is not None:
                current = sections[section] = []
                continue
            m = _FENCE_OPEN.match(line)
            if m:
                fence = m.group("fence")
        elif line.strip().startswith(fence[0] * len(fence)) and not line.strip().strip(fence[0]):
            fence = None
        if current is not None:
            current.append(line)
    return {k: "\n".join(v).strip("\n") for k, v in sections.items()}


def code_blocks(text: str) -> list[CodeBlock]:
    """Fenced blocks of a markdown text, in order; an unclosed last fence runs to the end."""
    blocks: list[CodeBlock] = []
    lines = text.splitlines()
    offsets = [0]
    for line in text.splitlines(keepends=True):
        offsets.append(offsets[-1] + len(line))
    i = 0
    while i < len(lines):
        m = _FENCE_OPEN.match(lines[i])
        if not m:
            i += 1
            continue
        fence, label = m.group("fence"), m.group("label").lower()
        start = offsets[i]
        body: list[str] = []
        i += 1
        closed = False
        while i < len(lines):
            s = lines[i].strip()
            if s.startswith(fence[0] * len(fence)) and not s.strip(fence[0]):
                closed = True
                i += 1
                break
            body.append(lines[i])
            i += 1
        blocks.append(CodeBlock(label, _dedent_block(body), closed, start))
    return blocks


def _dedent_block(lines: list[str]) -> str:
    return textwrap.dedent("\n".join(lines)).strip("\n")


def strip_single_fence(text: str) -> str:
    """Prose sections sometimes come wrapped in one fence; unwrap it."""
    blocks = code_blocks(text)
    if len(blocks) == 1 and text.strip().startswith(("```", "~~~")):
        return blocks[0].body.strip()
    return text.strip()


def last_python_block(section_text: str) -> CodeBlock | None:
    """The last python-labelled block of a section, else the last bare one."""
    blocks = code_blocks(section_text)
    for wanted in (lambda b: b.label in PYTHON_LABELS, lambda b: b.label == ""):
        chosen = [b for b in blocks if wanted(b)]
        if chosen:
            return chosen[-1]
    return None
