"""``textvae`` command line. Each module owns its subcommand through ``register(subparsers)``; this file only
dispatches and turns the project's errors into one line on stderr and a non-zero exit."""
from __future__ import annotations

import argparse
import importlib
import sys

from textvae import __version__
from textvae.errors import TextvaeError

# modules that register a subcommand, in the order `textvae --help` lists them
COMMAND_MODULES = ["prepare", "train_cli", "evaluation", "probing", "reporting", "provenance", "gpu_slots", "pipeline_cli"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="textvae", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"textvae {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"textvae.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"textvae.{name}":
                continue  # optional module not present in this build
            raise
        if hasattr(module, "register"):
            module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    name = "textvae"
    try:
        parser = build_parser()   # imports torch: seconds, in which a Ctrl-C must not print a traceback
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        name = f"textvae {args.command}"
        return int(args.func(args) or 0)
    except TextvaeError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        # a file system failure the command did not foresee (disk full, a read-only folder...): one line
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"{name}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130

if __name__ == "__main__":
    sys.exit(main())
