"""Derive the n-gram hash set shipped for decontamination from a benchmark's JSONL file.

    python scripts/build_benchmark_ngrams.py ../shared/fixtures/cruxeval.jsonl cruxeval

writes `codeio_dagster/benchmark_ngrams/<name>.ngrams.gz`: a JSON header line (name, n, number of
texts and n-grams, the sha256 of the source file) and the sorted 64-bit n-gram hashes, big-endian,
made by the same normalisation and hash as `codeio_dagster.decontam` (so the shipped set equals
what configuring the benchmark file itself would index). Only hashes are shipped, never the
benchmark's text.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
from pathlib import Path

from codeio_dagster.decontam import NgramIndex, builtin_path, load_benchmark_texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="the benchmark's JSONL file")
    parser.add_argument("name", help="the name the set is shipped under, e.g. cruxeval")
    parser.add_argument("--n", type=int, default=13, help="words per n-gram")
    args = parser.parse_args()
    index = NgramIndex.from_texts(load_benchmark_texts(args.source), n=args.n)
    header = {
        "name": args.name,
        "n": index.n,
        "texts": index.n_texts,
        "ngrams": len(index),
        "source_sha256": hashlib.sha256(args.source.read_bytes()).hexdigest(),
    }
    body = b"".join(h.to_bytes(8, "big") for h in sorted(index.hashes))
    out = builtin_path(args.name)
    # mtime=0: the same source gives the same bytes, so a rebuild shows no diff.
    out.write_bytes(gzip.compress(json.dumps(header).encode() + b"\n" + body, mtime=0))
    print(f"{out.name}: {header['ngrams']} {index.n}-grams from {header['texts']} texts")


if __name__ == "__main__":
    main()
