"""codeio.yaml, validated: the one place settings enter the pipeline (YAML -> pydantic -> resources).

The sections' models are here (or in their packages: `llm/settings.py`, `sandbox/settings.py`,
`publish/settings.py`); what the models cannot check (plugin options, task kinds, local paths)
is in `config_checks.py`, and how a problem is worded for the user in `config_errors.py`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from codeio_dagster import CONFIG_ENV, DEFAULT_CONFIG
from codeio_dagster.config_checks import path_problems, source_problems, task_problems
from codeio_dagster.config_errors import ConfigError, format_errors, yaml_problem
from codeio_dagster.llm.sections import LLMSection, SamplingParams
from codeio_dagster.publish.sections import PublishSection
from codeio_dagster.sandbox import IOPairLimits
from codeio_dagster.sandbox.settings import SandboxSettings
from codeio_dagster.storage import LocationField, location

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG",
    "CodeioConfig",
    "ConfigError",
    "load_config",
    "parse_config",
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceConfig(Strict):
    """A raw-code source: a plugin found by `kind` in the sources registry, with its options."""

    name: str = Field(pattern=r"^[A-Za-z0-9_]+$", description="shard names start with it")
    kind: str
    options: dict[str, Any] = {}


class ShardConfig(Strict):
    size: int = Field(default=200, ge=1, le=100_000)
    max_file_bytes: int = Field(default=100_000, ge=1)
    max_new_shards_per_tick: int = Field(default=10, ge=1)


class StagesConfig(Strict):
    """Model and sampling settings per LLM stage."""

    refactor: SamplingParams = SamplingParams(temperature=0.7, max_tokens=2048)
    prediction: SamplingParams = SamplingParams(temperature=0.7, max_tokens=1024)
    revision: SamplingParams = SamplingParams(temperature=0.7, max_tokens=1024)


class TasksConfig(Strict):
    """How many tasks of each kind per function; kinds are task plugins found by name."""

    kinds: dict[str, int] = {"output_prediction": 3, "input_prediction": 3}
    include_reference_code: bool = True
    plugin_modules: list[str] = []

    @field_validator("kinds")
    @classmethod
    def _counts(cls, value: dict[str, int]) -> dict[str, int]:
        bad = {k: v for k, v in value.items() if v < 0}
        if bad:
            raise ValueError(f"task counts must be >= 0, got {bad}")
        if not value:
            raise ValueError("at least one task kind is needed")
        return value


class RevisionConfig(Strict):
    turns: int = Field(default=1, ge=0, le=5)


class DecontaminationConfig(Strict):
    benchmarks: list[Path] = []
    # Benchmarks whose n-gram hashes ship with the package (13-grams), checked out of the box.
    builtin: list[str] = ["cruxeval"]
    ngram: int = Field(default=13, ge=3, le=64)

    @model_validator(mode="after")
    def _builtin_sets_exist_at_this_n(self) -> DecontaminationConfig:
        from codeio_dagster.decontam import BUILTIN_BENCHMARKS, BUILTIN_NGRAM

        unknown = [name for name in self.builtin if name not in BUILTIN_BENCHMARKS]
        if unknown:
            raise ValueError(
                f"decontamination.builtin: no shipped n-grams for {unknown}; "
                f"shipped: {list(BUILTIN_BENCHMARKS)}"
            )
        if self.builtin and self.ngram != BUILTIN_NGRAM:
            raise ValueError(
                f"decontamination.ngram is {self.ngram} but the shipped benchmark n-grams are "
                f"{BUILTIN_NGRAM}-grams: set ngram: {BUILTIN_NGRAM}, or builtin: [] and name "
                "the benchmark files under benchmarks"
            )
        return self


class DedupConfig(Strict):
    """Near-duplicate removal of unified functions (MinHash-LSH on normalised reference code)."""

    enabled: bool = False
    # Estimated Jaccard similarity of normalised token 5-grams at which a function counts as a
    # copy of an earlier one; below 0.5 unrelated functions sharing boilerplate would match.
    threshold: float = Field(default=0.7, ge=0.5, le=1.0)
    num_perm: int = Field(default=128, ge=16, le=1024)


class ChecksConfig(Strict):
    # Warns (does not block): a floor of 0 could never fail.
    min_pass_rate: float = Field(default=0.05, ge=0.0, le=1.0)
    max_contamination_rate: float = Field(default=0.05, ge=0.0, le=1.0)


class CodeioConfig(Strict):
    """The whole of codeio.yaml."""

    data_dir: LocationField = Path("data")
    sources: list[SourceConfig] = Field(min_length=1)
    source_plugin_modules: list[str] = []
    shards: ShardConfig = ShardConfig()
    llm: LLMSection = LLMSection()
    stages: StagesConfig = StagesConfig()
    tasks: TasksConfig = TasksConfig()
    revision: RevisionConfig = RevisionConfig()
    io_pairs: IOPairLimits = IOPairLimits()
    sandbox: SandboxSettings = SandboxSettings()
    decontamination: DecontaminationConfig = DecontaminationConfig()
    dedup: DedupConfig = DedupConfig()
    checks: ChecksConfig = ChecksConfig()
    publish: PublishSection = PublishSection()

    @field_validator("sandbox", mode="before")
    @classmethod
    def _sandbox_shorthand(cls, value: Any) -> Any:
        # `sandbox: unsafe_subprocess` (or `nsjail`) is the documented short form.
        return {"mode": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _unique_source_names(self) -> CodeioConfig:
        names = [s.name for s in self.sources]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"source names must be unique, repeated: {dupes}")
        return self

    def source(self, name: str) -> SourceConfig:
        for source in self.sources:
            if source.name == name:
                return source
        raise KeyError(f"no source named {name!r} in the config")


def parse_config(
    data: Any, *, origin: str = "codeio.yaml", base_dir: Path | None = None
) -> CodeioConfig:
    """Validate a parsed YAML document; relative paths are taken from `base_dir`."""
    if data is None:
        raise ConfigError(
            f"{origin}: the file is empty; it needs at least a `sources:` list "
            "(see the commented codeio.yaml shipped with the project)"
        )
    if not isinstance(data, dict):
        raise ConfigError(
            f"{origin}: expected a mapping at the top level, got {type(data).__name__}"
        )
    problems: list[dict[str, Any]] = []
    try:
        config = CodeioConfig.model_validate(data)
    except ValidationError as err:
        problems = list(err.errors())
    # Source options and task kinds belong to plugins, so the config model cannot check them;
    # they are checked here so a bad one fails at load, with the other problems, not mid-run.
    problems += source_problems(data, base_dir) + task_problems(data, base_dir)
    if problems:
        raise ConfigError(format_errors(origin, problems, CodeioConfig))
    return _resolve_paths(config, base_dir) if base_dir else config


def load_config(path: str | Path | None = None) -> CodeioConfig:
    """Read codeio.yaml (or $CODEIO_CONFIG) and validate it before any work starts, the local
    paths it names included (see `path_problems`)."""
    path = Path(path or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found (set ${CONFIG_ENV} or pass --config)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {yaml_problem(err)}") from None
    config = parse_config(data, origin=str(path), base_dir=path.resolve().parent)
    # What exists only on this machine is checked last, once the document itself is valid.
    problems = path_problems(config)
    if problems:
        raise ConfigError(format_errors(str(path), problems, CodeioConfig))
    return config


def _resolve_paths(config: CodeioConfig, base: Path) -> CodeioConfig:
    def absolute(p: Path) -> Path:
        return p if p.is_absolute() else base / p

    sources = []
    for source in config.sources:
        options = dict(source.options)
        if "path" in options and not Path(str(options["path"])).is_absolute():
            options["path"] = str(base / str(options["path"]))
        sources.append(source.model_copy(update={"options": options}))

    def module(m: str) -> str:
        # A dotted module name is looked up on sys.path; only file paths are relative to the file.
        return str(absolute(Path(m))) if m.endswith(".py") else m

    return config.model_copy(
        update={
            "data_dir": absolute(config.data_dir),
            "source_plugin_modules": [module(m) for m in config.source_plugin_modules],
            "tasks": config.tasks.model_copy(
                update={"plugin_modules": [module(m) for m in config.tasks.plugin_modules]}
            ),
            "llm": config.llm.model_copy(
                update={
                    "cache_path": (
                        str(absolute(Path(config.llm.cache_path)))
                        if config.llm.cache_path
                        else None
                    )
                }
            ),
            "sources": sources,
            "publish": config.publish.model_copy(
                update={"local_dir": str(absolute(location(config.publish.local_dir)))}
            ),
            "decontamination": config.decontamination.model_copy(
                update={"benchmarks": [absolute(p) for p in config.decontamination.benchmarks]}
            ),
        }
    )
