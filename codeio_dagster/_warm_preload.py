"""Imported only by warm_runs' fork server: the definitions module it serves, if that imports.

Importing it here is this module's whole purpose (multiprocessing's fork server can only
import modules). An error is ignored: the run imports the module again, and Dagster reports it.
"""

import contextlib
import importlib
import os

from codeio_dagster.warm_runs import DEFINITIONS_ENV

if os.environ.get(DEFINITIONS_ENV):
    with contextlib.suppress(Exception):
        importlib.import_module(os.environ[DEFINITIONS_ENV])
