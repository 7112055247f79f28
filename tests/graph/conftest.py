"""A scripted OpenAI-compatible server for graph tests that must count or steer requests.

It is `codeio_dagster.cluster.stub_llm` (the real chat-completions protocol over a real socket):
every file refactored into the same small function, output predictions wrong at turn 0 and right
after feedback, input predictions right, so every verdict path and the revision turn are
exercised deterministically. The real local model runs the graph in `test_graph_real_model.py`.
"""

from __future__ import annotations

import textwrap

import pytest

from codeio_dagster.cluster import stub_llm

REFACTOR_REPLY = stub_llm.REFACTOR
BROKEN_MARKER = stub_llm.BROKEN_MARKER
reply_for = stub_llm.reply


class ScriptedLLM(stub_llm.StubLLM):
    """The cluster's stub server, started in a thread: `reply(messages) -> content` picks each
    reply (default: `reply_for`); an int instead of content is answered as that HTTP status."""

    def __init__(self, reply=reply_for):
        super().__init__(reply=reply)
        self.start()


@pytest.fixture
def scripted_llm(monkeypatch):
    monkeypatch.setenv("CODEIO_TEST_KEY", "test-key-not-secret")
    llm = ScriptedLLM()
    yield llm
    llm.close()


def write_corpus(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        (folder / f"{name}.py").write_text(f"def {name}(xs):\n    return sum(xs) + {i}\n")


def write_config(tmp_path, base_url: str, *, shard_size: int = 2, extra: str = "") -> str:
    text = textwrap.dedent(
        f"""
        data_dir: data
        sources:
          - {{name: t, kind: folder, options: {{path: corpus, glob: "*.py"}}}}
        shards: {{size: {shard_size}}}
        llm:
          base_url: {base_url}
          api_key_env: CODEIO_TEST_KEY
          cache_path: llm_cache.sqlite
          max_retries: 0
        stages:
          refactor: {{model: scripted, max_tokens: 200}}
          prediction: {{model: scripted, max_tokens: 200}}
          revision: {{model: scripted, max_tokens: 200}}
        tasks:
          kinds: {{output_prediction: 1, input_prediction: 1}}
        io_pairs: {{max_generator_calls: 50}}
        publish: {{target: local, local_dir: published}}
        """
    )
    (tmp_path / "corpus").mkdir(exist_ok=True)  # the source folder must exist at load
    path = tmp_path / "codeio.yaml"
    path.write_text(text + extra)
    return str(path)


@pytest.fixture
def graph_files():
    """Writers for a tiny corpus and its codeio.yaml, and the scripted server (test modules are
    not a package)."""
    from types import SimpleNamespace

    return SimpleNamespace(
        write_corpus=write_corpus,
        write_config=write_config,
        ScriptedLLM=ScriptedLLM,
        REFACTOR_REPLY=REFACTOR_REPLY,
        reply_for=reply_for,
    )
