"""Landing costs what is new, not what was landed before (issue 14), proven by counting work."""

from __future__ import annotations

import json

import dagster as dg
import polars as pl
import pytest

from codeio_dagster.config import parse_config
from codeio_dagster.landing import Landing
from codeio_dagster.shards import iter_shards, land_new_shards
from codeio_dagster.sources import RawFile, Source


@pytest.fixture
def yielded(monkeypatch):
    """Counts every raw file any source yields (before landed paths are skipped)."""
    count = [0]
    bounded = Source._bounded

    def counted(self, raw):
        count[0] += 1
        return bounded(self, raw)

    monkeypatch.setattr(Source, "_bounded", counted)

    def take():
        n, count[0] = count[0], 0
        return n

    return take


def _config(tmp_path, kind, path, size=2):
    data = {"sources": [{"name": "t", "kind": kind, "options": {"path": path}}]}
    return parse_config({**data, "shards": {"size": size}}, base_dir=tmp_path)


def _lines(names):
    return "".join(
        json.dumps({"path": n, "content": f"def {n}():\n    return 1\n"}) + "\n" for n in names
    )


def _landed(landing):
    return landing.index()["path"].to_list()


def test_an_appended_jsonl_table_is_read_from_where_the_last_tick_stopped(tmp_path, yielded):
    table = tmp_path / "t.jsonl"
    table.write_text(_lines(["a", "b", "c"]))
    config, landing = _config(tmp_path, "jsonl", "t.jsonl"), Landing(tmp_path / "landing")
    land_new_shards(config, landing)
    assert yielded() == 3

    with table.open("a") as handle:
        handle.write(_lines(["d", "e"]))
    added = land_new_shards(config, landing)
    assert yielded() == 2  # the three rows landed before are not read again
    assert [s.rows["path"].to_list() for s in added] == [["t.jsonl:3:d", "t.jsonl:4:e"]]
    assert land_new_shards(config, landing) == [] and yielded() == 0


def test_a_rewritten_or_truncated_jsonl_table_is_read_from_the_top(tmp_path, yielded):
    table = tmp_path / "t.jsonl"
    table.write_text(_lines(["a", "b", "c"]))
    config, landing = _config(tmp_path, "jsonl", "t.jsonl"), Landing(tmp_path / "landing")
    land_new_shards(config, landing)
    yielded()

    table.write_text(_lines(["x", "y", "z", "w"]))  # same rows count and more, other bytes
    added = land_new_shards(config, landing)
    assert yielded() == 4  # the check of the bytes before the old end failed: from the top
    assert [p for s in added for p in s.rows["path"].to_list()] == [
        "t.jsonl:0:x",
        "t.jsonl:1:y",
        "t.jsonl:2:z",
        "t.jsonl:3:w",
    ]
    table.write_text(_lines(["v"]))  # shorter than where reading stopped
    land_new_shards(config, landing)
    assert yielded() == 1


def test_a_table_cut_by_the_shard_budget_is_read_on_from_where_it_stopped(tmp_path, yielded):
    (tmp_path / "t.jsonl").write_text(_lines([f"r{i}" for i in range(10)]))
    config, landing = _config(tmp_path, "jsonl", "t.jsonl"), Landing(tmp_path / "landing")
    ticks = []
    while added := land_new_shards(config, landing, max_shards=1):
        ticks.append(yielded())
        assert len(added) == 1
    # Each tick reads its own two rows, not every row from the top (2, 4, 6, ... before).
    assert ticks == [2, 2, 2, 2, 2]
    assert _landed(landing) == [f"t.jsonl:{i}:r{i}" for i in range(10)]


def test_an_unfinished_last_line_waits_for_its_end(tmp_path, yielded):
    table = tmp_path / "t.jsonl"
    full = _lines(["a", "b", "c"])
    table.write_text(_lines(["a"]))
    config, landing = _config(tmp_path, "jsonl", "t.jsonl", size=10), Landing(tmp_path / "landing")
    land_new_shards(config, landing)
    assert yielded() == 1
    # A writer half-way through line 2 (53 bytes a line), then half-way through line 3.
    for end, landed in ((80, 1), (140, 2)):
        table.write_text(full[:end])
        land_new_shards(config, landing)
        assert _landed(landing) == ["t.jsonl:0:a", "t.jsonl:1:b"][:landed]
    table.write_text(full)
    land_new_shards(config, landing)
    assert _landed(landing) == ["t.jsonl:0:a", "t.jsonl:1:b", "t.jsonl:2:c"]
    # Each row was read once: a tick that found no finished line kept its position.
    assert yielded() == 2
    assert landing.read("t-00001")["rejected"].to_list() == [None]


def _parquet_groups(path, groups):
    """A Parquet file written one row group per list of names, as an appending writer does."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("path", pa.string()), ("content", pa.string())])
    with pq.ParquetWriter(path, schema) as writer:
        for names in groups:
            contents = [f"def {n}():\n    return 2\n" for n in names]
            writer.write_table(pa.table({"path": names, "content": contents}, schema=schema))


def test_a_parquet_table_grown_by_row_groups_is_read_from_its_new_groups(tmp_path, yielded):
    table = tmp_path / "t.parquet"
    _parquet_groups(table, [["a", "b"], ["c"]])
    config, landing = _config(tmp_path, "parquet", "t.parquet"), Landing(tmp_path / "landing")
    land_new_shards(config, landing)
    assert yielded() == 3

    _parquet_groups(table, [["a", "b"], ["c"], ["d", "e"]])
    land_new_shards(config, landing)
    assert yielded() == 2
    _parquet_groups(table, [["a", "x"], ["c"], ["d", "e"]])  # an old row group changed
    land_new_shards(config, landing)
    assert yielded() == 5
    assert _landed(landing)[3:] == ["t.parquet:3:d", "t.parquet:4:e", "t.parquet:1:x"]


def test_shards_are_written_as_they_fill_holding_one_at_a_time(tmp_path, monkeypatch, yielded):
    folder = tmp_path / "py"
    folder.mkdir()
    for i in range(7):
        (folder / f"f{i}.py").write_text(f"v = {i}\n")
    config = parse_config(
        {
            "sources": [{"name": "t", "kind": "folder", "options": {"path": "py"}}],
            "shards": {"size": 2},
        },
        base_dir=tmp_path,
    )
    read_when_written = []
    write_shard = Landing.write_shard

    def counted_write(self, shard):
        read_when_written.append(yielded())
        write_shard(self, shard)

    monkeypatch.setattr(Landing, "write_shard", counted_write)
    landed = land_new_shards(config, Landing(tmp_path / "landing"))
    # Each shard is written once its two files are read, before the next file is read.
    assert read_when_written == [2, 2, 2, 1]
    assert all("content" not in s.rows.columns for s in landed)


def test_iter_shards_reads_no_further_than_the_shard_it_yields():
    pulled = []

    def files():
        for i in range(5):
            pulled.append(i)
            yield RawFile(f"f{i}.py", f"v = {i}\n".encode())

    index = Landing("/nonexistent").index()
    seen = [
        (s.name, len(pulled)) for s in iter_shards(files(), source="s", index=index, shard_size=2)
    ]
    assert seen == [("s-00000", 2), ("s-00001", 4), ("s-00002", 5)]


def test_missing_shards_are_found_with_one_question_to_the_instance(monkeypatch):
    from codeio_dagster.partitions import add_missing_shards, shards

    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(shards.name, ["s-00000", "s-00001"])
    calls = {"get_dynamic_partitions": 0, "has_dynamic_partition": 0}
    for method in calls:
        real = getattr(instance, method)

        def counted(*args, _real=real, _method=method, **kwargs):
            calls[_method] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(instance, method, counted)
    names = [f"s-{i:05d}" for i in range(40)]
    assert add_missing_shards(instance, names) == names[2:]
    assert calls == {"get_dynamic_partitions": 1, "has_dynamic_partition": 0}
    assert instance.get_dynamic_partitions(shards.name) == names


def test_a_landing_without_positions_still_reads(tmp_path):
    """A units file written before positions existed reads as units with no position."""
    landing = Landing(tmp_path)
    tmp_path.mkdir(exist_ok=True)
    pl.DataFrame({"source": ["t"], "key": ["a.jsonl"], "stamp": ["1:2"]}).write_parquet(
        landing.units_path
    )
    (unit,) = landing.landed_units("t").values()
    assert (unit.key, unit.stamp, unit.position) == ("a.jsonl", "1:2", None)


def _shard_of(name, paths):
    from codeio_dagster.landing import PlannedShard

    rows = pl.DataFrame(
        {"source": "s", "path": paths, "file_id": paths, "shard": name},
        schema={"source": pl.String, "path": pl.String, "file_id": pl.String, "shard": pl.String},
    )
    return PlannedShard(name, rows)


def test_the_index_grows_by_parts_and_compacts_without_rewriting_each_landing(
    tmp_path, monkeypatch
):
    from codeio_dagster import landing as landing_module

    monkeypatch.setattr(landing_module, "COMPACT_PARTS", 3)
    landing = Landing(tmp_path)
    # A landing made before the index had parts: its single file is the first base.
    _shard_of("s-00000", ["a"]).rows.write_parquet(tmp_path / "_index.parquet")
    written = []
    real_write = landing_module.write_parquet_atomic

    def counted(frame, path):
        written.append((path.name, frame.height))
        real_write(frame, path)

    monkeypatch.setattr(landing_module, "write_parquet_atomic", counted)
    for i in range(1, 8):
        landing.add_to_index([_shard_of(f"s-{i:05d}", [f"p{i}"])])
    # Each landing wrote its own row; every third also merged the parts into one base.
    assert [rows for name, rows in written if not name.startswith("base-")] == [1] * 7
    assert [rows for name, rows in written if name.startswith("base-")] == [4, 7]
    assert landing.index()["path"].to_list() == ["a", *(f"p{i}" for i in range(1, 8))]
    assert len(list((tmp_path / "_index").iterdir())) <= 3
    assert not (tmp_path / "_index.parquet").exists()

    # A compaction that wrote its base but stopped before deleting what it merged reads right.
    files, last = landing._index_files()
    before = landing.index()
    real_write(before, tmp_path / "_index" / f"base-{last:012d}.parquet")
    assert landing.index().equals(before)


@pytest.fixture
def index_reads(monkeypatch):
    """Rows read from the landing's index files (`_index/`, `_index.parquet`), counted."""
    from codeio_dagster import storage

    count = [0]
    read = storage.read_parquet

    def counted(where, columns=None):
        frame = read(where, columns=columns)
        if "_index" in str(where):
            count[0] += frame.height
        return frame

    monkeypatch.setattr(storage, "read_parquet", counted)

    def take():
        n, count[0] = count[0], 0
        return n

    return take


def _new_process():
    """What a fresh process knows of any landing: nothing."""
    from codeio_dagster import landing

    landing._LANDED.clear()


def test_an_append_tick_reads_no_index_row_landed_before(tmp_path, index_reads):
    table = tmp_path / "t.jsonl"
    table.write_text(_lines([f"r{i}" for i in range(40)]))
    config, landing = _config(tmp_path, "jsonl", "t.jsonl", size=10), Landing(tmp_path / "landing")
    _new_process()
    assert len(land_new_shards(config, landing)) == 4
    index_reads()

    for batch, landed_before in ((range(40, 50), 40), (range(50, 450), 50)):
        with table.open("a") as handle:
            handle.write(_lines([f"r{i}" for i in batch]))
        added = land_new_shards(config, landing)
        # However many rows were landed before, a tick reads none of them from the index.
        assert index_reads() == 0, f"read index rows with {landed_before} landed"
        assert sum(s.rows.height for s in added) == len(batch)

    # Bytes landed before are found as duplicates from memory; the new shard is numbered on.
    same = {"path": "copy", "content": "def r3():\n    return 1\n"}
    with table.open("a") as handle:
        handle.write(json.dumps(same) + "\n")
    (shard,) = land_new_shards(config, landing)
    assert index_reads() == 0
    assert shard.name == "t-00045"
    assert landing.read("t-00045")["duplicate_of"].to_list() == ["t.jsonl:3:r3"]

    # A fresh process reads the index once; its next tick reads none of it.
    _new_process()
    with table.open("a") as handle:
        handle.write(_lines(["n1"]))
    (shard,) = land_new_shards(config, landing)
    assert index_reads() == 451 and shard.name == "t-00046"
    with table.open("a") as handle:
        handle.write(_lines(["n2"]))
    land_new_shards(config, landing)
    assert index_reads() == 0


def test_a_landing_removed_and_landed_again_is_not_taken_for_the_old_one(tmp_path):
    import shutil

    table = tmp_path / "t.jsonl"
    table.write_text(_lines(["a", "b"]))
    config, landing = _config(tmp_path, "jsonl", "t.jsonl", size=10), Landing(tmp_path / "landing")
    land_new_shards(config, landing)
    shutil.rmtree(tmp_path / "landing")
    # The same rows under the same paths: landed again, not skipped as landed by the old index.
    (shard,) = land_new_shards(config, Landing(tmp_path / "landing"))
    assert shard.name == "t-00000"
    assert landing.read("t-00000")["duplicate_of"].to_list() == [None, None]
    assert landing.landed().shard_names() == ["t-00000"]
