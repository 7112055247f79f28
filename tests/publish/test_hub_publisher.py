"""HubPublisher through the real HfApi against the Hub-protocol server on 127.0.0.1."""

from __future__ import annotations

import json
import logging

import polars as pl
import pytest
import yaml
from huggingface_hub import HfApi, snapshot_download

from codeio_dagster.publish import CardInfo, HubPublisher, PublishError, PublishSettings

REPO = "codeio/test-data"


def _publisher(hub, token: str | None = None, **kw) -> HubPublisher:
    import os

    settings = PublishSettings(
        target="hub", repo_id=REPO, endpoint=hub.url, retry_base_seconds=0, **kw
    )
    return HubPublisher(settings=settings, token=token or os.environ["HF_TOKEN"])


def _info(shard: str, tables) -> CardInfo:
    return CardInfo(
        project_version="0.1.0",
        models={"responses": "qwen2.5-coder-1.5b"},
        sampling={"responses": {"temperature": 0.7}},
        prompt_template_hashes={"output_prediction": "ab" * 32},
        funnel={"raw_files": 10, "samples": tables["codeio"].height},
    )


def _header(readme: str) -> dict:
    return yaml.safe_load(readme.split("---\n")[1])


def _point_libraries_at(monkeypatch, url: str) -> None:
    """Make `load_dataset(repo_id)` use the test Hub: both libraries read HF_ENDPOINT at import."""
    import datasets.config
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "ENDPOINT", url)
    monkeypatch.setattr(
        constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}"
    )
    monkeypatch.setattr(datasets.config, "HF_ENDPOINT", url)
    monkeypatch.setattr(
        datasets.config, "HUB_DATASETS_URL", url + "/datasets/{repo_id}/resolve/{revision}/{path}"
    )


def test_two_shards_round_trip_through_snapshot_and_load_dataset(
    hub, make_tables, tmp_path, monkeypatch
):
    import datasets

    publisher = _publisher(hub)
    first, second = make_tables("s0001", 4), make_tables("s0002", 3)
    r1 = publisher.publish_partition("s0001", first, _info("s0001", first))
    r2 = publisher.publish_partition("s0002", second, _info("s0002", second))

    api = HfApi(endpoint=hub.url)
    assert api.repo_info(REPO, repo_type="dataset").sha == r2.revision != r1.revision
    assert hub.state.auth_headers_seen  # the token really travelled to the server

    local = snapshot_download(
        REPO,
        repo_type="dataset",
        endpoint=hub.url,
        local_dir=tmp_path / "snap",
        revision=r2.revision,
    )
    for config in ("codeio", "codeio_pp", "unified"):
        ds = datasets.load_dataset(local, config, split="train", cache_dir=str(tmp_path / "ds"))
        got = pl.from_arrow(ds.data.table).sort(ds.column_names[0])
        want = pl.concat([first[config], second[config]]).sort(ds.column_names[0])
        assert got.to_dicts() == want.to_dicts(), config

    _point_libraries_at(monkeypatch, hub.url)
    direct = datasets.load_dataset(REPO, "codeio_pp", split="train", cache_dir=str(tmp_path / "d"))
    want = pl.concat([first["codeio_pp"], second["codeio_pp"]]).sort("id")
    assert pl.from_arrow(direct.data.table).sort("id").to_dicts() == want.to_dicts()

    readme = (tmp_path / "snap" / "README.md").read_text()
    header = _header(readme)
    assert header["license"] == "apache-2.0"
    assert {c["config_name"] for c in header["configs"]} == {"codeio", "codeio_pp", "unified"}
    assert "`s0001`" in readme and "`s0002`" in readme
    assert "| samples | `samples` | 7 |" in readme  # funnel totals add up over both shards
    assert "qwen2.5-coder-1.5b" in readme and "ab" * 32 in readme
    assert f"codeio pull {REPO} --config codeio_pp" in readme


def test_republishing_a_shard_replaces_its_files(hub, make_tables, tmp_path):
    publisher = _publisher(hub)
    publisher.publish_partition("s1", make_tables("s1", 5), CardInfo())
    smaller = make_tables("s1", 2)
    del smaller["unified"]
    publisher.publish_partition("s1", smaller, CardInfo())
    files = hub.files(REPO, repo_type="dataset")
    assert "data/unified/s1.parquet" not in files
    assert pl.read_parquet(files["data/codeio/s1.parquet"]).height == 2


def test_dropped_commit_leaves_last_good_commit_and_next_run_completes(hub, make_tables):
    publisher = _publisher(hub, max_attempts=1)
    good = publisher.publish_partition("s1", make_tables("s1", 3), CardInfo())
    hub.state.fail_next("commit", mode="drop")
    with pytest.raises(PublishError, match="s2.*last good commit"):
        publisher.publish_partition("s2", make_tables("s2", 3), CardInfo())

    api = HfApi(endpoint=hub.url)
    assert api.repo_info(REPO, repo_type="dataset").sha == good.revision
    assert not [p for p in hub.files(REPO) if "s2" in p]
    assert "s2" not in hub.files(REPO)["README.md"].decode()

    done = publisher.publish_partition("s2", make_tables("s2", 3), CardInfo())
    assert api.repo_info(REPO, repo_type="dataset").sha == done.revision
    assert "data/codeio_pp/s2.parquet" in hub.files(REPO)
    assert "`s1`" in hub.files(REPO)["README.md"].decode()


def test_server_errors_are_retried_with_backoff(hub, make_tables):
    publisher = _publisher(hub, max_attempts=3)
    hub.state.fail_next("commit", times=2, mode="500")
    result = publisher.publish_partition("s1", make_tables("s1", 2), CardInfo())
    assert result.attempts == 3
    assert HfApi(endpoint=hub.url).repo_info(REPO, repo_type="dataset").sha == result.revision


def test_wrong_token_fails_at_once_with_a_clear_message_without_the_token(hub, make_tables):
    bad = "hf_WRONG-test-value-not-a-real-token"
    publisher = _publisher(hub, token=bad)
    with pytest.raises(PublishError) as err:
        publisher.publish_partition("s1", make_tables("s1", 2), CardInfo())
    assert "after 1 attempt" in str(err.value) and REPO in str(err.value)
    assert bad not in str(err.value) and bad not in repr(publisher)


def test_planted_token_never_leaks(hub, make_tables, tmp_path, caplog, capsys):
    import os

    planted = os.environ["HF_TOKEN"]
    caplog.set_level(logging.DEBUG)
    publisher = _publisher(hub, max_attempts=2)
    results = [publisher.publish_partition("s1", make_tables("s1", 3), CardInfo())]
    hub.state.fail_next("commit", times=2, mode="500")
    with pytest.raises(PublishError) as err:
        publisher.publish_partition("s2", make_tables("s2", 3), CardInfo())
    results.append(publisher.publish_partition("s2", make_tables("s2", 3), CardInfo()))
    snapshot_download(REPO, repo_type="dataset", endpoint=hub.url, local_dir=tmp_path / "snap")

    assert hub.state.auth_headers_seen == {f"Bearer {planted}"}
    out = capsys.readouterr()
    texts = [r.getMessage() for r in caplog.records] + [out.out, out.err, str(err.value)]
    texts += [r.model_dump_json() for r in results] + [repr(publisher), str(publisher)]
    texts += [b.decode("latin-1") for b in hub.files(REPO).values()]
    texts += [p.read_bytes().decode("latin-1") for p in tmp_path.rglob("*") if p.is_file()]
    assert len(caplog.records) > 5 and len(texts) > 20
    assert not [t for t in texts if planted in t]


def test_xet_against_a_server_without_xet_says_how_to_fix_it(hub, make_tables, monkeypatch):
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", False)
    publisher = _publisher(hub, max_attempts=3)
    with pytest.raises(PublishError, match="after 1 attempt.*HF_HUB_DISABLE_XET=1"):
        publisher.publish_partition("s1", make_tables("s1", 2), CardInfo())
    assert [p for p in hub.files(REPO)] == [".gitattributes"]


def test_a_concurrent_commit_is_detected_and_both_shards_end_up_in_the_card(hub, make_tables):
    publisher = _publisher(hub)
    publisher.publish_partition("s0", make_tables("s0", 2), CardInfo())
    other = _publisher(hub)
    # Another run commits shard s2 after this run read the stats index but before it commits.
    hub.state.on_next(
        "preupload", lambda: other.publish_partition("s2", make_tables("s2", 2), CardInfo())
    )
    result = publisher.publish_partition("s1", make_tables("s1", 2), CardInfo())
    assert result.attempts == 2  # the first commit was refused: its parent was stale
    stats = json.loads(hub.files(REPO)["stats/summary.json"])
    assert stats["shards"] == 3 and stats["rows"]["codeio"] == 6
    assert {f"stats/shards/{s}.json" for s in ("s0", "s1", "s2")} <= set(hub.files(REPO))
    readme = hub.files(REPO)["README.md"].decode()
    assert all(f"`{s}`" in readme for s in ("s0", "s1", "s2"))
