"""``kt policy test``: run test cases through the policy chain offline, with no upstream.

A case is a request and the verdict the chain should reach::

    cases:
      - name: SSNs are blocked
        input:
          messages: [{role: user, content: "My SSN is 123-45-6789"}]
          model: gpt-4o            # optional: default, the first model the config serves
          headers: {X-User-ID: u1} # optional: what rbac's trusted headers read
          role: analyst            # optional: the caller's rbac role (see below)
          max_tokens: 512          # optional
          request: {tools: [...]}  # optional: more request-body fields
          upstream_response: "..." # optional: an answer to run the output policies on
        expected:
          verdict: block           # allow | block | redact (| error)
          reason_code: dlp_pattern_matched   # optional
          policy: dlp-filter                 # optional: the policy that decided
          request_contains: ["[EMAIL_ADDRESS_1]"]  # optional: text forwarded upstream
          request_excludes: ["jane@example.com"]   # optional
          response_contains: [...]  # optional: the answer after output policies
          response_excludes: [...]  # optional

Cases come from ``--file`` (YAML or JSON: ``{cases: [...]}``, a list of cases, or one case)
and from the config's own ``testing.suites[].cases``.

Identity: a gateway key (``Authorization: Bearer kt_gk_...``) is not looked up offline.
Set ``input.role`` to the role the key would carry; rbac then sees that caller exactly as
it would see the key's. Without it, rbac applies ``default_role`` or trusted headers as the
gateway does. Exit 0 when every case passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from keeptrusts.audit.event import decide_verdict
from keeptrusts.config.load import AnyEnv, load_config
from keeptrusts.config.model import GatewayConfig
from keeptrusts.context import RequestContext
from keeptrusts.errors import ModelNotFound, PolicyViolation
from keeptrusts.migrate.verify import offline_router
from keeptrusts.policies.base import PolicyEnv
from keeptrusts.policies.chain import Chain
from keeptrusts.policies.text import request_slots, response_slots
from keeptrusts.runtime import NotImplementedPolicy, build_chain

DEFAULT_CONFIG = "policy-config.yaml"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CaseInput(_Model):
    messages: list[dict[str, Any]] = Field(min_length=1)
    headers: dict[str, str] = Field(default_factory=dict)
    model: str | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    role: str | None = None
    user_id: str | None = None
    org_id: str | None = None
    request: dict[str, Any] = Field(default_factory=dict)
    upstream_response: str | dict[str, Any] | None = None
    # Fields of the hosted product's test format; accepted and not used offline.
    proxy_name: Any = None
    team_slugs: Any = None


class Expected(_Model):
    verdict: Literal["allow", "block", "redact", "error"]
    reason_code: str | None = None
    policy: str | None = None
    request_contains: list[str] = Field(default_factory=list)
    request_excludes: list[str] = Field(default_factory=list)
    response_contains: list[str] = Field(default_factory=list)
    response_excludes: list[str] = Field(default_factory=list)


class Case(_Model):
    name: str = Field(min_length=1)
    description: str = ""
    input: CaseInput
    expected: Expected


@dataclass(slots=True)
class Result:
    name: str
    verdict: str
    reason_code: str
    policy: str | None
    passed: bool
    failures: list[str]
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "verdict": self.verdict,
            "reason_code": self.reason_code,
            "policy": self.policy,
            "passed": self.passed,
            "failures": self.failures,
            "details": self.details,
        }


class CaseError(Exception):
    """The tests could not be read; the message says where."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``test`` under ``kt policy``."""
    test = sub.add_parser(
        "test",
        help="run test cases through the policy chain offline (exit 0 all pass, 1 otherwise)",
        description=(__doc__ or "").replace("``kt policy test``: ", "", 1).replace("``", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    test.add_argument(
        "--file", "-f", action="append", default=[], help="test cases file (repeatable)"
    )
    test.add_argument(
        "--policy-config",
        action="append",
        metavar="FILE",
        help=f"config under test; repeat to layer (default: ./{DEFAULT_CONFIG})",
    )
    test.add_argument("--fail-mode", choices=("block", "allow"), default="block")
    test.add_argument("--json", action="store_true", help="print {ok, results} as JSON")
    test.set_defaults(func=run_test)


def run_test(args: argparse.Namespace) -> int:
    paths = args.policy_config or [DEFAULT_CONFIG]
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        listed = ", ".join(missing)
        print(f"error: no policy config at {listed} (pass --policy-config FILE)", file=sys.stderr)
        return 1
    config, problems = load_config(paths, env=AnyEnv())
    if config is None:
        for p in problems:
            print(p, file=sys.stderr)
        return 1
    try:
        cases = [*load_cases(args.file), *inline_cases(config)]
    except CaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not cases:
        print(
            "error: no test cases: pass --file tests.yaml or add testing.suites[].cases to "
            "the policy config",
            file=sys.stderr,
        )
        return 1
    try:
        results = asyncio.run(run_cases(config, cases, fail_mode=args.fail_mode))
    except NotImplementedPolicy as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    ok = all(r.passed for r in results)
    if args.json:
        print(json.dumps({"ok": ok, "results": [r.to_dict() for r in results]}, indent=2))
    else:
        _print_table(results)
    return 0 if ok else 1


# -- reading cases -------------------------------------------------------------------------


def load_cases(files: Sequence[str | Path]) -> list[Case]:
    cases: list[Case] = []
    for f in files:
        try:
            data = yaml.safe_load(Path(f).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise CaseError(f"cannot read {f}: {exc}") from None
        cases += _parse(str(f), data)
    return cases


def inline_cases(config: GatewayConfig) -> list[Case]:
    """``testing.suites[].cases`` of the config itself (names prefixed with the suite's)."""
    testing = config.raw.get("testing") if isinstance(config.raw, dict) else None
    if not isinstance(testing, dict):
        return []
    out: list[Case] = []
    for i, suite in enumerate(testing.get("suites") or []):
        if not isinstance(suite, dict):
            continue
        label = suite.get("name") or f"suite {i + 1}"
        for case in _parse(f"testing.suites[{i}]", {"cases": suite.get("cases") or []}):
            out.append(case.model_copy(update={"name": f"{label}/{case.name}"}))
    return out


def _parse(where: str, data: Any) -> list[Case]:
    if isinstance(data, dict) and "cases" in data:
        items = data["cases"]
    elif isinstance(data, dict) and {"name", "input", "expected"} <= set(data):
        items = [data]
    else:
        items = data
    if not isinstance(items, list):
        raise CaseError(f"{where}: expected a list of cases (or {{cases: [...]}})")
    cases = []
    for i, item in enumerate(items):
        try:
            cases.append(Case.model_validate(item))
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(p) for p in first["loc"])
            name = item.get("name") if isinstance(item, dict) else None
            raise CaseError(
                f"{where}: case {i + 1}{f' ({name})' if name else ''}: {loc}: {first['msg']}"
            ) from None
    return cases


# -- running -------------------------------------------------------------------------------


async def run_cases(
    config: GatewayConfig, cases: Sequence[Case], *, fail_mode: str = "block"
) -> list[Result]:
    """Run every case through a chain built from ``config``; no network is touched."""
    with tempfile.TemporaryDirectory(prefix="kt-policy-test-") as state:
        env = PolicyEnv(state_dir=Path(state))
        chain = build_chain(config, env, fail_mode=fail_mode)
        try:
            router = offline_router(config)
            return [await run_case(chain, router, c) for c in cases]
        finally:
            for policy in reversed(chain.policies):
                await policy.close()


async def run_case(chain: Chain, router: Any, case: Case) -> Result:
    """One case: the gateway's steps for a request (resolve, input chain, output chain)."""
    inp = case.input
    model = inp.model or _default_model(router)
    body: dict[str, Any] = {**copy.deepcopy(inp.request), "model": model}
    body["messages"] = copy.deepcopy(inp.messages)
    if inp.max_tokens is not None:
        body["max_tokens"] = inp.max_tokens
    ctx = RequestContext(
        request_id=f"test_{time.monotonic_ns()}",
        endpoint="chat.completions",
        body=body,
        model=model,
        stream=False,
        headers=dict(inp.headers),
        client_auth=next((v for k, v in inp.headers.items() if k.lower() == "authorization"), None),
    )
    if inp.role is not None:
        ctx.identity.role, ctx.identity.source = inp.role, "test"
    ctx.identity.user_id, ctx.identity.org_id = inp.user_id, inp.org_id
    response = None
    try:
        if router.model_names():  # a config with no targets still runs its chain
            ctx.route = router.resolve(model)
        await chain.run_input(ctx)
        if inp.upstream_response is not None:
            response = _completion(model, inp.upstream_response)
            await chain.run_output(ctx, response)
    except ModelNotFound:
        ctx.status, ctx.error = 404, "model_not_found"
    except PolicyViolation as exc:
        ctx.status = exc.status
    verdict, reason, policy = decide_verdict(ctx)
    forwarded = "\n".join(s.text for s in request_slots(body))
    answer = "\n".join(s.text for s in response_slots(response)) if response else ""
    failures = _compare(case.expected, verdict, reason, policy, forwarded, answer)
    details: dict[str, Any] = {
        "policy_results": [
            {
                "name": r.name,
                "phase": r.phase,
                "verdict": r.verdict,
                "reason_code": r.reason_code,
                "reason": r.reason,
                "findings": r.findings,
                **({"score": r.score} if r.score is not None else {}),
            }
            for r in ctx.policy_results
        ],
        "messages": body["messages"],
    }
    if response is not None:
        details["response"] = response
    return Result(case.name, verdict, reason, policy, not failures, failures, details)


def _default_model(router: Any) -> str:
    """The first target's client-facing name (an alias, else its model), for cases with none."""
    for name in router.model_names():
        first = router.resolve(name).targets[0]
        return (first.aliases or (first.model,))[0] or first.id
    return "test-model"


def _completion(model: str, answer: str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(answer, dict):
        return copy.deepcopy(answer)
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer},
                "finish_reason": "stop",
            }
        ],
    }


def _compare(
    exp: Expected, verdict: str, reason: str, policy: str | None, forwarded: str, answer: str
) -> list[str]:
    out = []
    if verdict != exp.verdict:
        out.append(f"verdict {verdict}, expected {exp.verdict}")
    if exp.reason_code is not None and reason != exp.reason_code:
        out.append(f"reason_code {reason}, expected {exp.reason_code}")
    if exp.policy is not None and policy != exp.policy:
        out.append(f"decided by {policy or 'no policy'}, expected {exp.policy}")
    out += [f"forwarded request lacks {s!r}" for s in exp.request_contains if s not in forwarded]
    out += [f"forwarded request still has {s!r}" for s in exp.request_excludes if s in forwarded]
    out += [f"response lacks {s!r}" for s in exp.response_contains if s not in answer]
    out += [f"response still has {s!r}" for s in exp.response_excludes if s in answer]
    return out


def _print_table(results: Sequence[Result]) -> None:
    width = min(48, max(len(r.name) for r in results))
    for r in results:
        mark = "PASS" if r.passed else "FAIL"
        by = f" ({r.policy})" if r.policy else ""
        print(f"{mark}  {r.name:<{width}}  {r.verdict:<6}  {r.reason_code}{by}")
        for f in r.failures:
            print(f"      - {f}")
    failed = sum(not r.passed for r in results)
    print(f"{len(results) - failed} passed, {failed} failed ({len(results)} cases)")
