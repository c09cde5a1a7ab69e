"""``textvae`` command line. Each module owns its subcommand through ``register(subparsers)``; this file only
dispatches and turns the project's errors into one line on stderr and a non-zero exit."""
from __future__ import annotations

import argparse
import importlib
import sys

from textvae import __version__
from textvae.core.errors import TextvaeError

# modules that register a subcommand, in the order `textvae --help` lists them
COMMAND_MODULES = ["corpora.prepare", "cli.train", "evaluation.evaluate", "probing.probes", "reports.reporting",
                   "reports.provenance", "workflow.gpu_slots", "cli.pipeline"]


class UsageError(TextvaeError):
    """A command line argparse refuses (a bad type, a missing or unknown option): one line, exit 1."""


class Parser(argparse.ArgumentParser):
    """argparse, but a refused command line raises :class:`UsageError` (argparse would print its usage block and
    exit 2); every subcommand's parser is one of these (add_subparsers makes them of the parent's class)."""

    def error(self, message: str):
        raise UsageError(message.removeprefix("argument "))


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="textvae", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"textvae {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"textvae.{name}").register(sub)
    parser.commands = set(sub.choices)
    return parser


def main(argv: list[str] | None = None) -> int:
    name = "textvae"
    try:
        parser = build_parser()   # imports torch: seconds, in which a Ctrl-C must not print a traceback
        argv = sys.argv[1:] if argv is None else argv
        name = f"textvae {argv[0]}" if argv and argv[0] in parser.commands else name
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
