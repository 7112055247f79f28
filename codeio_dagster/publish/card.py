"""The dataset card: pure functions from the repo's stats (`stats.py`) to the README text."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import polars as pl
import yaml
from pydantic import BaseModel, ConfigDict, Field

from codeio_dagster.hfhub import is_repo_id
from codeio_dagster.mdtable import md_table
from codeio_dagster.publish.stats import SHARDS_DIR

CONFIGS = ("codeio", "codeio_pp", "unified")
# What each config holds, in the words of the rule the assembly applies (assembly.py).
_DESCRIPTIONS = {
    "codeio": (
        "CodeI/O: every usable first answer (turn 0) to a prediction task, right or wrong, with "
        "its verdict from execution; wrong ones also carry the execution feedback."
    ),
    "codeio_pp": (
        "CodeI/O++: the first answer alone when execution found it right; otherwise the first "
        "answer, the execution feedback and the revised answer, whether or not the revision is "
        "right (`verdict_2` says which). A task whose revision is missing, failed or was cut "
        "off at the token limit is left out."
    ),
    "unified": (
        "The refactored functions in the unified format (problem statement, I/O description, "
        "reference code, input generator) with the I/O pairs that ran deterministically."
    ),
}
# Column reference: every column of the released layouts (models.DatasetRow, UnifiedDatasetRow).
_TASK_COLUMNS = {
    "task_id": "id of the prediction task (from function, kind and pair index)",
    "function_id": "id of the function the task was built from (joins with `unified`)",
    "shard": "the shard the row was built in",
    "kind": "task kind: `output_prediction` (given the input, predict the output) or "
    "`input_prediction` (given the output, predict a feasible input), or a plugin kind",
    "prompt": "the task prompt exactly as the model received it",
    "turn_1": "the model's first answer (chain of thought ending in a JSON answer)",
    "feedback_1": "what execution said of a first answer that was not right; null when right",
    "turn_2": "always null here (no revision)",
    "feedback_2": "always null here",
    "verdict_1": "verdict of the first answer: `correct`, `wrong`, or why it could not be "
    "judged (`parse_error`, `missing_key`, `exec_error`, `timeout`)",
    "verdict_2": "always null here",
    "messages": "the whole conversation as chat messages (role, content), ready for fine-tuning",
}
_REVISED_COLUMNS = _TASK_COLUMNS | {
    "feedback_1": "when the first answer was not right: the execution feedback and the request "
    "to try again, verbatim as sent; null when right",
    "turn_2": "the revised answer; null when the first answer was right",
    "feedback_2": "what execution said of the revised answer; null when it was right or the "
    "first answer was",
    "verdict_2": "verdict of the revised answer (same values as `verdict_1`); null when the "
    "first answer was right",
}
_UNIFIED_COLUMNS = {
    "function_id": _TASK_COLUMNS["function_id"].split(" (")[0],
    "shard": _TASK_COLUMNS["shard"],
    "problem_statement": "the problem the function solves, in words",
    "io_description": "what the inputs and the output are",
    "reference_code": "the refactored (or imported) function `main_solution(**input)`",
    "input_generator": "code that draws valid inputs for `main_solution`; null for a function "
    "imported with I/O pairs of its own and no generator",
    "pairs": "the I/O pairs (canonical JSON `input` keyword arguments, `output` value), each "
    "reproduced by a second run under another hash seed",
}
COLUMN_DOCS = {"codeio": _TASK_COLUMNS, "codeio_pp": _REVISED_COLUMNS, "unified": _UNIFIED_COLUMNS}
CITATION = """@article{li2025codeio,
  title   = {CodeI/O: Condensing Reasoning Patterns via Code Input-Output Prediction},
  author  = {Li, Junlong and Guo, Daya and Yang, Dejian and Xu, Runxin and Wu, Yu and He, Junxian},
  journal = {arXiv preprint arXiv:2502.07316},
  year    = {2025}
}"""


class CardInfo(BaseModel):
    """What the card says about one shard: versions, models, sampling, prompt hashes, funnel."""

    model_config = ConfigDict(extra="forbid")

    project_version: str = "unknown"
    models: dict[str, str] = Field(default_factory=dict)
    sampling: dict[str, dict[str, Any]] = Field(default_factory=dict)
    prompt_template_hashes: dict[str, str] = Field(default_factory=dict)
    funnel: dict[str, int] = Field(default_factory=dict)
    license: str | None = None
    pretty_name: str | None = None
    tags: list[str] = Field(default_factory=list)


class CardStatic(BaseModel):
    """The parts of the card that do not change per shard (from the publisher's config)."""

    model_config = ConfigDict(extra="forbid")

    repo_id: str | None = None
    license: str = "apache-2.0"
    pretty_name: str = "CodeI/O reasoning data"
    tags: list[str] = Field(default_factory=list)


def _configs_present(summary: Mapping[str, Any]) -> list[str]:
    present = {name for name, n in summary["config_shards"].items() if n > 0}
    ordered = [c for c in CONFIGS if c in present]
    return ordered + sorted(present - set(CONFIGS))


def card_header(static: CardStatic, info: CardInfo, summary: Mapping[str, Any]) -> dict[str, Any]:
    configs = _configs_present(summary)
    default = "codeio_pp" if "codeio_pp" in configs else (configs[0] if configs else None)
    total = sum(summary["rows"].values())
    header: dict[str, Any] = {
        "license": info.license or static.license,
        "pretty_name": info.pretty_name or static.pretty_name,
        "task_categories": ["text-generation", "question-answering"],
        "language": ["en"],
        "tags": sorted({"code", "reasoning", "codeio", "synthetic", *static.tags, *info.tags}),
        "size_categories": [_size_category(total)],
        "configs": [
            {
                "config_name": name,
                **({"default": True} if name == default else {}),
                "data_files": [{"split": "train", "path": f"data/{name}/*.parquet"}],
            }
            for name in configs
        ],
    }
    return header


def _size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K")):
        if n < limit:
            return label
    return "100K<n<1M" if n < 1_000_000 else "n>1M"


def sample_table(frame: pl.DataFrame | None, n: int = 3) -> str:
    """A markdown table of the first rows: ids shortened, answers keep their end."""
    from codeio_dagster.metadata import markdown_table

    if frame is None or frame.height == 0 or frame.width == 0:
        return "_(no rows yet)_"
    preferred = ["kind", "prompt", "turn_1", "verdict_1", "feedback_1", "turn_2", "verdict_2"]
    columns = [c for c in preferred if c in frame.columns] or frame.columns[:6]
    return markdown_table(frame, columns, limit=n)


def _load_section(repo_id: str | None, configs: list[str], shown: str) -> list[str]:
    """How to load: by repo id; a folder not yet on the Hub gets a placeholder, never its path."""
    repo = repo_id if is_repo_id(repo_id) else None
    out = ["## How to load", ""]
    if repo is None:
        out += [
            "This folder is laid out as a Hub dataset repo. Upload it (for example "
            "`huggingface-cli upload <owner>/<name> . --repo-type dataset`) and load it by "
            "that id:",
            "",
        ]
    out += ["```python", "from datasets import load_dataset", ""]
    for name in configs:
        out.append(f'{name} = load_dataset("{repo or "<owner>/<name>"}", "{name}", split="train")')
    out += ["```", ""]
    if repo:
        out += [
            "Or download the Parquet files at a pinned revision: "
            f"`codeio pull {repo} --config {shown} --revision <sha>`.",
            "",
        ]
    return out


def _funnel_section(totals: Mapping[str, int]) -> list[str]:
    from codeio_dagster.funnel import LABELS

    out = ["## Funnel (all shards)", ""]
    if not totals:
        return [*out, "_(no funnel recorded)_", ""]
    out += [
        "What each stage reported, added over the shards: raw files in, what each stage kept, "
        "the replies cut at the token limit or failed, and how many answers execution found "
        "right at turn 0 and after revision.",
        "",
        md_table(
            ["step", "key", "count"],
            [(LABELS.get(key, key), f"`{key}`", n) for key, n in totals.items()],
        ),
    ]
    return [*out, ""]


def _columns_section(configs: list[str]) -> list[str]:
    out = ["## Columns", ""]
    done: list[str] = []
    for name in configs:
        docs = COLUMN_DOCS.get(name)
        if not docs or name in done:
            continue
        same = [c for c in configs if COLUMN_DOCS.get(c) is docs]
        done += same
        out += [" and ".join(f"`{c}`" for c in same) + ":", ""]
        out += [md_table(["column", "meaning"], [(f"`{c}`", t) for c, t in docs.items()]), ""]
    return out


def render_card(
    static: CardStatic,
    info: CardInfo,
    summary: Mapping[str, Any],
    samples: Mapping[str, pl.DataFrame],
) -> str:
    """The README.md of the dataset repo: YAML header plus a body from the running totals of
    every shard (`update_summary`), so its size does not grow with the shards published."""
    header = card_header(static, info, summary)
    configs = [c["config_name"] for c in header["configs"]]
    # Examples and the pull command show the default config: codeio_pp when it was built.
    shown = next((c["config_name"] for c in header["configs"] if c.get("default")), "codeio")
    out = ["---", yaml.safe_dump(header, sort_keys=False).rstrip(), "---", ""]
    out += [f"# {header['pretty_name']}", ""]
    out += [
        "Execution-verified reasoning data built with the method of CodeI/O (Li et al., 2025, "
        "arXiv:2502.07316): raw code is refactored by a model into functions with an input "
        "generator, run in a sandbox to collect input/output pairs, and turned into tasks that "
        "ask a model to predict an output from an input or a feasible input from an output; "
        "every answer is checked by running the code. Published shard by shard by "
        "codeio-dagster.",
        "",
        "## Configs",
        "",
        md_table(
            ["config", "rows", "what it holds"],
            [(f"`{n}`", summary["rows"].get(n, 0), _DESCRIPTIONS.get(n, "")) for n in configs],
        ),
        "",
    ]
    out += _load_section(static.repo_id, configs, shown)
    out += _columns_section(configs)
    out += _funnel_section(summary["funnel"])
    recent = summary["recent"][::-1]
    out += [
        "## Shards",
        "",
        f"{summary['shards']} shard(s) published; each shard's numbers are in "
        f"`{SHARDS_DIR}/<shard>.json`. The latest {len(recent)}:",
        "",
        md_table(
            ["shard", *configs, "project version"],
            [
                (
                    f"`{rec['shard']}`",
                    *(rec["rows"].get(c, 0) for c in configs),
                    rec.get("project_version", "?"),
                )
                for rec in recent
            ],
        ),
    ]
    out += ["", "## Models and sampling", "", f"Project version: `{info.project_version}`.", ""]
    if info.models:
        rows = [
            (stage, f"`{model}`", f"`{json.dumps(info.sampling.get(stage, {}), sort_keys=True)}`")
            for stage, model in info.models.items()
        ]
        out.append(md_table(["stage", "model", "sampling"], rows))
    else:
        out.append("_(no models recorded)_")
    out += ["", "## Prompt templates (sha256)", ""]
    if info.prompt_template_hashes:
        out += [f"- `{name}`: `{h}`" for name, h in sorted(info.prompt_template_hashes.items())]
    else:
        out.append("_(none recorded)_")
    out += ["", f"## Sample rows (`{shown}`)", "", sample_table(samples.get(shown)), ""]
    out += ["## Citation", "", "The method is that of the CodeI/O paper:", ""]
    out += ["```bibtex", CITATION, "```", ""]
    return "\n".join(out)
