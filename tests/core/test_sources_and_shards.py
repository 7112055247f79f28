"""Sources yield files; shards are assigned deterministically and only to new files."""

import json

import polars as pl

from codeio_dagster.landing import Landing
from codeio_dagster.rawcode import classify_landed
from codeio_dagster.shards import plan_shards
from codeio_dagster.sources import FolderSource, JsonlSource, RawFile


def test_jsonl_source_reads_the_authors_rawcode_format(shared_fixtures):
    source = JsonlSource(JsonlSource.Options(path=shared_fixtures / "codeio_rawcode_1k.jsonl"))
    files = list(source.scan())
    assert len(files) == 1000 == source.counters["rows_in"]
    assert len({f.path for f in files}) == 1000
    assert files[0].origin["repo_name"]
    assert b"def " in files[0].content or b"class " in files[0].content


def test_folder_source_is_sorted_and_relative(tmp_path):
    (tmp_path / "b.py").write_text("x = 1\n")
    (tmp_path / "a.py").write_text("y = 2\n")
    (tmp_path / "notes.txt").write_text("skip")
    files = list(FolderSource(FolderSource.Options(path=tmp_path)).scan())
    assert [f.path for f in files] == ["a.py", "b.py"]


def _files(n, start=0):
    return [
        RawFile(path=f"f{i}.py", content=f"v = {i}\n".encode()) for i in range(start, start + n)
    ]


def test_new_files_only_go_to_new_shards(tmp_path):
    landing = Landing(tmp_path)
    first = plan_shards(_files(5), source="s", index=landing.index(), shard_size=2)
    assert [s.name for s in first] == ["s-00000", "s-00001", "s-00002"]
    landing.write(first)
    again = plan_shards(_files(5), source="s", index=landing.index(), shard_size=2)
    assert again == []
    more = plan_shards(_files(7), source="s", index=landing.index(), shard_size=2)
    assert [s.name for s in more] == ["s-00003"]
    assert more[0].rows.get_column("path").to_list() == ["f5.py", "f6.py"]


def test_unreadable_files_are_kept_with_a_reason(tmp_path):
    files = [
        RawFile("ok.py", b"def f():\n    return 1\n"),
        RawFile("copy.py", b"def f():\n    return 1\n"),
        RawFile("empty.py", b"  \n"),
        RawFile("bin.py", b"abc\x00def"),
        RawFile("latin.py", "x = 'caf\u00e9'".encode("latin-1")),
        RawFile("big.py", b"x = 1\n" * 100),
    ]
    (shard,) = plan_shards(files, source="s", index=Landing(tmp_path).index(), shard_size=10)
    frame = classify_landed(shard.rows, max_bytes=200)
    status = dict(zip(frame["path"], frame["status"], strict=True))
    assert status == {
        "ok.py": "ok",
        "copy.py": "duplicate",
        "empty.py": "empty",
        "bin.py": "binary",
        "latin.py": "bad_encoding",
        "big.py": "oversized",
    }
    dup = frame.filter(frame["path"] == "copy.py").row(0, named=True)
    assert dup["duplicate_of"] == "ok.py" and dup["content"] is None
    assert json.loads(dup["origin"]) == {}


class Reads:
    """Every file under `root` opened for reading (Path.open, os.open, polars scans)."""

    def __init__(self, monkeypatch, root):
        import os
        import pathlib

        import polars as pl

        self.root, self.paths = str(root), []
        real_open, real_scan, real_os_open = pathlib.Path.open, pl.scan_parquet, os.open

        def counted_open(path, mode="r", *args, **kwargs):
            if not set(mode) & set("wax+"):
                self._note(path)
            return real_open(path, mode, *args, **kwargs)

        def counted_os_open(path, flags, *args, **kwargs):
            if not flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
                self._note(path)
            return real_os_open(path, flags, *args, **kwargs)

        monkeypatch.setattr(os, "open", counted_os_open)

        def counted_scan(source, *args, **kwargs):
            self._note(source)
            return real_scan(source, *args, **kwargs)

        monkeypatch.setattr(pathlib.Path, "open", counted_open)
        monkeypatch.setattr(pl, "scan_parquet", counted_scan)

    def _note(self, path):
        if str(path).startswith(self.root):
            self.paths.append(str(path)[len(self.root) + 1 :])

    def take(self):
        taken, self.paths = sorted(self.paths), []
        return taken


def _config(tmp_path, size=2):
    from codeio_dagster.config import parse_config

    sources = [
        {"name": "py", "kind": "folder", "options": {"path": "raw/py", "glob": "*.py"}},
        {"name": "jl", "kind": "jsonl", "options": {"path": "raw/jl"}},
        {"name": "pq", "kind": "parquet", "options": {"path": "raw/pq"}},
    ]
    data = {"sources": sources, "shards": {"size": size}}
    return parse_config(data, base_dir=tmp_path)


def _jsonl(path, names):
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [json.dumps({"path": n, "content": f"def {n}():\n    return 1\n"}) for n in names]
    path.write_text("".join(r + "\n" for r in rows))


def _parquet(path, names):
    import polars as pl

    path.parent.mkdir(parents=True, exist_ok=True)
    contents = [f"def {n}():\n    return 2\n" for n in names]
    pl.DataFrame({"path": names, "content": contents}).write_parquet(path)


def _py(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        (folder / f"{n}.py").write_text(f"def {n}():\n    return 3\n")


def test_a_tick_with_nothing_new_reads_no_file(tmp_path, monkeypatch):
    from codeio_dagster.shards import land_new_shards

    raw = tmp_path / "raw"
    _py(raw / "py", ["a", "b", "c"])
    _jsonl(raw / "jl" / "0.jsonl", ["j1", "j2"])
    _parquet(raw / "pq" / "0.parquet", ["q1"])
    config, landing = _config(tmp_path), Landing(tmp_path / "landing")
    reads = Reads(monkeypatch, raw)

    first = land_new_shards(config, landing)
    assert [s.name for s in first] == ["py-00000", "py-00001", "jl-00000", "pq-00000"]
    assert reads.take() == ["jl/0.jsonl", "pq/0.parquet", "py/a.py", "py/b.py", "py/c.py"]

    assert land_new_shards(config, landing) == []
    assert reads.take() == []

    # One new file, one new table, and a table rewritten with one more row: only they are read.
    _py(raw / "py", ["d"])
    _jsonl(raw / "jl" / "1.jsonl", ["j3"])
    _parquet(raw / "pq" / "0.parquet", ["q1", "q2"])
    added = land_new_shards(config, landing)
    assert reads.take() == ["jl/1.jsonl", "pq/0.parquet", "py/d.py"]
    assert {s.name: s.rows["path"].to_list() for s in added} == {
        "py-00002": ["d.py"],
        "jl-00001": ["1.jsonl:0:j3"],
        "pq-00001": ["0.parquet:1:q2"],
    }
    assert land_new_shards(config, landing) == []
    assert reads.take() == []


def test_listing_lands_what_full_scans_land_under_a_shard_budget(tmp_path, monkeypatch):
    from codeio_dagster.shards import land_new_shards
    from codeio_dagster.sources import FolderSource, JsonlSource, ParquetSource

    def history(landing_dir):
        """Three growth steps of the sources, each landed by ticks of one shard until dry."""
        raw = tmp_path / "raw"
        if raw.exists():
            import shutil

            shutil.rmtree(raw)
        (raw / "pq").mkdir(parents=True)
        config, landing = _config(tmp_path), Landing(landing_dir)
        steps = [
            lambda: (
                _py(raw / "py", ["a", "b", "c"]),
                _jsonl(raw / "jl" / "0.jsonl", list("vwxyz")),
            ),
            lambda: (
                _parquet(raw / "pq" / "0.parquet", ["q1", "q2", "q3"]),
                _py(raw / "py", ["d"]),
            ),
            lambda: _jsonl(raw / "jl" / "0.jsonl", list("vwxyzu")),
        ]
        ticks = []
        for step in steps:
            step()
            while landed := land_new_shards(config, landing, max_shards=1):
                ticks.append([(s.name, s.rows["path"].to_list()) for s in landed])
        return ticks, landing.index()

    listed_ticks, listed_index = history(tmp_path / "listed")
    for cls in (FolderSource, JsonlSource, ParquetSource):
        monkeypatch.setattr(cls, "units", lambda self: None)
    full_ticks, full_index = history(tmp_path / "full")

    assert listed_ticks == full_ticks
    assert listed_index.equals(full_index)
    # Nothing landed twice, and the jsonl table cut by the budget was finished later.
    assert listed_index.select("source", "path").is_duplicated().sum() == 0
    assert listed_index.filter(listed_index["source"] == "jl").height == 6
    assert len(listed_ticks) == 9


def test_hub_source_lists_blobs_and_reads_only_a_changed_file(tmp_path, monkeypatch):
    import huggingface_hub.constants as constants
    from huggingface_hub import CommitOperationAdd, HfApi

    from codeio_dagster.shards import pending_units
    from codeio_dagster.sources.hub import HubSource
    from tests.testing_hub import HubTestServer

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    with HubTestServer() as hub:
        api = HfApi(endpoint=hub.url, token="hf_test_not_a_token")
        api.create_repo("o/raw", repo_type="dataset")

        def commit(name, rows):
            lines = "".join(json.dumps({"path": p, "content": c}) + "\n" for p, c in rows)
            op = CommitOperationAdd(name, lines.encode())
            return api.create_commit("o/raw", [op], commit_message=name, repo_type="dataset")

        commit("data/a.jsonl", [("a.py", "x = 1\n")])
        commit("data/b.jsonl", [("b.py", "x = 2\n")])
        options = {"repo_id": "o/raw", "files": "**/*.jsonl", "endpoint": hub.url}
        before = HubSource(HubSource.Options(**options)).units()
        assert [u.key for u in before] == ["data/a.jsonl", "data/b.jsonl"]

        commit("data/b.jsonl", [("b.py", "x = 2\n"), ("c.py", "x = 3\n")])
        source = HubSource(HubSource.Options(**options))
        todo = pending_units(source.units(), {u.key: u for u in before})
        assert [u.key for u in todo] == ["data/b.jsonl"]
        assert [f.path for f in source.scan(todo)] == ["data/b.jsonl:0:b.py", "data/b.jsonl:1:c.py"]
        assert source.units_done == todo


def test_same_named_tables_in_different_folders_both_land(tmp_path):
    from codeio_dagster.shards import land_new_shards

    raw = tmp_path / "raw"
    for folder in ("a", "b"):
        _jsonl(raw / "jl" / folder / "part-0.jsonl", [f"{folder}1"])
        _parquet(raw / "pq" / folder / "part-0.parquet", [f"{folder}2"])
    (raw / "py").mkdir()
    config, landing = _config(tmp_path, size=10), Landing(tmp_path / "landing")

    land_new_shards(config, landing)
    index = landing.index().filter(landing.index()["source"] != "py")
    assert sorted(index["path"].to_list()) == [
        "a/part-0.jsonl:0:a1",
        "a/part-0.parquet:0:a2",
        "b/part-0.jsonl:0:b1",
        "b/part-0.parquet:0:b2",
    ]
    assert land_new_shards(config, landing) == []


def test_a_path_repeated_within_a_scan_lands_as_a_dropped_duplicate(tmp_path):
    landing = Landing(tmp_path)
    files = [
        RawFile("t:1", b"x = 1\n"),
        RawFile("t:2", b"x = 2\n"),
        RawFile("t:1", b"x = 3\n"),  # another row the source gave the same id
    ]
    (shard,) = plan_shards(files, source="s", index=landing.index(), shard_size=10)
    frame = classify_landed(shard.rows, max_bytes=100)
    assert frame.select("path", "status", "duplicate_of").rows() == [
        ("t:1", "ok", None),
        ("t:2", "ok", None),
        ("t:1", "duplicate", "t:1"),
    ]
    landing.write([shard])
    # A rescan of the same rows finds both t:1 rows landed already.
    assert plan_shards(files, source="s", index=landing.index(), shard_size=10) == []


def test_duplicates_point_at_the_first_path_landed_earlier_or_in_an_earlier_shard(tmp_path):
    landing = Landing(tmp_path)
    landing.write(
        plan_shards([RawFile("old.py", b"a\n")], source="s", index=landing.index(), shard_size=1)
    )
    files = [RawFile("n1.py", b"b\n"), RawFile("n2.py", b"a\n"), RawFile("n3.py", b"b\n")]
    shards = plan_shards(files, source="s", index=landing.index(), shard_size=1)
    assert [s.name for s in shards] == ["s-00001", "s-00002", "s-00003"]
    rows = [s.rows.select("shard", "path", "duplicate_of").row(0) for s in shards]
    assert rows == [
        ("s-00001", "n1.py", None),
        ("s-00002", "n2.py", "old.py"),
        ("s-00003", "n3.py", "n1.py"),
    ]


def test_parquet_tables_are_read_in_order_across_batches(tmp_path, monkeypatch):
    from codeio_dagster.sources import ParquetSource, files

    monkeypatch.setattr(files, "_PARQUET_BATCH", 2)
    names = [f"p{i}" for i in range(5)]
    _parquet(tmp_path / "t.parquet", names)
    source = ParquetSource(ParquetSource.Options(path=tmp_path / "t.parquet"))
    assert [f.path for f in source.scan()] == [f"t.parquet:{i}:{n}" for i, n in enumerate(names)]


def test_unrequested_shards_are_the_landed_ones_the_instance_lacks():
    from codeio_dagster.shards import unrequested_shards

    index = pl.DataFrame({"shard": ["s-00000", "s-00000", "t-00000", "s-00001"]})
    assert unrequested_shards(index, ["s-00000"]) == ["t-00000", "s-00001"]
    assert unrequested_shards(index, ["s-00000", "t-00000", "s-00001"]) == []


# Child processes run these scripts with `python -c`: test modules are not importable by name,
# so multiprocessing's spawn could not find a target defined here.
_LOCK_IS_FREE = """
import fcntl, sys
with open(sys.argv[1], "a") as handle:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        sys.exit(3)
"""
_LAND = """
import sys
from codeio_dagster.config import load_config
from codeio_dagster.landing import Landing
from codeio_dagster.shards import land_new_shards
config, landing = load_config(sys.argv[1]), Landing(sys.argv[2])
for _ in range(int(sys.argv[3])):
    land_new_shards(config, landing, max_shards=1)
"""


def test_the_landing_lock_is_held_against_other_processes(tmp_path):
    import subprocess
    import sys

    landing = Landing(tmp_path)
    probe = [sys.executable, "-c", _LOCK_IS_FREE, str(tmp_path / "_index.lock")]
    with landing.lock(), landing.lock():  # re-entrant within one Landing
        assert subprocess.run(probe).returncode == 3
    assert subprocess.run(probe).returncode == 0


def test_two_processes_landing_at_once_land_every_file_once(tmp_path):
    import subprocess
    import sys

    _py(tmp_path / "raw" / "py", [f"f{i:02d}" for i in range(24)])
    _jsonl(tmp_path / "raw" / "jl" / "0.jsonl", [f"j{i:02d}" for i in range(24)])
    config = tmp_path / "codeio.yaml"
    config.write_text(
        json.dumps(
            {
                "sources": [
                    {"name": "py", "kind": "folder", "options": {"path": "raw/py"}},
                    {"name": "jl", "kind": "jsonl", "options": {"path": "raw/jl"}},
                ],
                "shards": {"size": 1},
            }
        )
    )
    landing_dir = tmp_path / "landing"
    command = [sys.executable, "-c", _LAND, str(config), str(landing_dir), "30"]
    workers = [subprocess.Popen(command) for _ in range(2)]
    assert [w.wait() for w in workers] == [0, 0]

    index = Landing(landing_dir).index()
    assert index.height == 48
    assert index.select("source", "path").is_duplicated().sum() == 0
    assert index["shard"].n_unique() == 48
    assert all(Landing(landing_dir).read(s).height == 1 for s in index["shard"])
    assert not list(landing_dir.glob(".*.tmp"))
