"""The `codeio` command line as a user runs it: a fresh process, its exit code and output."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import polars as pl
import pytest

# Runs the CLI in a fresh interpreter and reports which heavy packages it imported.
PROBE = """
import json, sys
from codeio_dagster.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
print(json.dumps({"code": code, "dagster": "dagster" in sys.modules}), file=sys.stderr)
"""


def probe(*argv: str, cwd=None) -> tuple[dict, str, str]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, cwd=cwd, timeout=120
    )
    *err_lines, last = proc.stderr.strip().splitlines()
    return json.loads(last), proc.stdout, "\n".join(err_lines)


@pytest.mark.parametrize(
    "argv",
    [["--help"], [], ["pull", "--help"], ["build", "--help"], ["demo", "--help"]],
)
def test_help_does_not_import_dagster(argv):
    result, out, err = probe(*argv)
    assert result["code"] in (0, 2)
    assert "codeio" in out + err
    assert result["dagster"] is False


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_pull_against_a_closed_port_names_the_endpoint_without_dagster(tmp_path):
    endpoint = f"http://127.0.0.1:{closed_port()}"
    result, out, err = probe("pull", "o/d", "--endpoint", endpoint, "--out", str(tmp_path / "x"))
    assert result == {"code": 2, "dagster": False}
    assert f"cannot reach the Hub at {endpoint}" in err
    assert "check --endpoint or HF_ENDPOINT" in err


def test_pull_says_what_was_expected_for_a_path_that_is_not_there(tmp_path):
    result, out, err = probe("pull", str(tmp_path / "nothing-here"))
    assert result["code"] == 2
    assert "is neither a Hub dataset repo id (owner/name) nor an existing local folder" in err
    assert "HFValidationError" not in err and "repo_type" not in err


def test_pull_of_a_local_published_folder_copies_its_files(tmp_path, make_local_folder):
    folder = make_local_folder(tmp_path / "published")
    out = tmp_path / "copy"
    result, printed, err = probe("pull", str(folder), "--config", "codeio_pp", "--out", str(out))
    assert result == {"code": 0, "dagster": False}, err
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "README.md",
        "data/codeio_pp/a.parquet",
    ]
    assert f"copied 2 file(s) into {out}" in printed

    # Pulled in place (the default --out is the folder's own name), nothing is copied.
    result, printed, err = probe("pull", "published", cwd=tmp_path)
    assert result["code"] == 0 and "found 4 file(s) in published" in printed

    result, _, err = probe("pull", str(folder), "--config", "nope")
    assert result["code"] == 2
    assert "configs present: ['codeio', 'codeio_pp', 'unified']" in err
    assert "data/<config>/<shard>.parquet" in err
    result, _, err = probe("pull", str(folder), "--revision", "abc")
    assert result["code"] == 2 and "has no revisions" in err


@pytest.fixture
def make_local_folder():
    """A folder laid out like a published Hub dataset repo (what `publish.target: local` writes)."""

    def make(folder):
        for config in ("codeio", "codeio_pp", "unified"):
            (folder / "data" / config).mkdir(parents=True)
            pl.DataFrame({"id": ["a-0", "a-1"]}).write_parquet(folder / f"data/{config}/a.parquet")
        (folder / "README.md").write_text("---\nconfigs: []\n---\n")
        return folder

    return make


def test_config_flag_wins_and_the_variable_is_read_without_it(tmp_path, monkeypatch):
    from codeio_dagster.build import config_path

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CODEIO_CONFIG", "from-env.yaml")
    assert config_path(None) == tmp_path / "from-env.yaml"
    assert config_path("given.yaml") == tmp_path / "given.yaml"
    monkeypatch.delenv("CODEIO_CONFIG")
    assert config_path(None) == tmp_path / "codeio.yaml"


def test_build_names_a_missing_config_and_how_to_give_one(tmp_path):
    result, out, err = probe("build", "--config", str(tmp_path / "absent.yaml"))
    assert result["code"] == 2
    assert f"config file {tmp_path / 'absent.yaml'} not found" in err
    assert "Traceback" not in err


FREEZE_PROBE = """
import atexit, gc
real, calls = gc.freeze, []
def counting():
    calls.append(1)
    real()
gc.freeze = counting
start = gc.get_freeze_count()
# Registered first, so it runs last: after every handler `codeio` registers.
atexit.register(
    lambda: print("at exit:", len(calls), "freeze(s), heap frozen:", gc.get_freeze_count() > start)
)
from codeio_dagster.cli import main
for _ in range(2):
    try:
        main(["pull", "--help"])
    except SystemExit:
        pass
print("while working:", len(calls), "freeze(s)", flush=True)
"""


def test_codeio_freezes_the_heap_as_it_exits_not_before():
    """The interpreter's last collections would scan every object Dagster made (0.6 s of each
    build's end): `codeio` freezes them once the exit handlers run (once, however often main()
    runs), and not while it works."""
    done = subprocess.run(
        [sys.executable, "-c", FREEZE_PROBE], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "while working: 0 freeze(s)" in done.stdout
    assert "at exit: 1 freeze(s), heap frozen: True" in done.stdout
