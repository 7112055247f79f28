"""What the config model cannot check by itself, checked at load with the other problems:
source options and task kinds (they belong to plugins) and the local paths the run needs.
Each problem is a pydantic-style error dict, formatted by `config_errors.format_errors`."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

if TYPE_CHECKING:
    from codeio_dagster.config import CodeioConfig


def _problem(loc: tuple, value: Any, msg: str) -> dict[str, Any]:
    return {"type": "source_plugin", "loc": loc, "input": value, "msg": msg}


def _plugin_module_path(module: str, base_dir: Path | None) -> str:
    # As `_resolve_paths` does: a `.py` file is relative to the config file, a dotted name is not.
    if base_dir is None or not module.endswith(".py") or Path(module).is_absolute():
        return module
    return str(base_dir / module)


def _load_modules(registry, modules: Any, loc: tuple, base_dir: Path | None) -> list[dict]:
    problems = []
    for i, module in enumerate(modules if isinstance(modules, list) else []):
        if not isinstance(module, str):
            continue  # the config model reports the type
        try:
            registry.load_module(_plugin_module_path(module, base_dir))
        except Exception as err:  # a user's module: any import error is a config problem
            problems.append(_problem((*loc, i), module, str(err)))
    return problems


def task_problems(data: dict[str, Any], base_dir: Path | None = None) -> list[dict[str, Any]]:
    """Each configured task kind looked up among the task plugins, as pydantic-style errors."""
    from codeio_dagster.plugins import tasks_registry

    tasks = data.get("tasks")
    if not isinstance(tasks, dict):
        return []
    registry = tasks_registry()
    problems = _load_modules(
        registry, tasks.get("plugin_modules"), ("tasks", "plugin_modules"), base_dir
    )
    kinds = tasks.get("kinds")
    known = registry.names()
    for kind in kinds if isinstance(kinds, dict) else {}:
        if kind not in known:
            problems.append(
                _problem(
                    ("tasks", "kinds", kind),
                    kind,
                    f"unknown task kind; expected one of: {', '.join(known)}",
                )
            )
    return problems


def source_problems(data: dict[str, Any], base_dir: Path | None = None) -> list[dict[str, Any]]:
    """Each source's `kind` and `options` checked against its plugin, as pydantic-style errors."""
    from codeio_dagster.plugins import PluginError, sources_registry

    registry = sources_registry()
    problems = _load_modules(
        registry, data.get("source_plugin_modules"), ("source_plugin_modules",), base_dir
    )
    sources = data.get("sources")
    for i, entry in enumerate(sources if isinstance(sources, list) else []):
        if not isinstance(entry, dict) or not isinstance(entry.get("kind"), str):
            continue
        kind, options = entry["kind"], entry.get("options", {})
        if kind not in registry.names():
            expected = ", ".join(registry.names())
            problems.append(
                _problem(
                    ("sources", i, "kind"),
                    kind,
                    f"unknown source kind; expected one of: {expected}",
                )
            )
            continue
        try:
            cls = registry.get(kind)
        except PluginError as err:
            problems.append(_problem(("sources", i, "kind"), kind, str(err)))
            continue
        if not isinstance(options, dict):
            continue
        try:
            cls.Options.model_validate(options)
        except ValidationError as err:
            for e in err.errors():
                msg = e["msg"]
                if e["type"] == "extra_forbidden":
                    msg += f"; {kind} options are: {', '.join(cls.Options.model_fields)}"
                problems.append({**e, "loc": ("sources", i, "options", *e["loc"]), "msg": msg})
    return problems


def _path_problem(loc: tuple, path: str, msg: str) -> dict[str, Any]:
    return {"type": "path", "loc": loc, "input": path, "msg": msg}


def _writable_problem(folder: Path) -> str | None:
    """Why `folder` (made on first use when missing) cannot hold the data, or None."""
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is not a folder"
    try:
        # A real write: os.access says yes to root on a read-only mount point or /proc.
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as err:
        return f"cannot write in {probe}: {err.strerror or err}"
    return None


def path_problems(config: CodeioConfig) -> list[dict[str, Any]]:
    """Local paths the run needs, checked before any work: each source's `path` exists, each
    decontamination benchmark file exists, and a local `data_dir` can be written."""
    from codeio_dagster.plugins import PluginError, sources_registry

    problems = []
    registry = sources_registry()
    for i, source in enumerate(config.sources):
        try:
            options = registry.get(source.kind).Options.model_fields
        except PluginError:
            continue  # reported by source_problems
        path = source.options.get("path")
        field = options.get("path")
        if path is None or field is None or field.annotation is not Path:
            continue
        if not Path(str(path)).exists():
            problems.append(
                _path_problem(
                    ("sources", i, "options", "path"), str(path), "no such file or folder"
                )
            )
    for i, bench in enumerate(config.decontamination.benchmarks):
        if not bench.is_file():
            what = "is a folder, not a file" if bench.is_dir() else "no such file"
            problems.append(_path_problem(("decontamination", "benchmarks", i), str(bench), what))
    if isinstance(config.data_dir, Path):  # object storage is checked where it is used
        why = _writable_problem(config.data_dir)
        if why:
            problems.append(_path_problem(("data_dir",), str(config.data_dir), why))
    return problems
