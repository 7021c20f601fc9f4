"""The chain: runs policies in ``policies.chain`` order and owns everything around them.

Like Envoy's filter manager, policies never iterate. The chain times each hook, bounds it
with the policy's timeout, applies ``--fail-mode`` when a policy raises or times out,
short-circuits on the first block and records every policy's result, ``skipped`` included,
so a policy that did not run is never logged as passed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from keeptrusts.context import PolicyResult, RequestContext
from keeptrusts.deadlines import Deadlines
from keeptrusts.errors import PolicyViolation
from keeptrusts.policies.base import Action, Policy, StreamFilter, Verdict

log = logging.getLogger("keeptrusts.chain")

FAIL_BLOCK = "block"
FAIL_ALLOW = "allow"


class Chain:
    def __init__(self, policies: Sequence[Policy], *, fail_mode: str = FAIL_BLOCK) -> None:
        self.policies = tuple(policies)
        self.fail_mode = fail_mode
        self.input = tuple(p for p in self.policies if "input" in p.phases)
        self.output = tuple(p for p in self.policies if "output" in p.phases)
        self._deadlines = Deadlines()

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.policies]

    async def run_input(self, ctx: RequestContext) -> None:
        """Run input hooks; raise ``PolicyViolation`` on a block."""
        if not self.input:
            return
        task = asyncio.current_task(self._deadlines.loop)  # once, not per hook
        for i, policy in enumerate(self.input):
            verdict = await self._run(ctx, policy, "input", policy.on_request(ctx), task)
            if verdict.action is Action.BLOCK:
                self._skip(ctx, self.input[i + 1 :], "input", "chain short-circuited")
                self._skip(ctx, self.output, "output", "not reached")
                raise self._violation(policy, verdict, "input_blocked")

    async def run_output(self, ctx: RequestContext, response: dict[str, Any]) -> None:
        """Run output hooks on a complete response; they may rewrite it in place."""
        if not self.output:
            return
        task = asyncio.current_task(self._deadlines.loop)
        for i, policy in enumerate(self.output):
            hook = policy.on_response(ctx, response)
            verdict = await self._run(ctx, policy, "output", hook, task)
            if verdict.action is Action.BLOCK:
                self._skip(ctx, self.output[i + 1 :], "output", "chain short-circuited")
                raise self._violation(policy, verdict, "output_blocked")

    def stream(self, ctx: RequestContext) -> StreamRedactor | None:
        """Return the per-stream output pipeline, or None when no policy reads streams."""
        if not self.output:
            return None
        return StreamRedactor(self, ctx)

    async def _run(
        self,
        ctx: RequestContext,
        policy: Policy,
        phase: str,
        hook: Awaitable[Verdict],
        task: asyncio.Task[Any] | None,
    ) -> Verdict:
        started = time.perf_counter()
        try:
            # One shared timer for every hook's bound (asyncio.timeout costs ~5 us a hook).
            verdict = await self._deadlines.within(hook, policy.timeout_s, task)
        except Exception as exc:  # a policy bug must not take the gateway down
            return self._failed(ctx, policy, phase, started, exc)
        ms = (time.perf_counter() - started) * 1000.0
        ctx.policy_ms += ms
        ctx.policy_results.append(
            PolicyResult(
                name=policy.name,
                phase=phase,
                verdict=verdict.action.value,
                latency_ms=round(ms, 3),
                reason=verdict.message,
                reason_code=verdict.reason_code,
                findings=dict(verdict.findings),
                score=verdict.score,
                started_at=started,
            )
        )
        return verdict

    def _failed(
        self, ctx: RequestContext, policy: Policy, phase: str, started: float, exc: Exception
    ) -> Verdict:
        ms = (time.perf_counter() - started) * 1000.0
        ctx.policy_ms += ms
        kind = "timed out" if isinstance(exc, TimeoutError) else f"failed ({type(exc).__name__})"
        if not isinstance(exc, TimeoutError):
            log.error("policy %s %s", policy.name, kind, exc_info=exc)
        ctx.policy_results.append(
            PolicyResult(
                name=policy.name,
                phase=phase,
                verdict="error",
                latency_ms=round(ms, 3),
                reason=f"policy {kind}",
                reason_code="policy_error",
                started_at=started,
            )
        )
        if self.fail_mode == FAIL_ALLOW:
            return Verdict(Action.ALLOW)
        return Verdict.block(
            f"Policy {policy.name} {kind}; the gateway runs with --fail-mode block",
            reason_code="policy_error",
        )

    @staticmethod
    def _skip(ctx: RequestContext, policies: Sequence[Policy], phase: str, why: str) -> None:
        for p in policies:
            ctx.policy_results.append(PolicyResult(p.name, phase, "skipped", reason=why))

    @staticmethod
    def _violation(policy: Policy, verdict: Verdict, default_code: str) -> PolicyViolation:
        message = verdict.message or f"Request blocked by policy {policy.name}"
        return PolicyViolation(
            message, policy=policy.name, code=verdict.code or default_code, status=verdict.status
        )


class StreamRedactor:
    """Runs output policies over a stream's text as it accumulates.

    Each text stream (a choice's content, or one tool call's arguments) gets its own filter
    per policy. Text passes through the filters in chain order; a filter may hold back up to
    its ``max_hold`` characters so a match spanning chunks is caught whole, and everything
    held is flushed when that choice finishes.
    """

    def __init__(self, chain: Chain, ctx: RequestContext) -> None:
        self.chain = chain
        self.ctx = ctx
        self._filters: dict[tuple, list[tuple[Policy, StreamFilter]]] = {}
        self._totals: dict[str, PolicyResult] = {}
        self._factories: list[tuple[Policy, Callable[[], StreamFilter | None]]] = [
            (p, lambda p=p: p.stream_filter(ctx)) for p in chain.output
        ]

    def process(self, chunk: dict[str, Any]) -> bool:
        """Rewrite ``chunk`` in place; return True if it changed. Raises on a block."""
        changed = False
        for choice in chunk.get("choices") or ():
            idx = choice.get("index", 0)
            delta = choice.get("delta") or {}
            final = choice.get("finish_reason") is not None
            content = delta.get("content")
            if isinstance(content, str) or (final and (idx, "content") in self._filters):
                out = self._feed((idx, "content"), content or "", final)
                if out != content:
                    delta["content"] = out
                    choice["delta"] = delta
                    changed = True
            for call in delta.get("tool_calls") or ():
                fn = call.get("function") or {}
                args = fn.get("arguments")
                if isinstance(args, str):
                    out = self._feed((idx, "tool", call.get("index", 0)), args, False)
                    if out != args:
                        fn["arguments"] = out
                        changed = True
            if final:
                tail = self._flush_tools(idx)
                if tail:
                    delta.setdefault("tool_calls", []).extend(tail)
                    choice["delta"] = delta
                    changed = True
        return changed

    def finish(self) -> str:
        """Flush held content at the end of a stream with no finish_reason; return it."""
        out = ""
        for key in list(self._filters):
            if key[1] == "content":
                out += self._feed(key, "", True)
        return out

    def _flush_tools(self, idx: int) -> list[dict[str, Any]]:
        tail = []
        for key in [k for k in self._filters if k[0] == idx and k[1] == "tool"]:
            rest = self._feed(key, "", True)
            if rest:
                tail.append({"index": key[2], "function": {"arguments": rest}})
        return tail

    def _feed(self, key: tuple, text: str, final: bool) -> str:
        filters = self._filters.get(key)
        if filters is None:
            filters = [(p, f) for p, make in self._factories if (f := make()) is not None]
            self._filters[key] = filters
        for policy, filt in filters:
            started = time.perf_counter()
            try:
                text, verdict = filt.feed(text, final)
            except Exception as exc:
                verdict = self.chain._failed(self.ctx, policy, "output", started, exc)
                if verdict.action is Action.BLOCK:
                    raise Chain._violation(policy, verdict, "output_blocked") from exc
                continue
            self._account(policy, verdict, (time.perf_counter() - started) * 1000.0)
            if verdict.action is Action.BLOCK:
                raise Chain._violation(policy, verdict, "output_blocked")
        return text

    def _account(self, policy: Policy, verdict: Verdict, ms: float) -> None:
        """Fold per-chunk verdicts into one result per policy for the audit event."""
        self.ctx.policy_ms += ms
        result = self._totals.get(policy.name)
        if result is None:
            result = PolicyResult(policy.name, "output", "allow")
            self._totals[policy.name] = result
            self.ctx.policy_results.append(result)
        result.latency_ms = round(result.latency_ms + ms, 3)
        rank = {"allow": 0, "log": 1, "redact": 2, "block": 3}
        if rank[verdict.action.value] > rank.get(result.verdict, 0):
            result.verdict = verdict.action.value
            result.reason = verdict.message
            result.reason_code = verdict.reason_code
        for k, v in verdict.findings.items():
            result.findings[k] = result.findings.get(k, 0) + v
