"""Benchmark decontamination by word n-gram overlap (13-grams by default).

Normalisation: text is lowercased and split on every run of characters that are not letters or
digits (Unicode-aware, underscore counts as a separator), so `def f(nums):` and `DEF F( NUMS )`
give the same tokens `def f nums`. N-grams are hashed to 64-bit ints (blake2b) kept in a set, so
the index of a benchmark costs a few bytes per n-gram and lookups are set membership tests.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

_TOKEN_SPLIT = re.compile(r"[\W_]+", re.UNICODE)


def tokens(text: str) -> list[str]:
    """Lowercase word tokens of `text` (see module docstring)."""
    return [t for t in _TOKEN_SPLIT.split(text.lower()) if t]


def _hash(gram: tuple[str, ...]) -> int:
    digest = hashlib.blake2b("\x1f".join(gram).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def _grams(toks: list[str], n: int) -> Iterator[tuple[int, int]]:
    """(start index, hash) of each n-gram: `_hash` of it, with each token encoded once rather
    than once per n-gram it is in (half the CPU of a shard's decontamination)."""
    encoded = [t.encode("utf-8") for t in toks]
    blake2b, from_bytes = hashlib.blake2b, int.from_bytes
    for i in range(len(encoded) - n + 1):
        digest = blake2b(b"\x1f".join(encoded[i : i + n]), digest_size=8).digest()
        yield i, from_bytes(digest, "big")


class NgramIndex:
    """The set of hashed word n-grams of some texts."""

    def __init__(self, hashes: set[int], n: int, n_texts: int = 0):
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        self.hashes = hashes
        self.n = n
        self.n_texts = n_texts

    def __repr__(self) -> str:
        return f"NgramIndex(n={self.n}, ngrams={len(self.hashes)}, texts={self.n_texts})"

    def __len__(self) -> int:
        return len(self.hashes)

    @classmethod
    def from_texts(cls, texts: Iterable[str], n: int = 13) -> NgramIndex:
        """Index every n-gram of `texts`; texts shorter than n tokens add nothing."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        hashes: set[int] = set()
        count = 0
        for text in texts:
            count += 1
            hashes.update(h for _, h in _grams(tokens(text), n))
        return cls(hashes, n, count)

    def first_overlap(self, text: str) -> str | None:
        """The first n-gram of `text` (tokens joined by spaces) found in the index, else None."""
        toks = tokens(text)
        for i, h in _grams(toks, self.n):
            if h in self.hashes:
                return " ".join(toks[i : i + self.n])
        return None

    def overlaps(self, text: str) -> bool:
        return self.first_overlap(text) is not None


def load_benchmark_texts(path: str | Path) -> list[str]:
    """Texts of a benchmark file: every string field of each JSONL row (`.jsonl`/`.json` lines,
    nested values included), or the whole file for any other extension."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"benchmark file {str(path)!r} does not exist")
    if p.suffix.lower() not in {".jsonl", ".ndjson"}:
        return [p.read_text(encoding="utf-8", errors="replace")]
    texts: list[str] = []
    with p.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise ValueError(f"{p.name} line {number} is not JSON: {exc}") from exc
            texts.extend(_strings(row))
    return texts


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


# Benchmarks whose n-gram hashes ship with the package, so decontamination checks something
# with no file configured (built by scripts/build_benchmark_ngrams.py; see the folder's README).
BUILTIN_BENCHMARKS = ("cruxeval",)
BUILTIN_NGRAM = 13


def builtin_path(name: str) -> Path:
    return Path(__file__).with_name("benchmark_ngrams") / f"{name}.ngrams.gz"


def load_builtin(name: str) -> NgramIndex:
    """The shipped n-gram index of benchmark `name` (one of BUILTIN_BENCHMARKS)."""
    import gzip

    if name not in BUILTIN_BENCHMARKS:
        raise ValueError(f"no shipped n-grams for {name!r}; shipped: {list(BUILTIN_BENCHMARKS)}")
    data = gzip.decompress(builtin_path(name).read_bytes())
    head, _, body = data.partition(b"\n")
    header = json.loads(head)
    hashes = {int.from_bytes(body[i : i + 8], "big") for i in range(0, len(body), 8)}
    if len(hashes) != header["ngrams"]:
        raise ValueError(
            f"{builtin_path(name).name} is damaged: {len(hashes)} of {header['ngrams']} n-grams"
        )
    return NgramIndex(hashes, header["n"], header["texts"])


def decontamination_index(
    builtin: list[str], files: list[Path], n: int
) -> tuple[NgramIndex | None, list[str]]:
    """One index of the shipped sets and the configured benchmark files, and their names."""
    if not builtin and not files:
        return None, []
    hashes: set[int] = set()
    texts = 0
    for name in builtin:
        shipped = load_builtin(name)
        hashes |= shipped.hashes
        texts += shipped.n_texts
    if files:
        configured = NgramIndex.from_texts(
            (t for path in files for t in load_benchmark_texts(path)), n=n
        )
        hashes |= configured.hashes
        texts += configured.n_texts
    names = [f"{name} (shipped)" for name in builtin] + [Path(f).name for f in files]
    return NgramIndex(hashes, n, texts), names
