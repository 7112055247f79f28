"""Each quality gate fails on the bad data it guards against, and passes on good data."""

from __future__ import annotations

import polars as pl
import pytest

from codeio_dagster.assets.check_judges import evaluate, judge_of
from codeio_dagster.assets.checks import CHECKS, check_specs, checks_for
from codeio_dagster.config import CodeioConfig
from codeio_dagster.models import ResponseRecord, polars_schema


def _config(**checks) -> CodeioConfig:
    return CodeioConfig.model_validate(
        {"sources": [{"name": "t", "kind": "folder", "options": {"path": "x"}}], "checks": checks}
    )


def _result(asset, frame, name, metadata=None, config=None):
    (result,) = [r for r in evaluate(asset, frame, metadata, config) if r.check_name == name]
    return result


def _responses(statuses: list[str]) -> pl.DataFrame:
    schema = polars_schema(ResponseRecord)
    rows = {c: [None] * len(statuses) for c in schema}
    rows |= {"status": statuses, "task_id": [f"t{i}" for i in range(len(statuses))]}
    rows |= {"turn": [0] * len(statuses), "cached": [False] * len(statuses)}
    rows |= {k: [0] * len(statuses) for k in ("prompt_tokens", "completion_tokens")}
    rows |= {"cost_usd": [0.0] * len(statuses)}
    return pl.DataFrame(rows, schema=schema)


def test_schema_check_names_the_wrong_column_and_blocks():
    good = _responses(["ok"])
    assert _result("responses", good, "schema").passed
    bad = good.with_columns(pl.col("turn").cast(pl.String)).drop("model")
    result = _result("responses_turn_1", bad, "schema")
    assert not result.passed
    problems = result.metadata["problems"].value
    assert "missing column 'model'" in problems and "'turn' is String" in problems
    assert "ResponseRecord" in result.metadata["checked"].value
    spec = {s.name: s for s in check_specs("responses_turn_1")}["schema"]
    assert spec.blocking


def test_request_failure_rate_fails_above_the_bound_and_when_every_request_failed():
    config = _config()
    half = _responses(["ok", "request_failed"])
    assert _result("responses", half, "request_failure_rate", config=config).passed
    most = _responses(["ok", "request_failed", "request_failed"])
    result = _result("responses", most, "request_failure_rate", config=config)
    assert not result.passed and result.metadata["requests_failed"].value == 2
    # The stage's own report wins when it has one (the counters hardening adds).
    reported = {"requests_failed": 0, "request_failure_rate": 0.0}
    assert _result("responses", most, "request_failure_rate", reported, config).passed


def test_non_empty_fails_on_a_shard_without_usable_files_and_an_empty_dataset():
    raw = pl.DataFrame({"status": ["empty", "duplicate"]})
    assert not _result("raw_code", raw, "non_empty").passed
    assert _result("raw_code", pl.DataFrame({"status": ["ok"]}), "non_empty").passed
    assert not _result("codeio_dataset", pl.DataFrame({"prompt": []}), "non_empty").passed
    blocking = {s.asset_key.to_user_string(): s.blocking for s in check_specs("codeio_dataset")}
    assert blocking == {"codeio_dataset": True}
    # An empty CodeI/O++ shard warns but does not withhold codeio and unified.
    (pp,) = [s for s in check_specs("codeio_pp_dataset") if s.name == "non_empty"]
    assert not pp.blocking


def test_pass_rate_floor_fails_below_the_floor():
    verdicts = pl.DataFrame({"status": ["correct", "wrong", "wrong", "wrong"]})
    assert _result("verdicts", verdicts, "pass_rate_floor", config=_config(min_pass_rate=0.2))
    result = _result("verdicts", verdicts, "pass_rate_floor", config=_config(min_pass_rate=0.5))
    assert not result.passed and result.metadata["pass_rate"].value == 0.25


def test_decontamination_fails_above_the_ceiling():
    tasks = pl.DataFrame({"status": ["ok", "contaminated"]})
    config = _config(max_contamination_rate=0.1)
    meta = {"decontamination_benchmarks": "cruxeval (shipped)"}
    result = _result("prediction_tasks", tasks, "decontamination", meta, config)
    assert not result.passed and result.metadata["contaminated"].value == 1
    assert _result("prediction_tasks", tasks.head(1), "decontamination", meta, config).passed
    # With no benchmark at all the check says it checked nothing, rather than passing.
    unchecked = _result("prediction_tasks", tasks.head(1), "decontamination", {}, config)
    assert not unchecked.passed and "nothing" in unchecked.metadata["checked"].value


@pytest.mark.parametrize(
    "asset",
    ["raw_code", "io_pairs", "responses_turn_2", "verdicts", "codeio_pp_dataset"],
)
def test_every_check_says_what_it_checked(asset):
    frame = pl.DataFrame({"status": ["ok"]})
    for result in evaluate(asset, frame, {}, _config()):
        assert result.metadata["checked"].value, (asset, result.check_name)


def test_every_declared_check_has_a_judge_of_its_own_stage():
    for stage in CHECKS:
        for asset in (stage, f"{stage}_turn_1"):
            for check in checks_for(asset):
                assert callable(judge_of(asset, check.name)), (asset, check.name)
    with pytest.raises(KeyError):
        judge_of("raw_code", "not_declared")
