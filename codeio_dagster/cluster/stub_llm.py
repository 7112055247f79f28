"""A deterministic OpenAI-compatible server for `make cluster-demo`, the cluster and graph tests.

It speaks the real chat-completions protocol on 127.0.0.1 so that runs on any Ray node reach it
like a remote endpoint, and counts what it receives (`GET /stats`), so a test can prove that a
rerun sends nothing. Replies: every file is refactored into one small function (the sum of a
list); output predictions are wrong at turn 0 and right after feedback; input predictions are
right; a file containing `kwarg_mismatch` gets a refactor whose every call raises, and the first
request containing `hold_first_reply` waits two minutes for its reply. Every verdict
path and the revision turn then have work, with no model on the machine.

Run: python -m codeio_dagster.cluster.stub_llm --port 8000
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

REFACTOR = """## Main Function
```python
def main_solution(numbers):
    total = 0
    for n in numbers:
        total += n
    return total
```

## Input Output Description
Input: numbers (list of int), the values to add. Output: their sum (int).

## Input Generator
```python
import random

def input_generator():
    return {"numbers": [random.randint(0, 9) for _ in range(random.randint(1, 5))]}
```

## Problem Statement
A cashier adds up the prices in a basket. Given the list `numbers` of prices, what is the total?
"""
# A refactor whose main_solution does not take the generator's keyword: every call raises
# TypeError, as some real refactors do (given for files that contain this marker).
BROKEN_MARKER = "kwarg_mismatch"
BROKEN_REFACTOR = REFACTOR.replace("def main_solution(numbers):", "def main_solution(values):")
# The first request whose body contains this marker is answered only after HOLD_SECONDS; the
# same request again is answered at once.
HOLD_MARKER = "hold_first_reply"
HOLD_SECONDS = 120
_JSON = re.compile(r"```json\n(.*?)\n```", re.S)


def _block_after(text: str, heading: str):
    return json.loads(_JSON.search(text[text.index(heading) :]).group(1))


def reply(messages: list[dict]) -> str:
    """The deterministic answer to one chat request."""
    prompt = next(m["content"] for m in messages if m["role"] == "user")
    if BROKEN_MARKER in prompt and "## Given" not in prompt:
        return BROKEN_REFACTOR
    turn = sum(m["role"] == "assistant" for m in messages)
    if "## Given input" in prompt:
        total = sum(_block_after(prompt, "## Given input")["numbers"])
        guess = total if turn else total + 1
        return f'Adding step by step gives {guess}.\n```json\n{{"output": {guess}}}\n```'
    if "## Given output" in prompt:
        value = _block_after(prompt, "## Given output")
        return f'A single number equal to the total.\n```json\n{{"input": {{"numbers": [{value}]}}}}\n```'
    return REFACTOR


class StubLLM:
    """The server, in a thread of this process. `reply(messages)` gives each reply's content
    (default: `reply`); an int instead is answered as that HTTP error status. `requests` holds
    each request body, `hashes` each raw body's sha256 (what `GET /stats` returns)."""

    def __init__(self, port: int = 0, reply: Callable[[list[dict]], str | int] = reply) -> None:
        self.requests: list[dict] = []
        self.hashes: list[str] = []
        self._held: set[str] = set()
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # A reply is written as headers, then body. With Nagle's algorithm on, the body
            # waits for the client to acknowledge the headers, which Linux delays up to 40 ms:
            # 44 ms per request on a kept-alive connection, measured. Servers such as uvicorn
            # set TCP_NODELAY too.
            disable_nagle_algorithm = True

            def log_message(self, *args):
                pass

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path.rstrip("/") == "/stats":
                    with outer._lock:
                        self._send(200, {"requests": list(outer.hashes)})
                elif self.path.rstrip("/") == "/v1/models":
                    self._send(200, {"object": "list", "data": [{"id": "stub", "object": "model"}]})
                else:
                    self._send(404, {"error": {"message": f"no route {self.path}"}})

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._send(404, {"error": {"message": f"no route {self.path}"}})
                    return
                body = json.loads(raw)
                digest = hashlib.sha256(raw).hexdigest()
                with outer._lock:
                    outer.requests.append(body)
                    outer.hashes.append(digest)
                    n = len(outer.requests)
                    hold = HOLD_MARKER.encode() in raw and digest not in outer._held
                    outer._held.add(digest)
                if hold:
                    # A run can then be caught in the middle of a step, whatever the machine's speed.
                    time.sleep(HOLD_SECONDS)
                content = reply(body["messages"])
                if isinstance(content, int):
                    self._send(content, {"error": {"message": "scripted failure"}})
                    return
                self._send(
                    200,
                    {
                        "id": f"stub-{n}",
                        "object": "chat.completion",
                        "created": 0,
                        "model": body.get("model", "stub"),
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": content},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30},
                    },
                )

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"

    def serve_forever(self) -> None:
        self.server.serve_forever()

    def start(self) -> StubLLM:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    StubLLM(parser.parse_args().port).serve_forever()


if __name__ == "__main__":
    main()
