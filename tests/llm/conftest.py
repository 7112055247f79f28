"""A scripted OpenAI-compatible server on 127.0.0.1 that injects the faults real services show."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from codeio_dagster.llm.limits import Clock

# Script actions, one per attempt of a given prompt; the last one repeats.
#   ("ok", text)                 200, finish_reason "stop"
#   ("length", text)             200, finish_reason "length"
#   ("status", code, headers)    that HTTP status with a JSON error body
#   ("echo_auth", code)          that status, echoing the Authorization header in the body
#   ("reset",)                   TCP reset without a reply
#   ("hang",)                    no reply until the test ends, as a stuck upstream does
#   ("malformed",)               200 with a body that is not JSON


@dataclass
class Arrival:
    prompt: str
    t: float
    authorization: str | None
    body: dict


@dataclass
class ScriptedServer:
    base_url: str
    script: dict[str, list[tuple]] = field(default_factory=dict)
    arrivals: list[Arrival] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    release: threading.Event = field(default_factory=threading.Event)

    def times(self, prompt: str) -> list[float]:
        with self.lock:
            return [a.t for a in self.arrivals if a.prompt == prompt]

    def count(self) -> int:
        with self.lock:
            return len(self.arrivals)


def _completion(text: str, finish: str, body: dict) -> bytes:
    prompt_tokens = sum(len(m.get("content", "").split()) for m in body.get("messages", []))
    return json.dumps(
        {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": 0,
            "model": body.get("model"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": finish,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": len(text.split()),
                "total_tokens": prompt_tokens + len(text.split()),
            },
        }
    ).encode()


def _make_handler(state: ScriptedServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _send(self, code: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(payload)

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            prompt = body["messages"][-1]["content"]
            with state.lock:
                n = sum(1 for a in state.arrivals if a.prompt == prompt)
                state.arrivals.append(
                    Arrival(prompt, time.monotonic(), self.headers.get("Authorization"), body)
                )
                actions = state.script.get(prompt, [("ok", f"echo: {prompt}")])
            action = actions[min(n, len(actions) - 1)]
            kind = action[0]
            try:
                if kind == "ok":
                    self._send(200, _completion(action[1], "stop", body))
                elif kind == "length":
                    self._send(200, _completion(action[1], "length", body))
                elif kind == "status":
                    err = json.dumps({"error": {"message": f"scripted {action[1]}"}}).encode()
                    self._send(action[1], err, action[2] if len(action) > 2 else None)
                elif kind == "echo_auth":
                    auth = self.headers.get("Authorization", "")
                    self._send(action[1], json.dumps({"error": {"message": auth}}).encode())
                elif kind == "reset":
                    self.connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                    self.close_connection = True
                    self.connection.close()
                elif kind == "hang":
                    # Bounded so a forgotten handler thread cannot outlive a broken test run.
                    state.release.wait(120)
                    self.close_connection = True
                elif kind == "malformed":
                    self._send(200, b'{"choices": [ this is not json')
                else:
                    raise AssertionError(f"unknown script action {action!r}")
            except (BrokenPipeError, ConnectionResetError, OSError):
                self.close_connection = True

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass


@pytest.fixture
def scripted_server() -> Iterator[ScriptedServer]:
    """A fresh scripted server for one test; stopped afterwards."""
    state = ScriptedServer(base_url="")
    httpd = _Server(("127.0.0.1", 0), _make_handler(state))
    state.base_url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


class VirtualClock(Clock):
    """A Clock whose time moves only when the engine sleeps.

    Waits are recorded instead of slept, so tests assert the delays the engine asked for
    (Retry-After, backoff, rate limits) rather than wall-clock gaps on a shared machine.
    """

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        # Still a suspension point, as a real sleep is, so other workers get to run.
        await asyncio.sleep(0)


@pytest.fixture
def virtual_clock() -> VirtualClock:
    return VirtualClock()
