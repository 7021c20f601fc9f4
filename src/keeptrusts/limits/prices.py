"""What a request costs: USD per 1K tokens by model name, in integer nano-dollars.

Budgets are counted in nano-USD (1e-9 USD) so both backends add integers: Redis' Lua
numbers are doubles, exact for integers up to 2**53 nano-USD (about 9 million USD).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("keeptrusts.limits")

NANO = 1_000_000_000


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """USD per 1,000 tokens."""

    input: float
    output: float

    def cost_nano(self, prompt_tokens: int, completion_tokens: int) -> int:
        usd = (prompt_tokens * self.input + completion_tokens * self.output) / 1000.0
        return round(usd * NANO)


# List prices (USD per 1K tokens) of the seed config's models, as published by their providers.
DEFAULT_PRICES: dict[str, ModelPrice] = {
    "gpt-4o": ModelPrice(0.0025, 0.01),
    "claude-3-5-sonnet-20241022": ModelPrice(0.003, 0.015),
    "llama-3.3-70b-versatile": ModelPrice(0.00059, 0.00079),
    "mistral-large-latest": ModelPrice(0.002, 0.006),
}


class PriceBook:
    """Looks prices up by model name: ``limits.prices``, then a target's own ``price``,
    then the defaults. An unknown model costs 0 (its budget does not count) and is logged
    once."""

    def __init__(self, configured: Mapping[str, Any] | None = None) -> None:
        self.configured: dict[str, ModelPrice] = {
            name: ModelPrice(float(p["input"]), float(p["output"]))
            for name, p in (configured or {}).items()
        }
        self._warned: set[str] = set()

    def for_names(self, names: Iterable[str | None], target: Any = None) -> ModelPrice | None:
        """The price for the first of ``names`` with one (a target's ``price`` comes after
        the configured prices and before the defaults)."""
        names = [n for n in names if n]
        for n in names:
            if n in self.configured:
                return self.configured[n]
        price = getattr(target, "price", None)
        if price is not None:
            return ModelPrice(price.input_per_1k, price.output_per_1k)
        for n in names:
            if n in DEFAULT_PRICES:
                return DEFAULT_PRICES[n]
        return None

    def for_route(self, model: str, route: Any) -> ModelPrice | None:
        """The price to reserve for a request to ``model``: the dearest target it may reach."""
        if model in self.configured:
            return self.configured[model]
        best: ModelPrice | None = None
        for t in getattr(route, "targets", ()) or ():
            p = self.for_names((t.model, t.id), t)
            if p is not None and (best is None or p.input + p.output > best.input + best.output):
                best = p
        if best is None:
            best = DEFAULT_PRICES.get(model)
        if best is None:
            self.warn_unknown(model)
        return best

    def for_target(self, model: str, target: Any) -> ModelPrice | None:
        """The price of the target that served the request."""
        if target is None:
            return self.for_names((model,))
        return self.for_names((target.model, target.id, model), target)

    def warn_unknown(self, model: str) -> None:
        if model in self._warned or len(self._warned) > 1000:
            return
        self._warned.add(model)
        log.warning(
            "limits: no price for model %r; its requests count 0 toward budgets "
            "(set limits.prices.%s: {input: ..., output: ...} in USD per 1K tokens)",
            model,
            model,
        )
