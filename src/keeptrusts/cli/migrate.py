"""``kt migrate litellm``: turn a LiteLLM proxy config into a policy config, with a report.

The output is checked the way ``kt policy lint`` checks a file, and each model name
LiteLLM clients use is resolved against it, so a migration that would route differently
says so. Exit 0 when the output is valid, 1 when the input cannot be read or the output
has errors.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import TextIO

import yaml

from keeptrusts.config.load import AnyEnv, Problem, load_config
from keeptrusts.migrate import convert_litellm, dump_yaml, load_litellm, route_mismatches
from keeptrusts.migrate.litellm import Conversion


def add_commands(groups: argparse._SubParsersAction) -> None:
    migrate = groups.add_parser("migrate", help="convert another gateway's config")
    sub = migrate.add_subparsers(dest="command", required=True, metavar="SOURCE")
    lite = sub.add_parser(
        "litellm",
        help="convert a LiteLLM proxy config.yaml into a policy config",
        description=(
            "Convert LiteLLM's model_list, router_settings, litellm_settings and guardrails "
            "into a policy config. Literal API keys are never copied: targets read them from "
            "environment variables the report names. Everything that could not be carried "
            "over is listed in the report."
        ),
    )
    lite.add_argument("file", help="the LiteLLM config (config.yaml)")
    lite.add_argument(
        "-o", "--output", help="write the policy config here (default: standard output)"
    )
    lite.add_argument("--force", action="store_true", help="overwrite --output if it exists")
    lite.add_argument(
        "--json", action="store_true", help="print {ok, output, routes, report, lint} as JSON"
    )
    lite.set_defaults(func=run_litellm)


def run_litellm(args: argparse.Namespace) -> int:
    src = Path(args.file)
    try:
        doc = load_litellm(src)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        print(f"error: cannot read {src}: {exc}", file=sys.stderr)
        return 1
    conv = convert_litellm(doc, source_name=src.name, base_dir=src.parent)
    text = dump_yaml(conv.config, _header(src.name, conv))
    out = Path(args.output) if args.output else None
    if out is not None:
        if out.exists() and not args.force:
            print(f"error: {out} exists; pass --force to overwrite it", file=sys.stderr)
            return 1
        out.write_text(text, encoding="utf-8")
    problems, mismatches = _check(text, conv.routes)
    errors = [p for p in problems if p.severity == "error"]
    if args.json:
        print(
            json.dumps(
                {
                    "ok": not errors,
                    "output": str(out) if out else None,
                    "config": None if out else conv.config,
                    "routes": conv.routes,
                    "report": conv.report.to_dict(),
                    "lint": [str(p) for p in problems],
                    "route_mismatches": mismatches,
                },
                indent=2,
            )
        )
        return 1 if errors else 0
    if out is None:
        sys.stdout.write(text)
    info = sys.stdout if out is not None else sys.stderr
    if out is not None:
        print(f"wrote {out}", file=info)
    print(conv.report.render(), file=info)
    _print_check(problems, mismatches, info)
    return 1 if errors else 0


def _header(source: str, conv: Conversion) -> str:
    lines = [
        f"Converted from {source} by `kt migrate litellm`.",
        "Check it with `kt policy lint --file <this file>`. Migration report:",
        "",
        *conv.report.render().splitlines(),
    ]
    return "\n".join(lines)


def _check(text: str, routes: dict[str, list[str]]) -> tuple[list[Problem], list[str]]:
    """Lint the output as a file (every key variable counts as set) and compare routes."""
    with tempfile.TemporaryDirectory(prefix="kt-migrate-") as tmp:
        path = Path(tmp) / "policy-config.yaml"
        path.write_text(text, encoding="utf-8")
        config, problems = load_config([path], env=AnyEnv())
        # Problems name the temporary file; name the output instead.
        problems = [Problem(p.severity, "<output>", p.line, p.path, p.message) for p in problems]
    mismatches = [] if config is None else route_mismatches(routes, config)
    return problems, mismatches


def _print_check(problems: list[Problem], mismatches: list[str], out: TextIO) -> None:
    if not problems:
        print("lint: ok", file=out)
    for p in problems:
        print(f"lint: {p}", file=out)
    for m in mismatches:
        print(f"routing: {m}", file=out)
