"""The refactor step: the prompt that turns a raw file into the unified format, and the strict
parser and validator of the model's four-section reply (DESIGN section 1, step 2).

Parsing is lenient on spelling (heading level and punctuation, `Python`/`py`/bare fences) and
strict on content (the code must parse, define the entry points and do no I/O).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.resources
import re
import textwrap
from dataclasses import dataclass

REFACTOR_TEMPLATE_VERSION = "refactor-v3"

_TEMPLATE_FILES = ("refactor_system.md", "refactor_user.md")

# Every status a refactor reply can get, in one place (a row's `status` is one of these).
REFACTOR_REASONS: dict[str, str] = {
    "ok": "the reply has all four sections and both code blocks pass validation",
    "empty_reply": "the reply is empty or only whitespace",
    "missing_section": "a required section heading is absent or its body is empty (detail names it)",
    "missing_code_block": "the Main Function or Input Generator section holds no code block",
    "syntax_error": "a code block does not parse as Python (detail: section, line, message)",
    "missing_main_solution": "no top-level `main_solution` that accepts keyword arguments",
    "missing_input_generator": "no top-level `input_generator` callable without arguments",
    "forbidden_io": "the code prints, reads input, touches files/network/processes, plots or "
    "exits (detail lists what and where)",
}

SECTIONS = ("main_function", "io_description", "input_generator", "problem_statement")
SECTION_TITLES = {
    "main_function": "Main Function",
    "io_description": "Input Output Description",
    "input_generator": "Input Generator",
    "problem_statement": "Problem Statement",
}
# Normalised heading text (lowercase words) -> section. Longest match first.
_HEADING_ALIASES: tuple[tuple[str, str], ...] = (
    ("input and output description", "io_description"),
    ("input output description", "io_description"),
    ("input output descriptions", "io_description"),
    ("i o description", "io_description"),
    ("io description", "io_description"),
    ("input output", "io_description"),
    ("main function", "main_function"),
    ("main solution", "main_function"),
    ("reference code", "main_function"),
    ("input generator", "input_generator"),
    ("problem statement", "problem_statement"),
    ("problem description", "problem_statement"),
    ("query", "problem_statement"),
)
_PYTHON_LABELS = {"python", "python3", "py", "py3"}


# -- templates ---------------------------------------------------------------------------------


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


def template_hash() -> str:
    """sha256 of the refactor template text; part of cache keys and the dataset card."""
    return text_hash(REFACTOR_TEMPLATE_VERSION, *(load_template(n) for n in _TEMPLATE_FILES))


def build_refactor_messages(raw_code: str, *, max_chars: int = 12000) -> list[dict[str, str]]:
    """Chat messages asking the model to refactor `raw_code` (cut at a line end past `max_chars`)."""
    if not isinstance(raw_code, str):
        raise TypeError(f"raw_code must be str, got {type(raw_code).__name__}")
    if max_chars <= 0:
        raise ValueError(f"max_chars must be positive, got {max_chars}")
    code = raw_code.strip("\n")
    if len(code) > max_chars:
        cut = code.rfind("\n", 0, max_chars)
        code = code[: cut if cut > 0 else max_chars] + "\n# ... (rest of the file omitted)"
    user = render(load_template("refactor_user.md"), code=code, fence=fence_for(code))
    return [
        {"role": "system", "content": load_template("refactor_system.md").strip()},
        {"role": "user", "content": user.strip()},
    ]


# -- markdown reading --------------------------------------------------------------------------

_FENCE_OPEN = re.compile(r"^\s{0,8}(?P<fence>`{3,}|~{3,})\s*(?P<label>[^`\s]*)[^`]*$")


@dataclass(frozen=True)
class CodeBlock:
    label: str  # lowercased info string ("" when bare)
    body: str
    closed: bool


def _heading_section(line: str) -> str | None:
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
        return next((sec for alias, sec in _HEADING_ALIASES if norm == alias), None)
    for alias, section in _HEADING_ALIASES:
        # A long sentence that merely begins like a heading name is not a heading.
        if (norm == alias or norm.startswith(alias + " ")) and len(words) - len(alias.split()) <= 3:
            return section
    return None


def split_sections(text: str) -> dict[str, str]:
    """Section bodies keyed by section; headings inside code fences are ignored and a repeated
    heading's last occurrence wins (models sometimes echo the example first)."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    fence: str | None = None
    for line in text.splitlines():
        if fence is None:
            section = _heading_section(line)
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
    i = 0
    while i < len(lines):
        m = _FENCE_OPEN.match(lines[i])
        if not m:
            i += 1
            continue
        fence, label = m.group("fence"), m.group("label").lower()
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
        blocks.append(CodeBlock(label=label, body=_dedent_block(body), closed=closed))
    return blocks


def _dedent_block(lines: list[str]) -> str:
    return textwrap.dedent("\n".join(lines)).strip("\n")


def _strip_single_fence(text: str) -> str:
    """Prose sections sometimes come wrapped in one fence; unwrap it."""
    blocks = code_blocks(text)
    if len(blocks) == 1 and text.strip().startswith(("```", "~~~")):
        return blocks[0].body.strip()
    return text.strip()


def last_python_block(section_text: str) -> CodeBlock | None:
    """The last python-labelled block of a section, else the last bare one."""
    blocks = code_blocks(section_text)
    for wanted in (lambda b: b.label in _PYTHON_LABELS, lambda b: b.label == ""):
        chosen = [b for b in blocks if wanted(b)]
        if chosen:
            return chosen[-1]
    return None


# -- validation --------------------------------------------------------------------------------

_FORBIDDEN_BUILTINS = {
    "print": "print() call",
    "input": "input() call",
    "open": "open() call",
    "exit": "exit() call",
    "quit": "quit() call",
    "breakpoint": "breakpoint() call",
}
# Importing any of these is itself a violation: they exist to plot, talk to the network or
# spawn processes.
_FORBIDDEN_MODULES = {
    "matplotlib": "plotting",
    "pylab": "plotting",
    "seaborn": "plotting",
    "plotly": "plotting",
    "bokeh": "plotting",
    "turtle": "graphics",
    "tkinter": "GUI",
    "pygame": "graphics",
    "socket": "network",
    "ssl": "network",
    "requests": "network",
    "httpx": "network",
    "aiohttp": "network",
    "urllib": "network",
    "urllib2": "network",
    "urllib3": "network",
    "http": "network",
    "ftplib": "network",
    "smtplib": "network",
    "poplib": "network",
    "imaplib": "network",
    "telnetlib": "network",
    "webbrowser": "network",
    "paramiko": "network",
    "subprocess": "subprocess",
    "pty": "subprocess",
    "pexpect": "subprocess",
    "shutil": "file system",
    "tempfile": "file system",
    "glob": "file system",
    "fileinput": "file input",
    "sqlite3": "database file",
}
# Fully qualified calls that do I/O although their module is otherwise harmless.
_FORBIDDEN_CALLS = {
    "sys.exit": "process exit",
    "os._exit": "process exit",
    "os.abort": "process exit",
    "os.system": "shell command",
    "os.popen": "shell command",
    "os.startfile": "shell command",
    "os.fork": "process spawn",
    "os.kill": "process signal",
    "os.open": "file I/O",
    "os.read": "file I/O",
    "os.write": "file I/O",
    "os.remove": "file system",
    "os.unlink": "file system",
    "os.rmdir": "file system",
    "os.removedirs": "file system",
    "os.mkdir": "file system",
    "os.makedirs": "file system",
    "os.rename": "file system",
    "os.replace": "file system",
    "os.listdir": "file system",
    "os.scandir": "file system",
    "os.walk": "file system",
    "os.chdir": "file system",
    "os.chmod": "file system",
    "os.path.exists": "file system",
    "os.path.isfile": "file system",
    "os.path.isdir": "file system",
    "os.path.getsize": "file system",
    "io.open": "file I/O",
    "json.load": "file I/O",
    "json.dump": "file I/O",
    "pickle.load": "file I/O",
    "pickle.dump": "file I/O",
    "numpy.load": "file I/O",
    "numpy.save": "file I/O",
    "numpy.savez": "file I/O",
    "numpy.loadtxt": "file I/O",
    "numpy.savetxt": "file I/O",
    "numpy.genfromtxt": "file I/O",
    "numpy.fromfile": "file I/O",
    "pandas.read_csv": "file I/O",
    "pandas.read_excel": "file I/O",
    "pandas.read_json": "file I/O",
    "pandas.read_parquet": "file I/O",
    "pandas.read_pickle": "file I/O",
    "pandas.read_sql": "file I/O",
    "pandas.read_table": "file I/O",
}
_FORBIDDEN_CALL_PREFIXES = ("os.exec", "os.spawn", "os.posix_spawn")
# Method names that write files whatever object they are called on (DataFrame.to_csv, ...).
_FORBIDDEN_METHODS = {
    "to_csv": "file I/O",
    "to_excel": "file I/O",
    "to_parquet": "file I/O",
    "to_pickle": "file I/O",
    "to_hdf": "file I/O",
    "savefig": "plotting",
    "read_text": "file I/O",
    "write_text": "file I/O",
    "read_bytes": "file I/O",
    "write_bytes": "file I/O",
}
_FORBIDDEN_ATTRS = {"sys.stdin": "standard input", "sys.stdout": "standard output",
                    "sys.stderr": "standard error", "sys.argv": "command-line arguments"}  # fmt: skip


def _dotted(node: ast.AST) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def _aliases(tree: ast.AST) -> dict[str, str]:
    """Local name -> fully qualified name, from every import in the module."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.asname:
                    names[a.asname] = a.name
                else:
                    top = a.name.split(".")[0]
                    names[top] = top
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                names[a.asname or a.name] = f"{node.module}.{a.name}"
    return names


def _qualify(dotted: str, aliases: dict[str, str]) -> str:
    head, _, rest = dotted.partition(".")
    full = aliases.get(head, head)
    return f"{full}.{rest}" if rest else full


def find_forbidden_io(code: str, *, where: str = "code") -> list[str]:
    """Human-readable findings of I/O in `code` (must parse), e.g. "print() call at line 4"."""
    tree = ast.parse(code)
    aliases = _aliases(tree)
    shadowed = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef)} | {
        a for a in aliases
    }
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import | ast.ImportFrom):
            modules = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
            )
            for mod in modules:
                top = mod.split(".")[0]
                if top in _FORBIDDEN_MODULES and not getattr(node, "level", 0):
                    found.append((line, f"import of {mod} ({_FORBIDDEN_MODULES[top]})"))
        elif isinstance(node, ast.Call):
            func = node.func
            if (
                isinstance(func, ast.Name)
                and func.id in _FORBIDDEN_BUILTINS
                and func.id not in shadowed
            ):
                found.append((line, _FORBIDDEN_BUILTINS[func.id]))
                continue
            dotted = _dotted(func)
            if dotted:
                full = _qualify(dotted, aliases)
                if full in _FORBIDDEN_CALLS:
                    found.append((line, f"{dotted}() call ({_FORBIDDEN_CALLS[full]})"))
                    continue
                if full.startswith(_FORBIDDEN_CALL_PREFIXES):
                    found.append((line, f"{dotted}() call (process spawn)"))
                    continue
            if isinstance(func, ast.Attribute) and func.attr in _FORBIDDEN_METHODS:
                found.append((line, f".{func.attr}() call ({_FORBIDDEN_METHODS[func.attr]})"))
        elif isinstance(node, ast.Attribute):
            dotted = _dotted(node)
            if dotted and _qualify(dotted, aliases) in _FORBIDDEN_ATTRS:
                full = _qualify(dotted, aliases)
                found.append((line, f"use of {dotted} ({_FORBIDDEN_ATTRS[full]})"))
    found.sort()
    return [f"{what} at {where} line {line}" for line, what in found]


def _top_level_function(tree: ast.Module, name: str) -> ast.FunctionDef | None:
    found = None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            found = node  # a later definition wins, as at run time
    return found


def _keyword_callable_problem(fn: ast.FunctionDef) -> str | None:
    if fn.args.posonlyargs:
        return "main_solution has positional-only parameters, so it cannot take keyword arguments"
    return None


def _no_arg_problem(fn: ast.FunctionDef) -> str | None:
    a = fn.args
    required = len(a.posonlyargs) + len(a.args) - len(a.defaults)
    required += sum(1 for d in a.kw_defaults if d is None)
    if required > 0:
        return "input_generator must be callable without arguments"
    return None


# -- the reply ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RefactorResult:
    """The parsed reply: `status` is "ok" or a REFACTOR_REASONS code; the parts found so far are
    kept even when the reply is rejected (useful to inspect rejections)."""

    status: str
    detail: str | None = None
    reference_code: str | None = None
    io_description: str | None = None
    input_generator: str | None = None
    problem_statement: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def parse_refactor_reply(text: str | None) -> RefactorResult:
    """Parse and validate a four-section refactor reply."""
    if text is None or not text.strip():
        return RefactorResult("empty_reply", "the reply has no text")
    sections = split_sections(text)
    missing = [SECTION_TITLES[s] for s in SECTIONS if not sections.get(s, "").strip()]
    io_description = (
        _strip_single_fence(sections["io_description"]) if "io_description" in sections else None
    )
    problem = (
        _strip_single_fence(sections["problem_statement"])
        if "problem_statement" in sections
        else None
    )
    parts = {"io_description": io_description or None, "problem_statement": problem or None}
    if missing:
        return RefactorResult("missing_section", "missing or empty: " + ", ".join(missing), **parts)
    for name in ("io_description", "problem_statement"):
        if not parts[name]:
            return RefactorResult("missing_section", f"empty: {SECTION_TITLES[name]}", **parts)

    code: dict[str, str] = {}
    for section in ("main_function", "input_generator"):
        block = last_python_block(sections[section])
        if block is None or not block.body.strip():
            return RefactorResult(
                "missing_code_block", f"no python code block in {SECTION_TITLES[section]}", **parts
            )
        code[section] = block.body
    parts |= {"reference_code": code["main_function"], "input_generator": code["input_generator"]}

    trees: dict[str, ast.Module] = {}
    for section, source in code.items():
        try:
            trees[section] = ast.parse(source)
        except SyntaxError as exc:
            return RefactorResult(
                "syntax_error",
                f"{SECTION_TITLES[section]} line {exc.lineno}: {exc.msg}",
                **parts,
            )

    main = _top_level_function(trees["main_function"], "main_solution")
    if main is None:
        return RefactorResult(
            "missing_main_solution", "Main Function defines no top-level main_solution", **parts
        )
    if problem := _keyword_callable_problem(main):
        return RefactorResult("missing_main_solution", problem, **parts)

    gen = _top_level_function(trees["input_generator"], "input_generator")
    if gen is None:
        return RefactorResult(
            "missing_input_generator",
            "Input Generator defines no top-level input_generator",
            **parts,
        )
    if problem := _no_arg_problem(gen):
        return RefactorResult("missing_input_generator", problem, **parts)

    findings = find_forbidden_io(code["main_function"], where="Main Function")
    findings += find_forbidden_io(code["input_generator"], where="Input Generator")
    if findings:
        return RefactorResult("forbidden_io", "; ".join(findings), **parts)
    return RefactorResult("ok", None, **parts)


def combine_for_sandbox(reference_code: str, input_generator: str) -> str:
    """One module defining both `main_solution` and `input_generator` (generator last, so its
    definition wins if the reference code also defines one)."""
    return f"{reference_code.rstrip()}\n\n\n# --- input generator ---\n{input_generator.strip()}\n"
