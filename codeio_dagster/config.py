"""codeio.yaml, validated: the one place settings enter the pipeline (YAML -> pydantic -> resources)."""

from __future__ import annotations

import difflib
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from codeio_dagster.llm import LLMSettings, SamplingParams
from codeio_dagster.publish import PublishSettings
from codeio_dagster.sandbox import IOPairLimits
from codeio_dagster.sandbox.resources import SandboxConfig
from codeio_dagster.storage import LocationField, location

CONFIG_ENV = "CODEIO_CONFIG"
DEFAULT_CONFIG = "codeio.yaml"


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
    llm: LLMSettings = LLMSettings()
    stages: StagesConfig = StagesConfig()
    tasks: TasksConfig = TasksConfig()
    revision: RevisionConfig = RevisionConfig()
    io_pairs: IOPairLimits = IOPairLimits()
    sandbox: SandboxConfig = SandboxConfig()
    decontamination: DecontaminationConfig = DecontaminationConfig()
    dedup: DedupConfig = DedupConfig()
    checks: ChecksConfig = ChecksConfig()
    publish: PublishSettings = PublishSettings()

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


# Text that looks like a credential: a well-known token prefix, or a long run mixing upper- and
# lowercase letters and digits (API keys, base64 secrets; not paths, words or hex hashes).
_CREDENTIAL = re.compile(
    r"(?:hf_|sk-|ghp_|gho_|ghs_|github_pat_|glpat-|xox[abpr]-|AKIA|eyJ)[\w-]{8,}|[\w+=-]{24,}"
)
_PREFIXED = re.compile(r"(?:hf_|sk-|ghp_|gho_|ghs_|github_pat_|glpat-|xox[abpr]-|AKIA|eyJ)")


def _credential(token: str) -> bool:
    if _PREFIXED.match(token):
        return True
    return (
        any(c.isupper() for c in token)
        and any(c.islower() for c in token)
        and any(c.isdigit() for c in token)
    )


def redact_credentials(text: str) -> str:
    """`text` with every credential-looking run replaced by `***`."""
    return _CREDENTIAL.sub(lambda m: "***" if _credential(m.group(0)) else m.group(0), text)


class ConfigError(ValueError):
    """A config that cannot be used, with every problem named by key, value and expectation.

    Whatever raised it (a validator quoting its input, a plugin, the YAML parser), the message
    never carries a credential-looking value: it reaches the terminal, logs and Dagster's UI.
    """

    def __init__(self, message: str) -> None:
        super().__init__(redact_credentials(message))


def _key(loc: tuple) -> str:
    """A pydantic location as the user writes it: `sources[0].options.glob`."""
    key = ""
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    return key or "(top level)"


# A value under a key whose name holds one of these may be a credential pasted in the wrong
# place; the error names the key and never echoes the value (it would reach logs and the UI).
_SECRET_WORDS = ("key", "token", "secret", "password", "auth")


def _shown_value(error: dict[str, Any]) -> str:
    if error["type"] == "missing":
        return "(missing)"
    names = [part.lower() for part in error["loc"] if isinstance(part, str)]
    # An unknown key is wrong whatever its value, so its value is never needed to fix it.
    if error["type"] == "extra_forbidden" or any(w in n for n in names for w in _SECRET_WORDS):
        return "(value not shown)"
    shown = repr(error.get("input"))
    if redact_credentials(shown) != shown:
        return "(value not shown)"
    if error["type"] == "path":
        return shown  # the whole path: its cut-off end is what the user needs to see
    return shown[:77] + "..." if len(shown) > 80 else shown


def _known_keys(loc: tuple) -> list[str]:
    """The keys the config model accepts where `loc` points (empty where it cannot tell)."""
    model: Any = CodeioConfig
    for part in loc:
        if isinstance(part, int):
            continue  # a list item: the same model as the list's
        field = model.model_fields.get(part) if isinstance(model, type) else None
        if field is None:
            return []
        annotation = field.annotation
        inner = [a for a in getattr(annotation, "__args__", ()) if isinstance(a, type)]
        model = annotation if isinstance(annotation, type) else (inner[0] if inner else None)
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return []
    return list(model.model_fields)


def _hint(error: dict[str, Any]) -> str:
    """For an unknown key, the nearest accepted key (a typo such as `revison`)."""
    if error["type"] != "extra_forbidden" or not isinstance(error["loc"][-1], str):
        return ""
    known = _known_keys(error["loc"][:-1])
    near = difflib.get_close_matches(error["loc"][-1], known, n=1, cutoff=0.6)
    if near:
        return f"; did you mean {near[0]!r}?"
    return f"; expected one of: {', '.join(known)}" if known else ""


def _format_errors(path: str, errors: list[dict[str, Any]]) -> str:
    lines = [f"{path}: {len(errors)} problem(s)"]
    for e in errors:
        lines.append(f"  {_key(e['loc'])} = {_shown_value(e)}: {e['msg']}{_hint(e)}")
    return "\n".join(lines)


def _problem(loc: tuple, value: Any, msg: str) -> dict[str, Any]:
    return {"type": "source_plugin", "loc": loc, "input": value, "msg": msg}


def _plugin_module_path(module: str, base_dir: Path | None) -> str:
    # As `_resolve_paths` does: a `.py` file is relative to the config file, a dotted name is not.
    if base_dir is None or not module.endswith(".py") or Path(module).is_absolute():
        return module
    return str(base_dir / module)


def _load_modules(registry, modules: Any, loc: tuple, base_dir: Path | None) -> list[dict]:
    problems = []
    for i, module in enumerate(modules if isinstance(modules, list) else []):
        if not isinstance(module, str):
            continue  # the config model reports the type
        try:
            registry.load_module(_plugin_module_path(module, base_dir))
        except Exception as err:  # a user's module: any import error is a config problem
            problems.append(_problem((*loc, i), module, str(err)))
    return problems


def task_problems(data: dict[str, Any], base_dir: Path | None = None) -> list[dict[str, Any]]:
    """Each configured task kind looked up among the task plugins, as pydantic-style errors."""
    from codeio_dagster.plugins import tasks_registry

    tasks = data.get("tasks")
    if not isinstance(tasks, dict):
        return []
    registry = tasks_registry()
    problems = _load_modules(
        registry, tasks.get("plugin_modules"), ("tasks", "plugin_modules"), base_dir
    )
    kinds = tasks.get("kinds")
    known = registry.names()
    for kind in kinds if isinstance(kinds, dict) else {}:
        if kind not in known:
            problems.append(
                _problem(
                    ("tasks", "kinds", kind),
                    kind,
                    f"unknown task kind; expected one of: {', '.join(known)}",
                )
            )
    return problems


def source_problems(data: dict[str, Any], base_dir: Path | None = None) -> list[dict[str, Any]]:
    """Each source's `kind` and `options` checked against its plugin, as pydantic-style errors."""
    from codeio_dagster.plugins import PluginError, sources_registry

    registry = sources_registry()
    problems = _load_modules(
        registry, data.get("source_plugin_modules"), ("source_plugin_modules",), base_dir
    )
    sources = data.get("sources")
    for i, entry in enumerate(sources if isinstance(sources, list) else []):
        if not isinstance(entry, dict) or not isinstance(entry.get("kind"), str):
            continue
        kind, options = entry["kind"], entry.get("options", {})
        if kind not in registry.names():
            expected = ", ".join(registry.names())
            problems.append(
                _problem(
                    ("sources", i, "kind"),
                    kind,
                    f"unknown source kind; expected one of: {expected}",
                )
            )
            continue
        try:
            cls = registry.get(kind)
        except PluginError as err:
            problems.append(_problem(("sources", i, "kind"), kind, str(err)))
            continue
        if not isinstance(options, dict):
            continue
        try:
            cls.Options.model_validate(options)
        except ValidationError as err:
            for e in err.errors():
                msg = e["msg"]
                if e["type"] == "extra_forbidden":
                    msg += f"; {kind} options are: {', '.join(cls.Options.model_fields)}"
                problems.append({**e, "loc": ("sources", i, "options", *e["loc"]), "msg": msg})
    return problems


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
        raise ConfigError(_format_errors(origin, problems))
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
        raise ConfigError(f"{path}: not valid YAML: {_yaml_problem(err)}") from None
    config = parse_config(data, origin=str(path), base_dir=path.resolve().parent)
    # What exists only on this machine is checked last, once the document itself is valid.
    problems = path_problems(config)
    if problems:
        raise ConfigError(_format_errors(str(path), problems))
    return config


def _yaml_problem(err: yaml.YAMLError) -> str:
    """What PyYAML found and where, without its snippet: the snippet quotes the line, which may
    hold a key pasted next to the mistake."""
    if not isinstance(err, yaml.MarkedYAMLError):
        return type(err).__name__
    mark = err.problem_mark or err.context_mark
    what = "; ".join(p for p in (err.context, err.problem) if p) or "syntax error"
    return f"{what} at line {mark.line + 1}, column {mark.column + 1}" if mark else what


def _path_problem(loc: tuple, path: str, msg: str) -> dict[str, Any]:
    return {"type": "path", "loc": loc, "input": path, "msg": msg}


def _writable_problem(folder: Path) -> str | None:
    """Why `folder` (made on first use when missing) cannot hold the data, or None."""
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is not a folder"
    try:
        # A real write: os.access says yes to root on a read-only mount point or /proc.
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as err:
        return f"cannot write in {probe}: {err.strerror or err}"
    return None


def path_problems(config: CodeioConfig) -> list[dict[str, Any]]:
    """Local paths the run needs, checked before any work: each source's `path` exists, each
    decontamination benchmark file exists, and a local `data_dir` can be written."""
    from codeio_dagster.plugins import PluginError, sources_registry

    problems = []
    registry = sources_registry()
    for i, source in enumerate(config.sources):
        try:
            options = registry.get(source.kind).Options.model_fields
        except PluginError:
            continue  # reported by source_problems
        path = source.options.get("path")
        field = options.get("path")
        if path is None or field is None or field.annotation is not Path:
            continue
        if not Path(str(path)).exists():
            problems.append(
                _path_problem(
                    ("sources", i, "options", "path"), str(path), "no such file or folder"
                )
            )
    for i, bench in enumerate(config.decontamination.benchmarks):
        if not bench.is_file():
            what = "is a folder, not a file" if bench.is_dir() else "no such file"
            problems.append(_path_problem(("decontamination", "benchmarks", i), str(bench), what))
    if isinstance(config.data_dir, Path):  # object storage is checked where it is used
        why = _writable_problem(config.data_dir)
        if why:
            problems.append(_path_problem(("data_dir",), str(config.data_dir), why))
    return problems


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
