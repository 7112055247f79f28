"""Imported only by warm_runs' fork server: the definitions module it serves and the modules
that building its definitions imports, if they import.

Importing them here is this module's whole purpose (multiprocessing's fork server can only
import modules). Errors are ignored: the run imports them again, and Dagster reports the error
as the run's. Nothing is executed beyond imports: building the Definitions could start polars'
thread pool, and a process forked after that deadlocks the first time it uses polars
(tests/core/test_warm_runs.py checks that the fork server has no such threads).
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

# The last module the fork server imports. What it holds now is shared by every run forked from
# it; frozen, the runs' garbage collections neither scan it nor write to its pages (which would
# copy them into each run).
gc.collect()
gc.freeze()
