"""The dataset card and the running stats summary as pure functions."""

from __future__ import annotations

import json
import re

import polars as pl
import pytest
import yaml

from codeio_dagster.publish.card import CardInfo, CardStatic, render_card, sample_table
from codeio_dagster.publish.hub import redact
from codeio_dagster.publish.stats import (
    RECENT_SHARDS,
    shard_stats,
    summary_from_legacy,
    update_summary,
)


def _index(*records):
    """The summary after publishing `records` in order (a shard's previous record replaced)."""
    summary, last = None, {}
    for rec in records:
        summary = json.loads(json.dumps(update_summary(summary, last.get(rec["shard"]), rec)))
        last[rec["shard"]] = rec
    return summary


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
    assert "| raw | `raw` | 10 |" in card
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
    summary = _index(
        shard_stats("a", {"codeio": frame}, CardInfo(funnel={"raw": 4})),
        shard_stats("b", {"codeio": frame, "unified": frame}, CardInfo(funnel={"raw": 2})),
        shard_stats("a", {"codeio": frame.head(1)}, CardInfo(funnel={"raw": 1})),
    )
    assert summary["shards"] == 2
    assert summary["rows"] == {"codeio": 4, "unified": 3}
    assert summary["funnel"] == {"raw": 3}
    assert [r["shard"] for r in summary["recent"]] == ["b", "a"]
    # b is the only shard with `unified`: republishing it without drops the config.
    summary = update_summary(
        summary,
        shard_stats("b", {"codeio": frame, "unified": frame}, CardInfo(funnel={"raw": 2})),
        shard_stats("b", {"codeio": frame}, CardInfo(funnel={"raw": 2})),
    )
    assert summary["config_shards"] == {"codeio": 2} and summary["rows"]["unified"] == 0
    with pytest.raises(ValueError, match="not a codeio summary"):
        update_summary({"other": 1}, None, shard_stats("a", {}, CardInfo()))


def test_summary_stays_the_same_size_however_many_shards():
    frame = pl.DataFrame({"prompt": ["p"] * 2})
    records = [shard_stats(f"s{i:04d}", {"codeio": frame}, CardInfo()) for i in range(50)]
    summary = _index(*records)
    assert summary["shards"] == 50 and summary["rows"] == {"codeio": 100}
    assert [r["shard"] for r in summary["recent"]] == [f"s{i:04d}" for i in range(40, 50)]
    assert len(summary["recent"]) == RECENT_SHARDS
    # Only the numbers differ from the summary of the first ten: it holds no per-shard list.
    small = json.dumps(_index(*records[:RECENT_SHARDS]))
    assert re.sub(r"\d+", "0", json.dumps(summary)) == re.sub(r"\d+", "0", small)
    card = render_card(CardStatic(repo_id="o/d"), CardInfo(), summary, {"codeio": frame})
    assert "50 shard(s) published" in card and "`s0049`" in card and "`s0039`" not in card


def test_a_legacy_index_becomes_the_summary_and_records():
    frame = pl.DataFrame({"prompt": ["p"] * 2})
    a = shard_stats("a", {"codeio": frame}, CardInfo(funnel={"raw": 4}))
    b = shard_stats("b", {"codeio": frame.head(1)}, CardInfo(funnel={"raw": 1}))
    summary, records = summary_from_legacy(json.dumps({"shards": {"a": a, "b": b}}))
    assert records == {"a": a, "b": b}
    assert summary == _index(a, b)
    with pytest.raises(ValueError, match="no 'shards' mapping"):
        summary_from_legacy('{"other": 1}')


def test_sample_table_shortens_and_escapes_cells():
    frame = pl.DataFrame({"prompt": ["a|b\n" + "x" * 500], "turn_1": [None]})
    table = sample_table(frame)
    assert "a\\|b" in table and "…" in table and len(table.splitlines()[2]) < 300


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
    (tmp_path / "corpus").mkdir()  # the source folder must exist at load
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


def test_card_documents_every_column_of_every_config_and_cites_the_paper():
    from codeio_dagster.models import DatasetRow, UnifiedDatasetRow
    from codeio_dagster.publish.card import COLUMN_DOCS

    assert list(COLUMN_DOCS["codeio"]) == list(DatasetRow.model_fields)
    assert list(COLUMN_DOCS["codeio_pp"]) == list(DatasetRow.model_fields)
    assert list(COLUMN_DOCS["unified"]) == list(UnifiedDatasetRow.model_fields)
    frame = pl.DataFrame({"prompt": ["p"]})
    index = _index(shard_stats("a", {"codeio_pp": frame, "unified": frame}, CardInfo()))
    card = render_card(CardStatic(repo_id="o/d"), CardInfo(), index, {})
    assert "| `verdict_2` | verdict of the revised answer" in card
    assert "| `reference_code` |" in card
    assert "arXiv:2502.07316" in card and "@article{li2025codeio" in card
    # The paper's rule for codeio_pp, including that a revision may still be wrong.
    assert "whether or not the revision is right" in card


def test_a_local_folder_is_never_named_by_its_path_in_the_load_example(tmp_path):
    frame = pl.DataFrame({"prompt": ["p"]})
    index = _index(shard_stats("a", {"codeio": frame}, CardInfo()))
    folder = str(tmp_path / "published")
    card = render_card(CardStatic(repo_id=folder), CardInfo(), index, {})
    assert folder not in card and str(tmp_path) not in card
    assert 'load_dataset("<owner>/<name>", "codeio", split="train")' in card
