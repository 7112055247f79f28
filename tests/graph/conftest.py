"""A scripted OpenAI-compatible server for graph tests that must count or steer requests.

It speaks the real chat-completions protocol over a real socket. It refactors every file into
the same small function (sum of a list), answers output predictions wrongly at turn 0 and
rightly after feedback, and answers input predictions rightly, so every verdict path and the
revision turn are exercised deterministically. The real local model runs the graph in
`test_graph_real_model.py`.
"""

from __future__ import annotations

import json
import re
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

REFACTOR_REPLY = textwrap.dedent(
    """
    ## Main Function
    ```python
    def main_solution(numbers):
        total = 0
        for n in numbers:
            total += n
        return total
    ```

    ## Input Output Description
    Input: numbers (list of int), the values to add. Output: the sum (int).

    ## Input Generator
    ```python
    import random

    def input_generator():
        return {"numbers": [random.randint(0, 9) for _ in range(random.randint(1, 5))]}
    ```

    ## Problem Statement
    A shopkeeper adds up the prices of the items in a basket. Given the list `numbers` of
    prices, what is the total?
    """
)

_JSON_BLOCK = re.compile(r"```json\n(.*?)\n```", re.S)


def _given(prompt: str, heading: str):
    return json.loads(_JSON_BLOCK.search(prompt[prompt.index(heading) :]).group(1))


# A refactor whose main_solution does not take the generator's keyword: every call raises
# TypeError, as some real refactors do (asked for files that contain this marker).
BROKEN_MARKER = "kwarg_mismatch"
BROKEN_REPLY = REFACTOR_REPLY.replace("def main_solution(numbers):", "def main_solution(values):")


def reply_for(messages: list[dict]) -> str:
    prompt = messages[0]["content"] if messages[0]["role"] == "user" else messages[1]["content"]
    if BROKEN_MARKER in prompt and "## Given" not in prompt:
        return BROKEN_REPLY
    turn = sum(m["role"] == "assistant" for m in messages)
    if "## Given input" in prompt:
        total = sum(_given(prompt, "## Given input")["numbers"])
        guess = total if turn else total + 1
        return (
            f'Adding the numbers step by step gives {guess}.\n```json\n{{"output": {guess}}}\n```'
        )
    if "## Given output" in prompt:
        value = _given(prompt, "## Given output")
        return f'One number equal to the total works.\n```json\n{{"input": {{"numbers": [{value}]}}}}\n```'
    return REFACTOR_REPLY


class ScriptedLLM:
    """`reply(messages) -> content` picks each reply (default: `reply_for`); an int instead of
    content is answered as that HTTP error status."""

    def __init__(self, reply=reply_for):
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(body)
                content = reply(body["messages"])
                if isinstance(content, int):
                    error = json.dumps({"error": {"message": "scripted failure"}}).encode()
                    self.send_response(content)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(error)))
                    self.end_headers()
                    self.wfile.write(error)
                    return
                payload = {
                    "id": f"cmpl-{len(outer.requests)}",
                    "object": "chat.completion",
                    "created": 0,
                    "model": body["model"],
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": content},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30},
                }
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


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
