"""``kt policy lint``: validate a policy config without starting anything."""

from __future__ import annotations

import argparse
import sys

from keeptrusts.cli import policy_test
from keeptrusts.config.load import AnyEnv, load_config


def add_commands(groups: argparse._SubParsersAction) -> None:
    policy = groups.add_parser("policy", help="work with policy configs")
    sub = policy.add_subparsers(dest="command", required=True, metavar="COMMAND")
    lint = sub.add_parser("lint", help="validate a policy config (exit 0 ok, 1 errors, 2 warnings)")
    lint.add_argument(
        "--file", "-f", action="append", required=True, help="config file (repeat to layer)"
    )
    lint.set_defaults(func=run_lint)
    policy_test.add_parser(sub)


def run_lint(args: argparse.Namespace) -> int:
    # Lint checks the file, not this shell: an unset key variable is not the file's fault.
    _, problems = load_config(args.file, env=AnyEnv())
    for p in problems:
        print(p, file=sys.stderr if p.severity == "error" else sys.stdout)
    if any(p.severity == "error" for p in problems):
        print(f"{len(problems)} problem(s); config is invalid", file=sys.stderr)
        return 1
    if problems:
        print(f"{len(problems)} warning(s)")
        return 2
    print(f"ok: {', '.join(args.file)}")
    return 0
