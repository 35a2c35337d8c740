"""``gpsfleet``: one console script, one sub-command module per job.

Each module in ``app/commands`` has ``register(subparsers)``, which adds its parser and
sets ``handler=`` to a function ``(args) -> int``.  Commands are listed explicitly.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from app.commands import COMMANDS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gpsfleet",
        description="GPS terminal gateway, registry, warranty, health, alerts and repair tickets.",
    )
    parser.add_argument("--config", metavar="FILE", help="TOML settings file (also GPSFLEET_CONFIG)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS:
        module.register(subparsers)
    _without_literal_marks(parser)
    return parser


def _without_literal_marks(parser: argparse.ArgumentParser) -> None:
    """Descriptions are the modules' docstrings: their ``literal`` marks are no help text."""
    if parser.description:
        parser.description = parser.description.replace("``", "")
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _without_literal_marks(child)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (``gpsfleet decode ... | head``): end quietly, like other tools.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 141


if __name__ == "__main__":
    sys.exit(main())
