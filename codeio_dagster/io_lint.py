"""The I/O lint: finds code that prints, reads input, touches files, network or processes,
plots or exits, which a unified function must not do (its inputs and outputs are its arguments
and its return value)."""

from __future__ import annotations

import ast

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


def find_forbidden_io(code: str | ast.Module, *, where: str = "code") -> list[str]:
    """Human-readable findings of I/O in `code` (source that parses, or its tree), e.g.
    "print() call at line 4"."""
    tree = code if isinstance(code, ast.Module) else ast.parse(code)
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
