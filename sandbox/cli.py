"""`codeio sandbox ...`: run code in the sandbox, batches, the attack self-test, runtime setup."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_parser(subparsers) -> None:
    """Register the `sandbox` subcommand and its actions."""
    parser = subparsers.add_parser("sandbox", help="run untrusted code in the nsjail sandbox")
    parser.add_argument(
        "--unsafe",
        action="store_true",
        help="no isolation (mode unsafe_subprocess); debugging only",
    )
    parser.add_argument("--workers", type=int, default=0, help="jails in parallel (0: per core)")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per job")
    parser.add_argument("--memory-mb", type=int, default=1024, help="memory per job")
    parser.add_argument("--runtime-dir", type=Path, default=None, help="jail runtime folder")
    actions = parser.add_subparsers(dest="action", required=True)

    run = actions.add_parser("run", help="call a function from a file and print its result")
    run.add_argument("file", type=Path)
    run.add_argument("--call", required=True, help="function to call")
    run.add_argument("--input", default="{}", help="JSON object (kwargs) or array (positional)")
    run.set_defaults(func=_cmd_run)

    batch = actions.add_parser("batch", help="run a JSONL file of jobs; results on stdout")
    batch.add_argument("jobs", type=Path, help='lines {"id", "code", "call", "input"}')
    batch.set_defaults(func=_cmd_batch)

    selftest = actions.add_parser("selftest", help="run the attack suite and print a table")
    selftest.set_defaults(func=_cmd_selftest)

    setup = actions.add_parser("setup", help="build the jail's Python runtime")
    setup.set_defaults(func=_cmd_setup)


def _settings(args: argparse.Namespace, **overrides):
    from codeio_dagster.sandbox.settings import SandboxSettings

    fields = {
        "mode": "unsafe_subprocess" if args.unsafe else "nsjail",
        "workers": args.workers,
        "timeout_s": args.timeout,
        "memory_mb": args.memory_mb,
        "runtime_dir": args.runtime_dir.resolve() if args.runtime_dir else None,
    }
    fields.update(overrides)
    return SandboxSettings(**fields)


def _fail(message: str) -> int:
    print(f"codeio sandbox: {message}", file=sys.stderr)
    return 2


def _cmd_run(args: argparse.Namespace) -> int:
    from codeio_dagster.sandbox.executor import Executor
    from codeio_dagster.sandbox.jobs import Job

    try:
        code = args.file.read_text()
    except OSError as exc:
        return _fail(f"cannot read {args.file}: {exc}")
    try:
        payload = json.loads(args.input)
    except ValueError as exc:
        return _fail(f"--input is not JSON ({exc}): {args.input!r}")
    if not isinstance(payload, (dict, list)):
        return _fail(f"--input must be a JSON object or array, got {type(payload).__name__}")
    with Executor(_settings(args, workers=1)) as ex:
        (result,) = ex.run([Job(id=str(args.file), code=code, call=args.call, input=payload)])
    print(json.dumps(_public(result)))
    return 0 if result.status == "ok" else 1


def _public(result) -> dict:
    return {
        "id": result.id,
        "status": result.status,
        "output": result.output,
        "error": result.error,
        "duration_ms": result.duration_ms,
    }


def _read_jobs(path: Path):
    from pydantic import ValidationError

    from codeio_dagster.sandbox.jobs import Job

    jobs = []
    with path.open() as handle:
        for lineno, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise ValueError(f"{path}:{lineno}: not JSON ({exc})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{lineno}: expected a JSON object, got {row!r:.60}")
            try:
                jobs.append(Job(**row))
            except ValidationError as exc:
                raise ValueError(f"{path}:{lineno}: {exc}") from None
            except TypeError as exc:
                raise ValueError(f"{path}:{lineno}: {exc}") from None
    return jobs


def _cmd_batch(args: argparse.Namespace) -> int:
    from codeio_dagster.sandbox.executor import Executor

    try:
        jobs = _read_jobs(args.jobs)
    except (OSError, ValueError) as exc:
        return _fail(str(exc))
    with Executor(_settings(args)) as ex:
        results = ex.run(jobs, progress=True)
    out = sys.stdout
    for result in results:
        out.write(json.dumps(_public(result)) + "\n")
    out.flush()
    return 0


def _cmd_selftest(args: argparse.Namespace) -> int:
    from codeio_dagster.sandbox.attacks import format_table, run_attacks
    from codeio_dagster.sandbox.executor import Executor

    with Executor(_settings(args, workers=1)) as ex:
        reports = run_attacks(ex)
    print(format_table(reports))
    breaches = [r.name for r in reports if not r.contained]
    print(f"{len(reports) - len(breaches)}/{len(reports)} attacks contained")
    return 1 if breaches else 0


def _cmd_setup(args: argparse.Namespace) -> int:
    from codeio_dagster.sandbox.runtime import RuntimeBuildError, ensure_runtime

    try:
        path = ensure_runtime(_settings(args), log=lambda m: print(m, file=sys.stderr))
    except (RuntimeBuildError, ValueError) as exc:
        return _fail(str(exc))
    print(f"sandbox runtime ready: {path}")
    return 0
