"""Sources yield files; shards are assigned deterministically and only to new files."""

import json

from codeio_dagster.rawcode import classify_landed
from codeio_dagster.shards import Landing, plan_shards
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
