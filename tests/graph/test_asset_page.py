"""What a user sees in the Dagster UI: asset pages rendered by headless Chromium (Debian's
`chromium`) from a real `dagster-webserver` on 127.0.0.1, after a run of the code location.

The DOM Chromium rendered is searched for what a user needs to read off the page; the
screenshots are kept in the test's folder for a person to look at.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dagster as dg
import pytest

from codeio_dagster.assets import build_assets
from codeio_dagster.config import load_config
from codeio_dagster.landing import Landing
from codeio_dagster.partitions import shards
from codeio_dagster.resources import build_resources
from codeio_dagster.shards import land_new_shards

pytestmark = pytest.mark.sandbox
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _webserver(home: Path, config: str, cwd: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "CODEIO_CONFIG": config}
    exe = Path(sys.executable).with_name("dagster-webserver")
    args = [str(exe), "-h", "127.0.0.1", "-p", str(port), "-m", "codeio_dagster.definitions"]
    proc = subprocess.Popen(
        args, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):  # loading the code location imports Dagster and the project
        if proc.poll() is not None:
            raise RuntimeError(f"dagster-webserver exited with {proc.returncode}")
        try:
            urllib.request.urlopen(f"{url}/server_info", timeout=2).read()
            return proc, url
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    raise RuntimeError("dagster-webserver did not answer within 300 s")


def render(url: str, screenshot: Path) -> str:
    """The page's DOM after its scripts ran, and a screenshot of it."""
    common = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1600,2400",
        "--virtual-time-budget=20000",
    ]
    subprocess.run(
        [*common, f"--screenshot={screenshot}", url], check=True, capture_output=True, timeout=120
    )
    dom = subprocess.run(
        [*common, "--dump-dom", url], check=True, capture_output=True, text=True, timeout=120
    )
    return dom.stdout


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make setup)")
def test_asset_pages_show_model_counts_and_example_errors(
    tmp_path, scripted_llm, graph_files, monkeypatch
):
    graph_files.write_corpus(tmp_path / "corpus", ["alpha"])
    (tmp_path / "corpus" / "broken.py").write_text("# kwarg_mismatch\ndef f(v):\n    return v\n")
    path = graph_files.write_config(tmp_path, scripted_llm.base_url, shard_size=10)
    home = tmp_path / "dagster_home"
    home.mkdir()
    # The default instance; no first-visit community dialog over the page being shot.
    (home / "dagster.yaml").write_text("nux:\n  enabled: false\n")
    monkeypatch.chdir(tmp_path)
    config = load_config(path)
    (shard,) = land_new_shards(config, Landing(config.data_dir / "landing"))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions(shards.name, [shard.name])
        result = dg.materialize(
            build_assets(config),
            partition_key=shard.name,
            instance=instance,
            resources=build_resources(config, path),
        )
        assert result.success

    proc, url = _webserver(home, path, tmp_path)
    try:
        io_page = render(f"{url}/assets/io_pairs", tmp_path / "io_pairs.png")
        responses_page = render(f"{url}/assets/responses", tmp_path / "responses.png")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    # Counts, the drop reason and the error that caused it, on the io_pairs page.
    for text in ("rows_in", "kept", "dropped_", "drop_reasons", "calls.generator_calls"):
        assert text in io_page, text
    assert "got an unexpected keyword argument" in io_page
    # Model and backend on an LLM stage's page; never a key.
    assert "scripted" in responses_page
    assert "openai-compatible endpoint at 127.0.0.1" in responses_page
    assert "test-key-not-secret" not in responses_page + io_page
    assert (tmp_path / "io_pairs.png").stat().st_size > 10_000
