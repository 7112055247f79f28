"""`codeio build` as a user runs it, then its run as the Dagster UI shows it, in headless Chromium.

The build runs the CLI in a subprocess against the scripted LLM server and a one-file corpus,
on a fresh DAGSTER_HOME, with the config given only through $CODEIO_CONFIG. The webserver then
serves the project's own workspace.yaml, as `make dev` does; the run must be a run of the code
location's job (not `__ephemeral_asset_job__`), re-executable through the UI's own mutation and
shown with an enabled "Re-execute" button in the rendered page.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.sandbox

CODEIO = str(Path(sys.executable).with_name("codeio"))
WEBSERVER = str(Path(sys.executable).with_name("dagster-webserver"))

RUNS = """
{ runsOrError { ... on Runs { results {
    runId jobName status
    repositoryOrigin { repositoryLocationName }
    tags { key value }
} } } }
"""
# The mutation the UI sends from a run's "Re-execute all" button.
REEXECUTE = """
mutation Reexecute($params: ReexecutionParams!) {
  launchRunReexecution(reexecutionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId jobName rootRunId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on InvalidSubsetError { message }
    ... on PipelineNotFoundError { message }
  }
}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graphql(url: str, query: str, variables: dict | None = None) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(
        f"{url}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        reply = json.loads(response.read())
    assert "errors" not in reply, reply["errors"]
    return reply["data"]


def wait_for_location(url: str, server: subprocess.Popen, timeout_s: float = 180) -> None:
    query = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert server.poll() is None, "the webserver exited"
        try:
            entries = graphql(url, query)["workspaceOrError"]["locationEntries"]
            if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                return
        except OSError:
            pass
        time.sleep(1)
    raise AssertionError(f"the webserver did not load the workspace in {timeout_s}s")


def chromium(*args: str) -> str:
    proc = subprocess.run(
        [
            shutil.which("chromium") or "chromium",
            "--headless",
            "--no-sandbox",  # runs as root in CI containers
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--window-size=1400,900",
            "--virtual-time-budget=20000",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def button(dom: str, label: str) -> str:
    """The opening tag of the <button> whose text starts with `label`."""
    at = dom.index(label)
    start = dom.rindex("<button", 0, at)
    return dom[start : dom.index(">", start) + 1]


def test_build_runs_are_runs_of_the_locations_job_and_re_executable_in_the_ui(
    tmp_path, scripted_llm, graph_files, project_root
):
    graph_files.write_corpus(tmp_path / "corpus", ["p"])
    # One function, one task, no revision turn: the smallest graph that is still the whole graph.
    config = graph_files.write_config(
        tmp_path, scripted_llm.base_url, extra="revision: {turns: 0}\n"
    )
    home = tmp_path / "dagster_home"
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "CODEIO_CONFIG": config,
        "CODEIO_TEST_KEY": os.environ["CODEIO_TEST_KEY"],
    }
    elsewhere = tmp_path / "elsewhere"  # no codeio.yaml here: the variable must be what is read
    elsewhere.mkdir()

    built = subprocess.run(
        [CODEIO, "build"], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=900
    )
    printed = built.stdout + built.stderr
    assert built.returncode == 0, printed[-4000:]
    # What the user reads: the steps, the model and sandbox phases, and no Dagster noise.
    assert "[codeio] 1 new shard(s); 1 in all" in printed
    assert "t-00000:   unified_functions: 1 of 1 requests to do" in printed
    assert re.search(r"sandbox: up to \d+ light jail\(s\) with hash seed \d+", printed)
    assert "t-00000: hub_publication done" in printed
    assert "No dagster instance configuration file" not in printed
    assert "we collect usage statistics" not in printed
    assert "Dagster sends anonymised usage statistics unless you opt out" in printed
    assert (home / "dagster.yaml").is_file()

    # An unknown shard is named, with the shards there are.
    again = subprocess.run(
        [CODEIO, "build", "--shard", "nope"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 2
    assert "no shard named nope; landed shards: t-00000" in again.stderr

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [WEBSERVER, "-h", "127.0.0.1", "-p", str(port), "-w", str(project_root / "workspace.yaml")],
        cwd=project_root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_location(url, server)
        (run,) = graphql(url, RUNS)["runsOrError"]["results"]
        assert run["jobName"] == "codeio_job"
        assert run["status"] == "SUCCESS"
        assert run["repositoryOrigin"]["repositoryLocationName"] == "codeio_dagster"
        assert {"key": "dagster/partition", "value": "t-00000"} in run["tags"]

        page = f"{url}/runs/{run['runId']}"
        if shutil.which("chromium") is not None:
            chromium(f"--screenshot={tmp_path / 'run.png'}", page)
            dom = chromium("--dump-dom", page)
            # The rendered page names the job of the location and offers an enabled Re-execute.
            assert 'href="/locations/codeio_dagster/jobs/codeio_job"' in dom
            reexecute = button(dom, "Re-execute all")
            assert "disabled" not in reexecute and "cursor: pointer" in reexecute, reexecute
            assert not re.search(r"codeio_job[^<]{0,40}not found", dom)

        again = graphql(
            url, REEXECUTE, {"params": {"parentRunId": run["runId"], "strategy": "ALL_STEPS"}}
        )["launchRunReexecution"]
        assert again["__typename"] == "LaunchRunSuccess", again
        assert again["run"]["jobName"] == "codeio_job"
        assert again["run"]["rootRunId"] == run["runId"]
    finally:
        server.terminate()
        server.wait(timeout=60)
    if shutil.which("chromium") is None:
        pytest.skip(
            "chromium is not installed (Debian: apt-get install chromium; `make system-deps` "
            "installs it as root): GraphQL checks passed, the rendered-page check did not run"
        )
