"""`codeio pull`: download a published dataset's Parquet files at a pinned revision."""

from __future__ import annotations

import argparse
import fnmatch
import shutil
import sys
from pathlib import Path

from codeio_dagster.hfhub import check_repo_id, hub_endpoint


class PullError(Exception):
    """A pull that cannot proceed, with what was expected or how to fix it."""


def _unreachable(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) is a failure to reach the server at all."""
    seen: BaseException | None = exc
    while seen is not None:
        names = {cls.__name__ for cls in type(seen).__mro__}
        if isinstance(seen, OSError) or names & {"TransportError", "NetworkError", "ConnectError"}:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _select(available: list[str], where: str, config: str | None) -> list[str]:
    pattern = f"data/{config}/*.parquet" if config else "*.parquet"
    wanted = [f for f in available if fnmatch.fnmatch(f, pattern)]
    if not wanted:
        configs = sorted(
            {f.split("/")[1] for f in available if f.count("/") >= 2 and f.startswith("data/")}
        )
        what = f" for config {config!r}" if config else ""
        raise LookupError(
            f"{where} has no Parquet files{what}; configs present: {configs or 'none'}"
        )
    if "README.md" in available:
        wanted.append("README.md")
    return wanted


def pull_folder(folder: Path, out: str | Path, config: str | None = None) -> list[Path]:
    """Copy a local published folder's Parquet files (and card) into `out`; in place if same."""
    available = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    wanted = _select(available, str(folder), config)
    out = Path(out)
    if out.resolve() == folder.resolve():
        return [folder / f for f in wanted]
    for name in wanted:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(folder / name, out / name)
    return [out / f for f in wanted]


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "pull",
        help="download a published dataset (Parquet files) at a pinned revision",
        description=__doc__,
    )
    parser.add_argument(
        "repo_id", help="the dataset repo, e.g. owner/codeio-data, or a local published folder"
    )
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

    try:
        check_repo_id(repo_id)
    except ValueError:
        raise PullError(
            f"{repo_id!r} is neither a Hub dataset repo id (owner/name) nor an existing local "
            "folder"
        ) from None
    endpoint = hub_endpoint(endpoint)
    api = HfApi(endpoint=endpoint)
    try:
        sha = api.repo_info(repo_id, repo_type="dataset", revision=revision or "main").sha
    except Exception as exc:
        if _unreachable(exc):
            raise PullError(
                f"cannot reach the Hub at {endpoint} ({type(exc).__name__}: {exc}); check "
                "--endpoint or HF_ENDPOINT, or that the server is running"
            ) from None
        raise
    if sha is None:
        raise RuntimeError(f"{endpoint} did not report a commit sha for {repo_id}@{revision}")
    available = api.list_repo_files(repo_id, repo_type="dataset", revision=sha)
    wanted = _select(available, f"{repo_id}@{sha}", config)
    local = api.snapshot_download(
        repo_id, repo_type="dataset", revision=sha, allow_patterns=wanted, local_dir=str(out)
    )
    return sha, [Path(local) / f for f in wanted]


def run(args: argparse.Namespace) -> int:
    folder = Path(args.repo_id).expanduser()
    if folder.is_dir():
        return _run_folder(args, folder)
    out = args.out or args.repo_id.split("/")[-1]
    try:
        if not args.revision:
            print(f"resolving {args.repo_id}@main ...", file=sys.stderr)
        sha, files = pull(args.repo_id, out, args.config, args.revision, args.endpoint)
    except (LookupError, PullError) as exc:
        print(f"codeio pull: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        from codeio_dagster.publish.hub import redact

        print(f"codeio pull: {redact(f'{type(exc).__name__}: {exc}')}", file=sys.stderr)
        return 1
    print(f"revision: {sha}")
    print(f"downloaded {len(files)} file(s) into {out}")
    for path in files:
        print(f"  {path}")
    return 0


def _run_folder(args: argparse.Namespace, folder: Path) -> int:
    if args.revision:
        print(
            f"codeio pull: {folder} is a local folder, which has no revisions; drop --revision",
            file=sys.stderr,
        )
        return 2
    out = Path(args.out) if args.out else Path(folder.resolve().name)
    try:
        files = pull_folder(folder, out, args.config)
    except LookupError as exc:
        print(
            f"codeio pull: {exc} (expected a folder laid out like a Hub dataset repo: "
            "data/<config>/<shard>.parquet)",
            file=sys.stderr,
        )
        return 2
    print(f"local folder: {folder}")
    same = out.resolve() == folder.resolve()
    print(f"{'found' if same else 'copied'} {len(files)} file(s) {'in' if same else 'into'} {out}")
    for path in files:
        print(f"  {path}")
    return 0
