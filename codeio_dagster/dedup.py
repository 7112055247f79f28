"""Near-duplicate functions: MinHash signatures of normalised code, matched with LSH (datasketch).

Two functions are near-duplicates when the Jaccard similarity of their normalised token 5-grams
reaches the configured threshold. Normalising strips comments and docstrings and renames every
identifier the code defines to `v0, v1, ...` in order of first use, so renamed variables and other
comments do not make a copy look new. LSH only proposes candidates; a candidate is confirmed by
the signatures' estimated similarity, so the band layout trades speed for recall, not precision.

The index persists one Parquet file per shard (function id, signature) through the storage
layer, beside the landing index. A shard is compared with the files of the shards landed before
it, never with its own file, so rerunning a shard does not match its functions against
themselves and the outcome does not depend on the order shards were materialised in.
"""

from __future__ import annotations

import ast
import builtins
import io
import keyword
import re
import tokenize
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import polars as pl

from codeio_dagster import storage

# numpy is imported where it is used: the code location imports this module, and numpy would
# add 0.1 s to what its server does before it first answers a build.
if TYPE_CHECKING:
    import numpy as np

SEED = 1
# The hash family of the signatures (datasketch 2 names it); stored signatures assume it.
SCHEME = "affine32"
SHINGLE = 5
_KEEP = frozenset(dir(builtins)) | frozenset(keyword.kwlist) | frozenset(keyword.softkwlist)
_FALLBACK_TOKEN = re.compile(r"\w+|[^\w\s]")
_SKIP = frozenset(
    {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT}
)


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                node.body = body[1:] or [ast.Pass()]
    return tree


def _python_tokens(source: str) -> list[tuple[int, str]]:
    return [
        (t.type, t.string)
        for t in tokenize.generate_tokens(io.StringIO(source).readline)
        if t.type not in _SKIP and t.type != tokenize.ENDMARKER
    ]


def _text_tokens(code: str) -> list[tuple[int, str]]:
    # Crude on purpose (a `#` inside a string cuts it): only for code that does not tokenize.
    text = re.sub(r"#[^\n]*", "", code)
    return [
        (tokenize.NAME if t[0].isalpha() or t[0] == "_" else tokenize.OP, t)
        for t in _FALLBACK_TOKEN.findall(text)
    ]


def normalise(code: str) -> list[str]:
    """The code's tokens without comments or docstrings, identifiers renamed in order of use.

    Code that does not parse is tokenized as it is (comments dropped), and code that does not
    even tokenize is split into words and punctuation."""
    try:
        tokens = _python_tokens(ast.unparse(_strip_docstrings(ast.parse(code))))
    except (SyntaxError, ValueError, RecursionError, tokenize.TokenError):
        try:
            tokens = _python_tokens(code)
        except (SyntaxError, tokenize.TokenError):
            tokens = _text_tokens(code)
    names: dict[str, str] = {}
    out: list[str] = []
    previous = ""
    for kind, text in tokens:
        # Attribute names (`.append`) and builtins are the API the code calls, not its own names.
        if kind == tokenize.NAME and text not in _KEEP and previous != ".":
            text = names.setdefault(text, f"v{len(names)}")
        out.append(text)
        previous = text
    return out


def shingles(tokens: Sequence[str], n: int = SHINGLE) -> set[bytes]:
    """Token n-grams as bytes (the whole sequence when it is shorter than n)."""
    if len(tokens) <= n:
        return {" ".join(tokens).encode()}
    return {" ".join(tokens[i : i + n]).encode() for i in range(len(tokens) - n + 1)}


def signature(code: str, num_perm: int) -> np.ndarray:
    """The MinHash signature (num_perm uint32 values) of the normalised code."""
    import numpy as np
    from datasketch import MinHash

    minhash = MinHash(num_perm=num_perm, seed=SEED, scheme=SCHEME)
    minhash.update_batch(shingles(normalise(code)))
    return minhash.hashvalues.astype(np.uint32)


@dataclass(frozen=True)
class Match:
    function_id: str
    shard: str
    similarity: float


class NearDuplicateIndex:
    """An in-memory LSH index of signatures keyed by (shard, function id)."""

    def __init__(self, threshold: float, num_perm: int) -> None:
        from datasketch import MinHashLSH

        self.threshold, self.num_perm = threshold, num_perm
        self._lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self._signatures: dict[tuple[str, str], np.ndarray] = {}

    def __len__(self) -> int:
        return len(self._signatures)

    def _lean(self, values: np.ndarray):
        from datasketch import LeanMinHash

        return LeanMinHash(seed=SEED, hashvalues=values, scheme=SCHEME)

    def insert(self, shard: str, function_id: str, values: np.ndarray) -> None:
        key = (shard, function_id)
        if key in self._signatures:
            return
        self._signatures[key] = values
        self._lsh.insert(key, self._lean(values))

    def query(self, values: np.ndarray) -> Match | None:
        """The most similar indexed function at or above the threshold (ties: smallest key)."""
        import numpy as np

        best: tuple[float, tuple[str, str]] | None = None
        for key in self._lsh.query(self._lean(values)):
            similarity = float(np.mean(self._signatures[key] == values))
            if similarity >= self.threshold and (
                best is None or (-similarity, key) < (-best[0], best[1])
            ):
                best = (similarity, key)
        if best is None:
            return None
        return Match(function_id=best[1][1], shard=best[1][0], similarity=best[0])


def find_near_duplicates(
    index: NearDuplicateIndex, shard: str, functions: Iterable[tuple[str, np.ndarray]]
) -> dict[str, Match]:
    """Function id -> the earlier function it nearly copies, for the new shard's functions in
    order; the ones kept are inserted, so a later copy in the same shard matches the first."""
    found: dict[str, Match] = {}
    for function_id, values in functions:
        match = index.query(values)
        if match is None:
            index.insert(shard, function_id, values)
        else:
            found[function_id] = match
    return found


INDEX_SCHEMA = {"function_id": pl.String(), "signature": pl.List(pl.UInt32())}


class DedupIndexStore:
    """The persisted index: `<root>/<shard>.parquet` holds the kept functions of one shard."""

    def __init__(self, root: storage.Location) -> None:
        self.root = root

    def path(self, shard: str) -> storage.Location:
        return self.root / f"{shard}.parquet"

    def lock(self):
        # One shard at a time reads the earlier shards and writes its own file, so two shards
        # materialised at once still see each other in landing order.
        return storage.exclusive(self.root.parent / "_dedup.lock")

    def stored_shards(self) -> set[str]:
        return {name.removesuffix(".parquet") for name in storage.list_files(self.root, ".parquet")}

    def load(self, shards: Iterable[str], threshold: float, num_perm: int) -> NearDuplicateIndex:
        """An index of the given shards' stored functions (shards never stored are skipped)."""
        import numpy as np

        index = NearDuplicateIndex(threshold, num_perm)
        stored = self.stored_shards()
        for shard in shards:
            if shard not in stored:
                continue
            frame = storage.read_parquet(self.path(shard))
            for function_id, values in frame.iter_rows():
                if len(values) != num_perm:
                    raise ValueError(
                        f"{self.path(shard)} holds signatures of {len(values)} permutations but "
                        f"dedup.num_perm is {num_perm}: delete {self.root} to rebuild it"
                    )
                index.insert(shard, function_id, np.asarray(values, dtype=np.uint32))
        return index

    def save(self, shard: str, functions: Sequence[tuple[str, np.ndarray]]) -> None:
        frame = pl.DataFrame(
            {
                "function_id": [f for f, _ in functions],
                "signature": [v.tolist() for _, v in functions],
            },
            schema=INDEX_SCHEMA,
        )
        storage.write_parquet(frame, self.path(shard))


def earlier_shards(landing_order: Sequence[str], shard: str) -> list[str]:
    """The shards landed before `shard` (all of them when `shard` is not in the order)."""
    order = list(dict.fromkeys(landing_order))
    return order[: order.index(shard)] if shard in order else order


def mark_near_duplicates(frame: pl.DataFrame, matches: dict[str, Match]) -> pl.DataFrame:
    """Rows whose function nearly copies an earlier one get status `near_duplicate`, the
    matched id in `duplicate_of` and the match in `detail`."""
    if not matches:
        return frame
    found = pl.DataFrame(
        {
            "function_id": list(matches),
            "_of": [m.function_id for m in matches.values()],
            "_detail": [
                f"near-duplicate of function {m.function_id} in shard {m.shard} "
                f"(estimated similarity {m.similarity:.2f})"
                for m in matches.values()
            ],
        },
        schema={"function_id": pl.String(), "_of": pl.String(), "_detail": pl.String()},
    )
    hit = pl.col("_of").is_not_null()
    return (
        frame.join(found, on="function_id", how="left", maintain_order="left")
        .with_columns(
            status=pl.when(hit).then(pl.lit("near_duplicate")).otherwise(pl.col("status")),
            detail=pl.when(hit).then(pl.col("_detail")).otherwise(pl.col("detail")),
            duplicate_of=pl.when(hit).then(pl.col("_of")).otherwise(pl.col("duplicate_of")),
        )
        .drop("_of", "_detail")
    )


def drop_near_duplicates(
    frame: pl.DataFrame,
    store: DedupIndexStore,
    shard: str,
    landing_order: Sequence[str],
    *,
    threshold: float,
    num_perm: int,
) -> pl.DataFrame:
    """Mark the shard's kept functions that nearly copy a function of an earlier shard (or an
    earlier row of this one), and store the rest as this shard's part of the index."""
    kept = frame.filter((pl.col("status") == "ok") & pl.col("reference_code").is_not_null())
    functions = [
        (function_id, signature(code, num_perm))
        for function_id, code in kept.select("function_id", "reference_code").iter_rows()
    ]
    with store.lock():
        index = store.load(earlier_shards(landing_order, shard), threshold, num_perm)
        matches = find_near_duplicates(index, shard, functions)
        store.save(shard, [(f, v) for f, v in functions if f not in matches])
    return mark_near_duplicates(frame, matches)
