"""The `codeio` command line: sandbox tools, dataset pulls and the demo, without Dagster's UI."""

from __future__ import annotations

import argparse
import importlib
import sys

# Each subcommand lives beside the code it drives and registers itself; imports are lazy so
# that `codeio --help` stays fast and a missing optional dependency only affects its command.
_SUBCOMMANDS = {
    "sandbox": "codeio_dagster.sandbox.cli",
    "pull": "codeio_dagster.publish.cli",
    "demo": "codeio_dagster.demo",
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="codeio", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module in _SUBCOMMANDS.items():
        if only is not None and name != only:
            sub.add_parser(name, help=f"(see `codeio {name} --help`)")
            continue
        importlib.import_module(module).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and not argv[0].startswith("-") else None
    args = build_parser(only=command).parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
