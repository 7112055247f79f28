"""The dataset card and stats index as pure functions."""

from __future__ import annotations

import json

import polars as pl
import pytest
import yaml

from codeio_dagster.publish.card import (
    CardInfo,
    CardStatic,
    merge_stats,
    render_card,
    sample_table,
    shard_stats,
)
from codeio_dagster.publish.resources import redact


def _index(*records):
    text = None
    for rec in records:
        text = json.dumps(merge_stats(text, rec))
    return json.loads(text)


def test_card_header_lists_configs_with_data_files_and_codeio_pp_default():
    frame = pl.DataFrame({"prompt": ["p"], "turn_1": ["t"]})
    index = _index(
        shard_stats("a", {"codeio": frame, "codeio_pp": frame}, CardInfo(funnel={"raw": 4})),
        shard_stats("b", {"codeio_pp": frame}, CardInfo(funnel={"raw": 6})),
    )
    card = render_card(
        CardStatic(repo_id="o/d", license="mit", tags=["x"]),
        CardInfo(),
        index,
        {"codeio_pp": frame},
    )
    header = yaml.safe_load(card.split("---\n")[1])
    assert header["license"] == "mit" and "x" in header["tags"]
    assert header["configs"] == [
        {
            "config_name": "codeio",
            "data_files": [{"split": "train", "path": "data/codeio/*.parquet"}],
        },
        {
            "config_name": "codeio_pp",
            "default": True,
            "data_files": [{"split": "train", "path": "data/codeio_pp/*.parquet"}],
        },
    ]
    assert "| raw | 10 |" in card
    assert 'load_dataset("o/d", "codeio_pp", split="train")' in card
    assert "## Sample rows (`codeio_pp`)" in card and "| p | t |" in card


def test_without_revision_the_card_shows_and_pulls_codeio():
    frame = pl.DataFrame({"prompt": ["only"], "turn_1": ["answer"]})
    index = _index(shard_stats("a", {"codeio": frame}, CardInfo()))
    card = render_card(CardStatic(repo_id="o/d"), CardInfo(), index, {"codeio": frame})
    assert "`codeio pull o/d --config codeio --revision <sha>`" in card
    assert "## Sample rows (`codeio`)" in card and "| only | answer |" in card
    assert "codeio_pp" not in card


def test_republishing_a_shard_replaces_its_stats_record():
    frame = pl.DataFrame({"prompt": ["p"] * 3})
    index = _index(
        shard_stats("a", {"codeio": frame}, CardInfo(funnel={"raw": 4})),
        shard_stats("a", {"codeio": frame.head(1)}, CardInfo(funnel={"raw": 1})),
    )
    assert list(index["shards"]) == ["a"] and index["shards"]["a"]["rows"] == {"codeio": 1}
    with pytest.raises(ValueError, match="no 'shards' mapping"):
        merge_stats('{"other": 1}', shard_stats("a", {}, CardInfo()))


def test_sample_table_shortens_and_escapes_cells():
    frame = pl.DataFrame({"prompt": ["a|b\n" + "x" * 500], "turn_1": [None]})
    table = sample_table(frame)
    assert "a\\|b" in table and "…" in table and len(table.splitlines()[2]) < 200


def test_redact_hides_the_token_and_token_shaped_strings():
    # Built at run time so no file holds a string shaped like a Hub token; it still has the
    # shape redact() masks by pattern.
    token_shaped = "hf_" + "x" * 16
    assert redact(f"Bearer {token_shaped} and s3cret", "s3cret") == "Bearer hf_*** and ***"


def test_card_hashes_the_prompts_of_the_configured_task_kinds(tmp_path, project_root):
    from codeio_dagster.card import card_facts
    from codeio_dagster.config import load_config
    from codeio_dagster.funnel import MissingReport, funnel_stages

    plugin = project_root / "examples" / "plugins" / "output_type_task.py"
    path = tmp_path / "codeio.yaml"
    path.write_text(
        "sources:\n  - {name: t, kind: folder, options: {path: corpus}}\n"
        f"tasks:\n  plugin_modules: ['{plugin}']\n"
        "  kinds: {output_prediction: 1, output_type_prediction: 1}\n"
    )
    config = load_config(path)
    reports = {stage: {"rows_in": 2, "kept": 1} for stage in funnel_stages(config.revision.turns)}
    frame = pl.DataFrame({"prompt": ["p"]})
    info = card_facts(config, reports, {"codeio": frame})
    hashes = info.prompt_template_hashes
    # input_prediction is not configured; the plugin kind is
    assert set(hashes) == {"refactor", "output_prediction", "output_type_prediction", "feedback"}
    assert len(set(hashes.values())) == 4
    # The funnel is what the stages reported, not a count of the tables handed over.
    assert info.funnel["codeio_rows"] == 1 and info.funnel["raw_files"] == 2
    # A stage that never reported is an error, not a zero on the card.
    del reports["io_pairs"]
    with pytest.raises(MissingReport, match="io_pairs"):
        card_facts(config, reports, {"codeio": frame})
