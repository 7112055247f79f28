"""Hostile and messy raw code, through the sensor and the raw_code asset (issue 9).

A file name that is not UTF-8, malformed table rows, files over the size bound and links out of
the source folder each become one row with its reason; the rest of the source lands.
"""

from __future__ import annotations

import json
import os
import textwrap

import dagster as dg
import polars as pl
import pytest

from codeio_dagster.assets.raw_code import raw_code
from codeio_dagster.config import load_config
from codeio_dagster.resources import build_resources
from codeio_dagster.sensors.raw_code_sensor import raw_code_sensor

FAKE_SECRET = "codeio-fake-secret-4f2b9c"


def _setup(tmp_path, sources: str, *, max_file_bytes: int = 100_000):
    text = textwrap.dedent(
        """
        data_dir: data
        sources:
        {sources}
        shards: {{size: 50, max_file_bytes: {max_file_bytes}}}
        llm: {{base_url: "http://127.0.0.1:9/v1", cache_path: llm_cache.sqlite}}
        publish: {{target: local, local_dir: published}}
        """
    ).format(
        sources=textwrap.indent(textwrap.dedent(sources).strip(), "  "),
        max_file_bytes=max_file_bytes,
    )
    path = tmp_path / "codeio.yaml"
    path.write_text(text)
    return str(path), dg.DagsterInstance.ephemeral()


def _tick(config_path, instance) -> list[str]:
    """One sensor tick; the partitions it asks for are added, as the daemon would."""
    resources = build_resources(load_config(config_path), config_path)
    context = dg.build_sensor_context(instance=instance, resources={"codeio": resources["codeio"]})
    result = raw_code_sensor(context)
    for request in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return [r.partition_key for r in result.run_requests or []]


def _raw_code(config_path, instance, keys) -> pl.DataFrame:
    """raw_code materialised for `keys`, its rows by path."""
    config = load_config(config_path)
    resources = build_resources(config, config_path)
    frames = []
    for key in keys:
        result = dg.materialize(
            [raw_code], partition_key=key, instance=instance, resources=resources
        )
        assert result.success
        frames.append(pl.read_parquet(config.data_dir / "assets" / "raw_code" / f"{key}.parquet"))
    return pl.concat(frames)


def _by_path(frame: pl.DataFrame) -> dict[str, dict]:
    return {row["path"]: row for row in frame.iter_rows(named=True)}


def test_a_file_name_that_is_not_utf8_lands_under_a_safe_name(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "good.py").write_text("def good():\n    return 1\n")
    latin = os.fsdecode(b"caf\xe9.py")
    (corpus / latin).write_text("def cafe():\n    return 2\n")
    path, instance = _setup(
        tmp_path, '- {name: t, kind: folder, options: {path: corpus, glob: "*.py"}}'
    )

    keys = _tick(path, instance)
    assert keys == ["t-00000"]
    rows = _by_path(_raw_code(path, instance, keys))
    assert rows["good.py"]["status"] == "ok"
    cafe = rows["caf\\xe9.py"]
    assert cafe["status"] == "ok" and "def cafe" in cafe["content"]
    # The name's own bytes stay as provenance.
    assert bytes.fromhex(json.loads(cafe["origin"])["path_bytes"]) == b"caf\xe9.py"
    # Landed once: the next tick finds nothing new.
    assert _tick(path, instance) == []


def test_bad_table_rows_become_rejected_rows_and_the_rest_of_the_table_lands(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    lines = [
        json.dumps({"path": "a.py", "content": "def a():\n    return 1\n"}),
        '{"path": "broken.py", "content": "def b(',  # malformed JSON
        "[1, 2, 3]",  # JSON, but not an object
        json.dumps({"path": "nocol.py", "code": "def c():\n    pass\n"}),
        json.dumps({"path": "int.py", "content": 10**8}),  # was bytes(10**8): 100 MB of NULs
        '{"path": "surrogate.py", "content": "x = \'\\ud800\'"}',  # a lone surrogate
        json.dumps({"path": "z.py", "content": "def z():\n    return 26\n"}),
    ]
    (raw / "rows.jsonl").write_text("\n".join(lines) + "\n")
    pl.DataFrame({"path": ["n1.py", "n2.py"], "content": [7, 8]}).write_parquet(
        raw / "ints.parquet"
    )
    pl.DataFrame({"path": ["p.py"], "content": ["def p():\n    return 3\n"]}).write_parquet(
        raw / "good.parquet"
    )
    # A table without the content column at all is an error of that table alone.
    pl.DataFrame({"path": ["q.py"], "code": ["q = 1\n"]}).write_parquet(raw / "nocol.parquet")
    path, instance = _setup(
        tmp_path,
        """
        - {name: jl, kind: jsonl, options: {path: raw/rows.jsonl}}
        - {name: pq, kind: parquet, options: {path: raw, glob: "*.parquet"}}
        """,
    )

    keys = _tick(path, instance)
    assert keys == ["jl-00000", "pq-00000"]
    rows = _by_path(_raw_code(path, instance, keys))
    status = {p: (r["status"], r["detail"]) for p, r in rows.items()}
    assert status["rows.jsonl:0:a.py"] == ("ok", None)
    assert status["rows.jsonl:6:z.py"] == ("ok", None)
    assert status["rows.jsonl:1"][0] == "bad_row"
    assert status["rows.jsonl:1"][1].startswith("line 2: not JSON")
    assert status["rows.jsonl:2"] == ("bad_row", "line 3: a JSON list, not an object")
    assert status["rows.jsonl:3:nocol.py"][0] == "bad_row"
    assert status["rows.jsonl:3:nocol.py"][1].startswith("line 4: no column 'content'")
    assert status["rows.jsonl:4:int.py"] == ("bad_row", "line 5: content is int, not text or bytes")
    assert rows["rows.jsonl:4:int.py"]["size_bytes"] == 0
    assert status["rows.jsonl:5:surrogate.py"] == ("bad_encoding", None)
    assert status["ints.parquet:0:n1.py"] == ("bad_row", "row 0: content is int, not text or bytes")
    assert status["ints.parquet:1:n2.py"][0] == "bad_row"
    assert status["good.parquet:0:p.py"] == ("ok", None)
    assert json.loads(rows["rows.jsonl:1"]["origin"]) == {"row": 1, "table": "rows.jsonl"}
    assert not any(p.startswith("nocol.parquet") for p in rows)
    # Nothing new, and the broken table is still broken: the tick fails, naming it.
    with pytest.raises(
        RuntimeError, match=r"nocol.parquet: ValueError: parquet source: nocol.parquet has no"
    ):
        _tick(path, instance)


def test_files_over_max_file_bytes_land_as_rejections_only(tmp_path):
    big = "x = 1\n" * 1000  # 6,000 bytes
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "big.py").write_text(big)
    (corpus / "small.py").write_text("y = 2\n")
    rows = [
        {"path": "big.py", "content": big},
        {"path": "nul.py", "content": "\0" * 4000},  # 4,000 bytes, 24,000 escaped in JSON
        {"path": "huge.py", "content": "a" * 80_000},  # a line too long to be read whole
        {"path": "small.py", "content": "z = 3\n"},
    ]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    pl.DataFrame({"path": ["big.py", "small.py"], "content": [big, "w = 4\n"]}).write_parquet(
        tmp_path / "t.parquet"
    )
    path, instance = _setup(
        tmp_path,
        """
        - {name: f, kind: folder, options: {path: corpus, glob: "*.py"}}
        - {name: jl, kind: jsonl, options: {path: rows.jsonl}}
        - {name: pq, kind: parquet, options: {path: t.parquet}}
        """,
        max_file_bytes=1000,
    )

    keys = _tick(path, instance)
    rows = _by_path(_raw_code(path, instance, keys))
    for name in ("big.py", "rows.jsonl:0:big.py", "t.parquet:0:big.py"):
        assert rows[name]["status"] == "oversized", name
        assert rows[name]["size_bytes"] == 6000, name
        assert "over shards.max_file_bytes=1000" in rows[name]["detail"]
    assert rows["rows.jsonl:1:nul.py"]["status"] == "oversized"
    assert rows["rows.jsonl:1:nul.py"]["size_bytes"] == 4000
    # The line limit (6 x max_file_bytes + 64 KiB) rejects a line without holding it whole.
    assert rows["rows.jsonl:2"]["status"] == "oversized"
    assert rows["rows.jsonl:2"]["detail"].startswith("line 3: 80")
    assert [rows[n]["status"] for n in ("small.py", "rows.jsonl:3:small.py")] == ["ok", "ok"]
    # Only the rejections landed: no landed row holds the big file's bytes.
    from codeio_dagster.landing import Landing

    landing = Landing(tmp_path / "data" / "landing")
    landed = pl.concat([landing.read(k) for k in keys])
    assert landed["content"].bin.size().max() < 1000
    assert landed.filter(pl.col("rejected") == "oversized").height == 5


def test_links_out_of_the_folder_are_rejected_and_nothing_of_their_target_is_stored(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("CODEIO_FAKE_SECRET", FAKE_SECRET)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.py").write_text(f"TOKEN = '{FAKE_SECRET}'\n")
    corpus = tmp_path / "corpus"
    (corpus / "sub").mkdir(parents=True)
    (corpus / "good.py").write_text("def good():\n    return 1\n")
    (corpus / "sub" / "inner.py").write_text("def inner():\n    return 2\n")
    os.symlink("../outside/secret.py", corpus / "leak.py")
    os.symlink("/proc/self/environ", corpus / "environ.py")
    os.symlink("/dev/zero", corpus / "zero.py")
    os.symlink("sub/inner.py", corpus / "alias.py")  # a link that stays inside is read
    os.symlink("../outside", corpus / "linked")  # a folder link out: files under it too
    os.mkfifo(corpus / "pipe.py")  # not a regular file: never opened (would block)
    path, instance = _setup(
        tmp_path,
        '- {name: f, kind: folder, options: {path: corpus, glob: "*/*.py"}}\n'
        '- {name: top, kind: folder, options: {path: corpus, glob: "*.py"}}',
    )

    keys = _tick(path, instance)
    rows = _by_path(_raw_code(path, instance, keys))
    assert {p: r["status"] for p, r in rows.items()} == {
        "sub/inner.py": "ok",
        "linked/secret.py": "outside_root",
        "alias.py": "duplicate",  # read through the link: the same bytes as sub/inner.py
        "environ.py": "outside_root",
        "good.py": "ok",
        "leak.py": "outside_root",
        "zero.py": "outside_root",
    }
    assert rows["alias.py"]["duplicate_of"] == "sub/inner.py"
    assert "outside the source folder" in rows["leak.py"]["detail"]
    # Nothing of a target: not its bytes, not its path, in the landing or the asset.
    from codeio_dagster.landing import Landing

    landed = pl.concat([Landing(tmp_path / "data" / "landing").read(k) for k in keys])
    for frame in (landed, pl.DataFrame(list(rows.values()))):
        for row in frame.iter_rows(named=True):
            text = json.dumps(row, default=lambda v: v.decode("latin-1"))
            assert FAKE_SECRET not in text and "environ" not in text.replace("environ.py", "")
            assert "/outside" not in text and "/proc" not in text
    assert landed.filter(pl.col("rejected").is_not_null())["content"].bin.size().max() == 0
