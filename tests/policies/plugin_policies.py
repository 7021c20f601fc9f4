"""Policies used only by tests, loaded through KEEPTRUSTS_POLICY_MODULES like a user plugin."""

from __future__ import annotations

import asyncio

from keeptrusts.policies.base import ALLOW, Policy, PolicyConfig, Verdict
from keeptrusts.policies.registry import register


class FaultyConfig(PolicyConfig):
    mode: str = "raise"  # raise | hang


@register("test-faulty")
class Faulty(Policy):
    """Fails on every request, to exercise --fail-mode."""

    Config = FaultyConfig
    phases = frozenset({"input"})
    timeout_s = 0.3

    async def on_request(self, ctx) -> Verdict:  # type: ignore[no-untyped-def]
        if self.config.mode == "hang":
            await asyncio.sleep(5)
            return ALLOW
        raise RuntimeError("boom")


@register("test-block-all")
class BlockAll(Policy):
    phases = frozenset({"input"})

    async def on_request(self, ctx) -> Verdict:  # type: ignore[no-untyped-def]
        return Verdict.block("blocked by test policy", reason_code="test_block")
