"""`codeio pull`: download a published dataset's Parquet files at a pinned revision."""

from __future__ import annotations

import argparse
import fnmatch
import sys
from pathlib import Path

from codeio_dagster.hfhub import hub_endpoint


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "pull",
        help="download a published dataset (Parquet files) at a pinned revision",
        description=__doc__,
    )
    parser.add_argument("repo_id", help="the dataset repo, e.g. owner/codeio-data")
    parser.add_argument("--config", help="only this config (codeio, codeio_pp, unified)")
    parser.add_argument("--revision", help="commit sha, branch or tag (default: resolve main)")
    parser.add_argument("--out", help="target folder (default: ./<repo name>)")
    parser.add_argument("--endpoint", help="Hub URL (default: HF_ENDPOINT or huggingface.co)")
    parser.set_defaults(func=run)
    return parser


def pull(
    repo_id: str,
    out: str | Path,
    config: str | None = None,
    revision: str | None = None,
    endpoint: str | None = None,
) -> tuple[str, list[Path]]:
    """Download the repo's Parquet files (and card) at a revision; returns (commit sha, files)."""
    from huggingface_hub import HfApi

    endpoint = hub_endpoint(endpoint)
    api = HfApi(endpoint=endpoint)
    sha = api.repo_info(repo_id, repo_type="dataset", revision=revision or "main").sha
    if sha is None:
        raise RuntimeError(f"{endpoint} did not report a commit sha for {repo_id}@{revision}")
    available = api.list_repo_files(repo_id, repo_type="dataset", revision=sha)
    pattern = f"data/{config}/*.parquet" if config else "*.parquet"
    wanted = [f for f in available if fnmatch.fnmatch(f, pattern)]
    if not wanted:
        configs = sorted({f.split("/")[1] for f in available if f.startswith("data/")})
        what = f" for config {config!r}" if config else ""
        raise LookupError(
            f"{repo_id}@{sha} has no Parquet files{what}; configs present: {configs or 'none'}"
        )
    if "README.md" in available:
        wanted.append("README.md")
    local = api.snapshot_download(
        repo_id, repo_type="dataset", revision=sha, allow_patterns=wanted, local_dir=str(out)
    )
    return sha, [Path(local) / f for f in wanted]


def run(args: argparse.Namespace) -> int:
    out = args.out or args.repo_id.split("/")[-1]
    try:
        if not args.revision:
            print(f"resolving {args.repo_id}@main ...", file=sys.stderr)
        sha, files = pull(args.repo_id, out, args.config, args.revision, args.endpoint)
    except LookupError as exc:
        print(f"codeio pull: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        from codeio_dagster.publish.resources import redact

        print(f"codeio pull: {redact(f'{type(exc).__name__}: {exc}')}", file=sys.stderr)
        return 1
    print(f"revision: {sha}")
    print(f"downloaded {len(files)} file(s) into {out}")
    for path in files:
        print(f"  {path}")
    return 0
