"""The DAGSTER_HOME `codeio build` runs against: its dagster.yaml, its storage, its telemetry line."""

from __future__ import annotations

import os
from pathlib import Path

# Written into a DAGSTER_HOME that has no dagster.yaml (Dagster warns on every command without
# one). It keeps Dagster's defaults but for the storage classes (the same SQLite files, queried
# at half the CPU) and routes the project's own progress lines (model start, jails, batches)
# into each run's event log, where the UI and `codeio build` show them.
DEFAULT_DAGSTER_YAML = """\
# Written by `codeio build` / `codeio demo` because this DAGSTER_HOME had no dagster.yaml.
# Dagster's defaults apply: runs are queued (served by `dagster-daemon run`, or by `codeio build`
# while it waits), launched as local subprocesses and stored in SQLite files here. One change:
# `storage:` names Dagster's SQLite classes with their database engines kept, where Dagster's
# build one for every query (codeio_dagster/instance_storage.py; about half the CPU of each event
# written). Same files, same schema: delete `storage:` and Dagster's own classes open them.
# Run queues, launchers and storage: https://docs.dagster.io/guides/deploy/dagster-yaml
storage:
  custom:
    module: codeio_dagster.instance_storage
    class: DagsterSqliteStorage
    config:
      base_dir:
        env: DAGSTER_HOME
python_logs:
  python_log_level: INFO
  managed_python_loggers: [codeio_dagster]
# Dagster sends anonymised usage statistics unless you opt out; to opt out, uncomment:
# telemetry:
#   enabled: false
"""


def dagster_home() -> Path:
    """$DAGSTER_HOME (set to ./.dagster_home, as `make dev` uses, when unset), with a dagster.yaml."""
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(Path(".dagster_home").resolve())))
    home.mkdir(parents=True, exist_ok=True)
    yaml_path = home / "dagster.yaml"
    if not yaml_path.exists():
        yaml_path.write_text(DEFAULT_DAGSTER_YAML)
    return home


def import_storage_modules(home: Path) -> None:
    """Import the modules of the instance's storage classes without opening the storage.

    About a second of imports (sqlalchemy, alembic, the storage classes) that opening the
    instance would otherwise do after the code server answers."""
    import importlib

    from dagster._core.instance.ref import InstanceRef

    ref = InstanceRef.from_dir(str(home))
    for data in (
        ref.storage_data,
        ref.run_storage_data,
        ref.event_storage_data,
        ref.schedule_storage_data,
    ):
        if data is not None:
            importlib.import_module(data.module_name)


# Instance settings that move its storage out of DAGSTER_HOME's SQLite files.
_STORAGE_KEYS = ("storage", "run_storage", "event_log_storage", "schedule_storage")
# The files of a DAGSTER_HOME's default SQLite storage, once it has been created.
_STORAGE_FILES = ("history/runs.db", "history/runs/index.db", "schedules/schedules.db")


def default_storage_ready(home: Path) -> bool:
    """Whether the home keeps its storage in its own SQLite files, and they exist already."""
    return default_storage_settings(home) is not None and all(
        (home / name).is_file() for name in _STORAGE_FILES
    )


def storage_made_under_lock(home: Path) -> bool:
    """Whether the home's storage is the one DEFAULT_DAGSTER_YAML names, whose processes open
    (and create) it one at a time (instance_storage.DagsterSqliteStorage), so that a build and
    its code server may open a new home at once."""
    settings = default_storage_settings(home)
    return settings is not None and settings.get("storage") == HOME_SQLITE_STORAGE


def default_storage_settings(home: Path) -> dict | None:
    """The home's dagster.yaml settings, or None when it moves storage out of its SQLite files
    (Dagster's default classes and those DEFAULT_DAGSTER_YAML names keep it there)."""
    import yaml

    try:
        settings = yaml.safe_load((home / "dagster.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return None
    if not isinstance(settings, dict):
        return None
    if settings.get("storage") == HOME_SQLITE_STORAGE:
        return settings
    if any(key in settings for key in _STORAGE_KEYS):
        return None
    return settings


# The `storage:` that DEFAULT_DAGSTER_YAML writes: SQLite files in DAGSTER_HOME, as the default.
HOME_SQLITE_STORAGE = {
    "custom": {
        "module": "codeio_dagster.instance_storage",
        "class": "DagsterSqliteStorage",
        "config": {"base_dir": {"env": "DAGSTER_HOME"}},
    }
}
