"""The Dagster instance of a cluster: dagster.yaml with PostgreSQL, the run queue and Ray.

- storage in PostgreSQL (dagster-postgres); the driver named explicitly, since SQLAlchemy 2.1
  maps a bare `postgresql://` to psycopg 3, which the cluster extra does not install;
- a QueuedRunCoordinator (served by `dagster-daemon run`) whose rule admits at most one run per
  shard at a time: every partition run carries the tag `dagster/partition` = its shard, limited
  to 1 per unique value. A second launch of a shard waits until the first ends, and then finds
  its stage tables and every LLM reply already stored;
- RayRunLauncher (dagster-ray): each run is a Ray job (`dagster api execute_run`) submitted
  through the Ray dashboard; inside it the in-process executor keeps the model server and the
  jails warm for the whole shard. Secrets reach the job only through `env_vars` (names, whose
  values are read from the daemon's environment when it launches a run).
"""

from __future__ import annotations

from collections.abc import Sequence

import yaml

# Variables a run needs on whatever node it lands: the instance's and the cache's database
# password, the object store's endpoint and credentials, the config, the remote LLM's and the
# Hub's tokens. Only those set in the daemon's environment are passed.
RUN_ENV_VARS = (
    "DAGSTER_PG_PASSWORD",
    "PGPASSWORD",
    "CODEIO_CONFIG",
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_ALLOW_HTTP",
    "OPENAI_API_KEY",
    "HF_TOKEN",
    "HF_ENDPOINT",
)
PARTITION_TAG = "dagster/partition"


def instance_config(
    *,
    pg_host: str,
    pg_port: int,
    pg_user: str,
    pg_db: str,
    ray_address: str,
    cpus_per_run: int = 1,
    env_vars: Sequence[str] = RUN_ENV_VARS,
    max_concurrent_runs: int = 64,
) -> dict:
    """The dagster.yaml of a cluster instance, as a dict (`yaml.safe_dump` writes it)."""
    return {
        "storage": {
            "postgres": {
                "postgres_db": {
                    "username": pg_user,
                    "password": {"env": "DAGSTER_PG_PASSWORD"},
                    "hostname": pg_host,
                    "port": pg_port,
                    "db_name": pg_db,
                    "scheme": "postgresql+psycopg2",
                }
            }
        },
        "run_coordinator": {
            "module": "dagster.core.run_coordinator",
            "class": "QueuedRunCoordinator",
            "config": {
                "max_concurrent_runs": max_concurrent_runs,
                "dequeue_interval_seconds": 2,
                "tag_concurrency_limits": [
                    {"key": PARTITION_TAG, "value": {"applyLimitPerUniqueValue": True}, "limit": 1}
                ],
            },
        },
        "run_launcher": {
            "module": "dagster_ray",
            "class": "RayRunLauncher",
            "config": {
                "ray": {
                    "address": ray_address,
                    # One CPU per run: the Ray job manager then spreads runs over the nodes
                    # instead of piling every driver on the head node.
                    "num_cpus": cpus_per_run,
                    "env_vars": list(env_vars),
                }
            },
        },
        # A run whose Ray job died (its node lost) is marked failed instead of staying STARTED.
        "run_monitoring": {
            "enabled": True,
            "poll_interval_seconds": 5,
            "max_resume_run_attempts": 0,
        },
        "telemetry": {"enabled": False},
    }


def instance_yaml(**kwargs) -> str:
    return yaml.safe_dump(instance_config(**kwargs), sort_keys=False)
