"""The ``apt`` command.

Each subcommand lives in ``apt.commands.<name>`` and provides ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``. Adding a command is one module and one entry
in :data:`COMMANDS`. Every subcommand accepts ``--config FILE.yaml``: its keys (the long option
names, with ``_`` or ``-``) become the defaults, and flags given on the command line win.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path
from typing import Sequence

from apt.errors import AptError

COMMANDS = ("assets", "calib", "prune", "export", "eval", "report")


def _load_yaml_defaults(parser: argparse.ArgumentParser, path: str) -> None:
    import yaml

    p = Path(path)
    if not p.is_file():
        raise AptError(f"--config {path}: no such file")
    data = yaml.safe_load(p.read_text()) or {}
    if not isinstance(data, dict):
        raise AptError(f"--config {path}: expected a mapping of option names to values")
    known = {a.dest for a in parser._actions}
    defaults = {}
    for key, value in data.items():
        dest = str(key).replace("-", "_")
        if dest not in known:
            raise AptError(f"--config {path}: unknown setting {key!r}; known: "
                           + ", ".join(sorted(k for k in known if k not in ("help", "config"))))
        defaults[dest] = value
    parser.set_defaults(**defaults)


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    from apt import __version__

    parser = argparse.ArgumentParser(prog="apt", description="APT: prune LLMs without retraining, evaluate them, and report.")
    parser.add_argument("--version", action="version", version=f"apt {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    leaves: dict[str, argparse.ArgumentParser] = {}
    for name in COMMANDS:
        module = importlib.import_module(f"apt.commands.{name}")
        cmd = sub.add_parser(name, help=module.HELP, description=module.HELP)
        cmd.set_defaults(_module=module, _parser=cmd)
        cmd.add_argument("--config", metavar="FILE.yaml", help="read settings from a YAML file")
        module.add_arguments(cmd)
        leaves[name] = cmd
    return parser, leaves


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, _ = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        leaf = getattr(args, "_parser")
        if getattr(args, "config", None):
            _load_yaml_defaults(leaf, args.config)
            args = parser.parse_args(argv)
        return int(args._module.run(args) or 0)
    except AptError as exc:
        print(f"apt {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"apt {args.command}: interrupted; outputs that were not complete were not written",
              file=sys.stderr)
        return 130
