"""Imported by warm_runs before its fork server exists: the definitions module the code server
serves and the modules that building its definitions imports, if they import.

Importing them is this module's purpose (it is also what multiprocessing's own fork server
imports, where warm_runs falls back on it, which can only import modules); it also builds the
Definitions once, and drops them, to warm the caches every later build uses. Errors are
ignored: Dagster imports the module again and reports the error. Nothing else is executed:
anything that started polars' thread pool here would deadlock every process forked after it
the first time it used polars (tests/core/test_warm_runs.py checks that importing all this,
the build included, starts no such threads).
"""

import contextlib
import gc
import importlib
import os
import pkgutil

from codeio_dagster.warm_runs import DEFINITIONS_ENV


def _build_definitions_once(module) -> None:
    """Build the module's lazy Definitions (`@dg.definitions`) and their repository, and drop
    them. The first build in a process costs twice what later ones do (0.11 against 0.05 s:
    the config's validation, the resources' config schemas, the stages' code versions, all
    cached once made); made here, the code server's own load and every run's start from warm.
    It starts no thread and writes no file (tests/core/test_warm_runs.py checks the threads)."""
    from dagster.components.definitions import LazyDefinitions

    for value in list(vars(module).values()):
        if isinstance(value, LazyDefinitions) and not value.has_context_arg:
            value().get_repository_def()


# Whether _build_definitions_once built them (their errors are Dagster's to report).
built = False

if os.environ.get(DEFINITIONS_ENV):
    module = None
    with contextlib.suppress(Exception):
        module = importlib.import_module(os.environ[DEFINITIONS_ENV])
    # The project's stages are imported when its Definitions are built, not with the module.
    with contextlib.suppress(Exception):
        assets = importlib.import_module("codeio_dagster.assets")
        for stage in pkgutil.iter_modules(assets.__path__, "codeio_dagster.assets."):
            with contextlib.suppress(Exception):
                importlib.import_module(stage.name)
    if module is not None:
        with contextlib.suppress(Exception):
            _build_definitions_once(module)
            built = True

# The last module the code server imports before it forks the fork server. What the process holds
# now is shared by every run forked from it; frozen, the runs' garbage collections neither scan
# it nor write to its pages (which would copy them into each run). The fork server freezes again
# once it has imported what only runs need (warm_runs).
gc.collect()
gc.freeze()
