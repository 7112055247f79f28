"""Sensors that turn new raw code into shard partitions and runs."""


def build_sensors() -> list:
    from codeio_dagster.sensors.raw_code_sensor import raw_code_sensor

    return [raw_code_sensor]
