"""codeio-dagster: raw code to execution-verified reasoning data, as Dagster assets."""

# Where the config file is found; here, not in `config`, so that a command can know the path
# before it imports pydantic and Dagster (`codeio build` starts its code server first thing).
CONFIG_ENV = "CODEIO_CONFIG"
DEFAULT_CONFIG = "codeio.yaml"
