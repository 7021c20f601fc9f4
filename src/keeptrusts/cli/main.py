"""``kt``: the command line. Each command group lives in its own module."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from keeptrusts import __version__
from keeptrusts.cli import auth, db, events, gateway, keys, lint
from keeptrusts.cli import doctor as doctor_cli
from keeptrusts.cli import migrate as migrate_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kt", description="Keeptrusts governance gateway")
    parser.add_argument("--version", action="version", version=f"kt {__version__}")
    groups = parser.add_subparsers(dest="group", required=True, metavar="COMMAND")
    gateway.add_commands(groups)
    lint.add_commands(groups)
    keys.add_commands(groups)
    events.add_commands(groups)
    auth.add_commands(groups)
    db.add_commands(groups)
    migrate_cli.add_commands(groups)
    doctor_cli.add_commands(groups)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
