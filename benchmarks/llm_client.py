"""LLM client throughput against a fixed-latency endpoint: LLMResource vs the CodeI/O scripts' way.

A local OpenAI-compatible server (its own process) answers every chat completion after exactly
200 ms. 2,000 distinct requests go through LLMResource at concurrency 64 (fresh request cache),
then the same requests through a pool of 10 processes x 10 threads with the synchronous openai
client, as the CodeI/O scripts do. Ideal throughput for LLMResource is 64 / 0.2 s = 320 req/s.

    .venv/bin/python benchmarks/llm_client.py [--requests 2000] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

LATENCY_S = 0.2
MODEL = "bench-model"


def serve(port: int) -> None:
    """The fixed-latency endpoint (run in its own process)."""
    from aiohttp import web

    async def chat(request: web.Request) -> web.Response:
        body = await request.json()
        await asyncio.sleep(LATENCY_S)
        text = "answer to " + body["messages"][-1]["content"]
        return web.json_response(
            {
                "id": "bench",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16},
            }
        )

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/health", health)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, backlog=1024)


def start_server() -> tuple[subprocess.Popen, str]:
    from codeio_dagster.llm.local_model import free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(port)])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                return proc, f"http://127.0.0.1:{port}/v1"
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("benchmark server did not start")


def prompts(n: int) -> list[str]:
    return [f"What does f({i}) return? def f(x): return x * 2" for i in range(n)]


def run_resource(base_url: str, texts: list[str], concurrency: int) -> tuple[float, float, dict]:
    from codeio_dagster.llm import ChatRequest, LLMResource, LLMSettings, SamplingParams

    with tempfile.TemporaryDirectory() as tmp:
        llm = LLMResource.from_settings(
            LLMSettings(
                base_url=base_url,
                max_concurrency=concurrency,
                cache_path=Path(tmp) / "bench_cache.sqlite",
                timeout_s=30,
            ),
            api_key="bench-key",
        )
        requests = [
            ChatRequest(
                key=str(i),
                messages=[{"role": "user", "content": t}],
                params=SamplingParams(model=MODEL, max_tokens=64),
            )
            for i, t in enumerate(texts)
        ]
        cpu0, t0 = time.process_time(), time.perf_counter()
        outcomes, stats = llm.complete_many(requests)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    ok = sum(o.status == "ok" for o in outcomes)
    return wall, cpu, {"ok": ok, "retries": stats.retries, "misses": stats.cache_misses}


def run_raw_floor(base_url: str, texts: list[str], concurrency: int) -> float:
    """Bare aiohttp at the same concurrency: what this machine and server allow at best."""
    import aiohttp

    async def go() -> float:
        todo = list(texts)
        conn = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=conn) as session:

            async def worker() -> None:
                while todo:
                    text = todo.pop()
                    body = {"model": MODEL, "messages": [{"role": "user", "content": text}]}
                    async with session.post(f"{base_url}/chat/completions", json=body) as r:
                        await r.read()

            t0 = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return time.perf_counter() - t0

    return asyncio.run(go())


def _scripts_worker(args: tuple[str, list[str], int]) -> int:
    """One process of the CodeI/O-style pool: threads sharing one synchronous client."""
    import openai

    base_url, texts, threads = args
    client = openai.OpenAI(base_url=base_url, api_key="bench-key", timeout=30)

    def call(text: str) -> bool:
        reply = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": text}],
            max_tokens=64,
            temperature=0.7,
            seed=0,
        )
        return bool(reply.choices[0].message.content)

    with ThreadPoolExecutor(threads) as pool:
        return sum(pool.map(call, texts))


def run_scripts_way(
    base_url: str, texts: list[str], processes: int, threads: int
) -> tuple[float, float, int]:
    chunks = [texts[i::processes] for i in range(processes)]
    self0 = resource.getrusage(resource.RUSAGE_SELF)
    kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with mp.get_context("fork").Pool(processes) as pool:
        ok = sum(pool.map(_scripts_worker, [(base_url, c, threads) for c in chunks]))
    wall = time.perf_counter() - t0
    self1 = resource.getrusage(resource.RUSAGE_SELF)
    kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = sum(
        (b.ru_utime + b.ru_stime) - (a.ru_utime + a.ru_stime)
        for a, b in ((self0, self1), (kids0, kids1))
    )
    return wall, cpu, ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--processes", type=int, default=10)
    ap.add_argument("--threads", type=int, default=10)
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve)
        return 0

    n = args.requests
    texts = prompts(n)
    server, base_url = start_server()
    try:
        # One untimed wave first: lazy imports and TLS setup are start-up cost, not throughput.
        run_resource(base_url, [f"warm-up {i}" for i in range(args.concurrency)], args.concurrency)
        wall, cpu, info = run_resource(base_url, texts, args.concurrency)
        floor_wall = run_raw_floor(base_url, texts, args.concurrency)
        s_wall, s_cpu, s_ok = run_scripts_way(base_url, texts, args.processes, args.threads)
    finally:
        server.terminate()
        server.wait(timeout=10)

    ideal = args.concurrency / LATENCY_S
    achieved = n / wall
    s_conc = args.processes * args.threads
    print(f"endpoint: fixed {LATENCY_S * 1000:.0f} ms latency, {n} distinct requests")
    print(
        f"LLMResource   concurrency {args.concurrency:>3}: {achieved:7.1f} req/s "
        f"(ideal {ideal:.0f}), client CPU {cpu / n * 1000:5.2f} ms/request, "
        f"ok {info['ok']}/{n}, retries {info['retries']}"
    )
    print(
        f"scripts way   {args.processes} proc x {args.threads} threads ({s_conc}): "
        f"{n / s_wall:7.1f} req/s (ideal {s_conc / LATENCY_S:.0f}), "
        f"client CPU {s_cpu / n * 1000:5.2f} ms/request, ok {s_ok}/{n}"
    )
    print(
        f"bare aiohttp  concurrency {args.concurrency:>3}: {n / floor_wall:7.1f} req/s "
        f"(no retries/cache/accounting; the machine's ceiling, ratio {n / floor_wall / ideal:.3f})"
    )
    print(json.dumps({"achieved_rps": round(achieved, 1), "scripts_rps": round(n / s_wall, 1)}))
    print(f"ratio={achieved / ideal:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
