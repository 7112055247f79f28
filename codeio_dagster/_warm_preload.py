"""Imported by warm_runs before its fork server exists: the definitions module the code server
serves and the modules that building its definitions imports, if they import.

Importing them is this module's whole purpose (it is also what multiprocessing's own fork
server imports, where warm_runs falls back on it, which can only import modules). Errors are
ignored: Dagster imports the module again and reports the error. Nothing is executed beyond
imports: building the Definitions could start polars' thread pool, and a process forked after
that deadlocks the first time it uses polars (tests/core/test_warm_runs.py checks that importing
all this starts no such threads).
"""

import contextlib
import gc
import importlib
import os
import pkgutil

from codeio_dagster.warm_runs import DEFINITIONS_ENV

if os.environ.get(DEFINITIONS_ENV):
    with contextlib.suppress(Exception):
        importlib.import_module(os.environ[DEFINITIONS_ENV])
    # The project's stages are imported when its Definitions are built, not with the module.
    with contextlib.suppress(Exception):
        assets = importlib.import_module("codeio_dagster.assets")
        for stage in pkgutil.iter_modules(assets.__path__, "codeio_dagster.assets."):
            with contextlib.suppress(Exception):
                importlib.import_module(stage.name)

# The last module the code server imports before it forks the fork server. What the process holds
# now is shared by every run forked from it; frozen, the runs' garbage collections neither scan
# it nor write to its pages (which would copy them into each run). The fork server freezes again
# once it has imported what only runs need (warm_runs).
gc.collect()
gc.freeze()
