"""A Hub-protocol server on 127.0.0.1 with a planted token, and a client configured for it."""

from __future__ import annotations

import polars as pl
import pytest

from tests.testing_hub import HubTestServer

PLANTED = "hf_PLANTED-test-value-not-a-real-token"


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """The test server requiring the planted token; HF_TOKEN set, Xet off, caches in tmp."""
    import huggingface_hub.constants as constants

    # huggingface_hub reads these once at import; the env alone would be too late here.
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setenv("HF_TOKEN", PLANTED)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    with HubTestServer(token=PLANTED) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


@pytest.fixture
def make_tables():
    """A function building small stand-ins for the three final datasets of one shard."""
    return _make_tables


def _make_tables(shard: str, n: int) -> dict[str, pl.DataFrame]:
    messages = pl.List(pl.Struct({"role": pl.String, "content": pl.String}))
    rows = [
        {
            "id": f"{shard}-{i}",
            "prompt": f"What does f({i}) return? | shard {shard}",
            "turn_1": f'I think {i}. {{"output": {i}}}',
            "feedback_1": None if i % 2 else "wrong: expected 3",
            "turn_2": None if i % 2 else '{"output": 3}',
            "feedback_2": None,
            "messages": [
                {"role": "user", "content": f"q{i}"},
                {"role": "assistant", "content": "a"},
            ],
        }
        for i in range(n)
    ]
    codeio = pl.DataFrame(
        rows,
        schema={
            "id": pl.String,
            "prompt": pl.String,
            "turn_1": pl.String,
            "feedback_1": pl.String,
            "turn_2": pl.String,
            "feedback_2": pl.String,
            "messages": messages,
        },
    )
    unified = pl.DataFrame(
        {
            "function_id": [f"{shard}-fn{i}" for i in range(2)],
            "reference_code": ["def main_solution(x):\n    return x + 1\n"] * 2,
            "io_pairs": [[{"input": '{"x": 1}', "output": "2"}]] * 2,
        }
    )
    return {"codeio": codeio, "codeio_pp": codeio.head(max(n - 1, 1)), "unified": unified}
