import dagster as dg

from codeio_dagster.partitions import shards
from codeio_dagster.resources import CodeioResource
from codeio_dagster.shards import land_new_shards, unrequested_shards


@dg.sensor(
    job_name="codeio_job",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
)
def raw_code_sensor(context: dg.SensorEvaluationContext, codeio: CodeioResource) -> dg.SensorResult:
    """New raw code in a configured source becomes new shards and one run per shard."""
    # Sources are listed (paths and stamps) and only new or changed units read, so a tick that
    # finds nothing costs a directory listing, not a read of the corpus.
    config = codeio.config
    landing = codeio.landing()
    failed: dict[str, Exception] = {}

    def source_failed(name: str, err: Exception) -> None:
        failed[name] = err
        context.log.error(f"raw-code source {name!r} failed; the other sources still land: {err}")

    land_new_shards(
        config,
        landing,
        max_shards=config.shards.max_new_shards_per_tick,
        on_error=source_failed,
    )
    # Every landed shard the instance has no partition for, not only this tick's: shards are
    # indexed as they land, so a tick that failed after landing some left them unrequested.
    # Names from the landing's index as this process knows it: no index file is read again.
    names = unrequested_shards(
        landing.landed().shard_names(), context.instance.get_dynamic_partitions(shards.name)
    )
    if not names:
        if failed:
            raise RuntimeError(
                "raw-code source(s) failed: "
                + "; ".join(f"{name}: {err!r}" for name, err in failed.items())
            ) from next(iter(failed.values()))
        return dg.SensorResult(skip_reason="no new raw code")
    # The landing (its index and unit stamps), not the cursor, is the record of what was seen,
    # so `codeio demo` and the sensor share it; the cursor names the last shard for the UI.
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=n, partition_key=n) for n in names],
        dynamic_partitions_requests=[shards.build_add_request(names)],
        cursor=names[-1],
    )
