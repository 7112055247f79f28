"""Imported only by warm_runs' fork server: loads the definitions it serves, if they load.

Loading them here is this module's whole purpose (multiprocessing's fork server can only import
modules). It is what the code server does at its start, and what every run does again: import
the module and build its Definitions, which imports each stage's module. Errors are ignored: the
run loads the definitions again, and Dagster reports the error as the run's.
"""

import contextlib
import gc
import os

from codeio_dagster.warm_runs import DEFINITIONS_ENV

if os.environ.get(DEFINITIONS_ENV):
    with contextlib.suppress(Exception):
        from dagster._core.definitions.reconstruct import repository_def_from_target_def
        from dagster._core.workspace.autodiscovery import loadable_targets_from_python_module

        for target in loadable_targets_from_python_module(os.environ[DEFINITIONS_ENV], os.getcwd()):
            repository_def_from_target_def(target.target_definition)

# The last module the fork server imports. What it holds now is shared by every run forked from
# it; frozen, the runs' garbage collections neither scan it nor write to its pages (which would
# copy them into each run).
gc.collect()
gc.freeze()
