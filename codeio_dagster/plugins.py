"""A small plugin registry: classes found by name via entry points, explicit registration or a
local module (a dotted module path or a `.py` file)."""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any


class PluginError(LookupError):
    """A plugin name is unknown or a plugin could not be loaded."""


class Registry:
    """Plugin classes of one entry-point group, all subclasses of `base`, found by `name`."""

    def __init__(self, group: str, base: type):
        self.group = group
        self.base = base
        self._classes: dict[str, type] = {}
        # Entry points are discovered once but each is imported only when asked for, so an
        # optional dependency of one plugin never breaks the others.
        self._entry_points: dict[str, importlib.metadata.EntryPoint] | None = None

    def __repr__(self) -> str:
        return f"Registry(group={self.group!r}, base={self.base.__name__})"

    def register(self, name: str, cls: type, *, replace: bool = False) -> type:
        """Register `cls` under `name`; a different class under a taken name needs `replace`."""
        self._check_class(name, cls, origin="register()")
        known = self._classes.get(name)
        if known is not None and known is not cls and not replace:
            raise PluginError(
                f"{self.group}: name {name!r} is already taken by {_qualname(known)}; "
                f"cannot register {_qualname(cls)} (pass replace=True to override)"
            )
        self._classes[name] = cls
        return cls

    def load_entry_points(self) -> list[str]:
        """Discover the group's entry points (once); returns their names."""
        if self._entry_points is None:
            found = importlib.metadata.entry_points(group=self.group)
            self._entry_points = {ep.name: ep for ep in found}
        return sorted(self._entry_points)

    def load_module(self, path_or_module: str) -> list[str]:
        """Import a module (dotted path or `.py` file) and register its plugin classes.

        Registered: classes defined in that module that subclass `base`, are not abstract and
        have a string `name` attribute. Returns the names registered.
        """
        module = _import_local(path_or_module)
        names = []
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module.__name__ or not issubclass(cls, self.base):
                continue
            if cls is self.base or inspect.isabstract(cls):
                continue
            name = getattr(cls, "name", None)
            if not isinstance(name, str) or not name:
                continue
            self.register(name, cls, replace=True)
            names.append(name)
        if not names:
            raise PluginError(
                f"{self.group}: module {path_or_module!r} defines no concrete subclass of "
                f"{_qualname(self.base)} with a `name` attribute"
            )
        return sorted(names)

    def get(self, name: str) -> type:
        """The class registered as `name`; the error lists every known name."""
        if name in self._classes:
            return self._classes[name]
        self.load_entry_points()
        assert self._entry_points is not None
        ep = self._entry_points.get(name)
        if ep is None:
            known = ", ".join(self.names()) or "(none)"
            raise PluginError(f"{self.group}: unknown plugin {name!r}; known names: {known}")
        try:
            cls = ep.load()
        except Exception as exc:  # the plugin's own import failed: say which and why
            raise PluginError(
                f"{self.group}: plugin {name!r} (entry point {ep.value}) failed to load: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        self._check_class(name, cls, origin=f"entry point {ep.value}")
        self._classes[name] = cls
        return cls

    def names(self) -> list[str]:
        """Every known plugin name: registered, local-module and entry-point ones."""
        self.load_entry_points()
        assert self._entry_points is not None
        return sorted(set(self._classes) | set(self._entry_points))

    def _check_class(self, name: str, cls: Any, *, origin: str) -> None:
        if not (isinstance(cls, type) and issubclass(cls, self.base)):
            raise PluginError(
                f"{self.group}: plugin {name!r} from {origin} is {cls!r}, "
                f"expected a subclass of {_qualname(self.base)}"
            )


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _import_local(path_or_module: str):
    if path_or_module.endswith(".py") or "/" in path_or_module or "\\" in path_or_module:
        path = Path(path_or_module).expanduser().resolve()
        if not path.is_file():
            raise PluginError(f"plugin module file {path_or_module!r} does not exist")
        # A name derived from the path keeps two local files with the same stem apart.
        digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
        mod_name = f"codeio_local_plugin_{path.stem}_{digest}"
        if mod_name in sys.modules:
            return sys.modules[mod_name]
        spec = importlib.util.spec_from_file_location(mod_name, path)
        if spec is None or spec.loader is None:
            raise PluginError(f"cannot import plugin module file {path_or_module!r}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception:
            del sys.modules[mod_name]
            raise
        return module
    try:
        return importlib.import_module(path_or_module)
    except ModuleNotFoundError as exc:
        raise PluginError(f"plugin module {path_or_module!r} not found: {exc}") from exc


@functools.cache
def sources_registry() -> Registry:
    """The raw-code source plugins (entry-point group `codeio_dagster.sources`)."""
    from codeio_dagster.sources.base import Source

    return Registry("codeio_dagster.sources", Source)


@functools.cache
def tasks_registry() -> Registry:
    """The prediction task kind plugins (entry-point group `codeio_dagster.tasks`)."""
    from codeio_dagster.tasks.base import TaskKind

    return Registry("codeio_dagster.tasks", TaskKind)


def task_kinds(names: Iterable[str], plugin_modules: Sequence[str] = ()) -> dict[str, Any]:
    """Instances of the named task kinds, after importing the configured plugin modules."""
    registry = tasks_registry()
    for module in plugin_modules:
        registry.load_module(module)
    return {name: registry.get(name)() for name in names}
