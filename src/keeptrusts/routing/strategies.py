"""How a group orders its targets for one request: the first is tried first, the rest are
the fallback order.

Each strategy is a small class built once per group; ``order`` is O(targets) (a sort of a
handful of items at most) and takes no locks. Randomness comes from the ``random.Random``
the router passes in, so tests can seed it.

* ``ordered``: list order (the default, and what the docs call fallback).
* ``round_robin``: rotate the starting target on every request.
* ``weighted``: pick the first target at random in proportion to its weight; fall back
  by descending weight.
* ``least_busy``: fewest requests in flight (plus queued); ties rotate.
* ``lowest_latency``: lowest mean latency over the rolling window; a target with fewer
  than ``min_samples`` samples in the window goes first, so it gets measured.
* ``cost``: lowest blended price per 1k tokens; targets above ``max_cost_per_1k`` are
  left out, targets without a price go last.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from typing import ClassVar

from keeptrusts.config.model import Target
from keeptrusts.routing.settings import RoutingSettings
from keeptrusts.routing.state import TargetState


class Strategy:
    name: ClassVar[str]

    def __init__(
        self,
        *,
        states: Mapping[str, TargetState],
        weights: Mapping[str, float],
        settings: RoutingSettings,
        rng: random.Random,
        clock: Callable[[], float],
    ) -> None:
        self.states = states
        self.weights = weights
        self.settings = settings
        self.rng = rng
        self.clock = clock
        self.turn = 0

    def order(self, targets: Sequence[Target]) -> list[Target]:
        raise NotImplementedError

    def _rotation(self, n: int) -> int:
        start = self.turn % n
        self.turn += 1
        return start


class Ordered(Strategy):
    name = "ordered"

    def order(self, targets: Sequence[Target]) -> list[Target]:
        return list(targets)


class RoundRobin(Strategy):
    name = "round_robin"

    def order(self, targets: Sequence[Target]) -> list[Target]:
        if len(targets) < 2:
            return list(targets)
        k = self._rotation(len(targets))
        return [*targets[k:], *targets[:k]]


class Weighted(Strategy):
    name = "weighted"

    def weight(self, t: Target) -> float:
        return self.weights.get(t.id, t.weight)

    def order(self, targets: Sequence[Target]) -> list[Target]:
        if len(targets) < 2:
            return list(targets)
        weights = [self.weight(t) for t in targets]
        total = sum(weights)
        if total <= 0:
            return list(targets)
        r = self.rng.random() * total
        pick = len(targets) - 1
        for i, w in enumerate(weights):
            r -= w
            if r < 0:
                pick = i
                break
        rest = sorted(
            (i for i in range(len(targets)) if i != pick), key=lambda i: -weights[i]
        )  # stable: equal weights keep list order
        return [targets[pick], *(targets[i] for i in rest)]


class LeastBusy(Strategy):
    name = "least_busy"

    def order(self, targets: Sequence[Target]) -> list[Target]:
        n = len(targets)
        if n < 2:
            return list(targets)
        start = self._rotation(n)
        load = [self.states[t.id].limiter.load for t in targets]
        idx = sorted(range(n), key=lambda i: (load[i], (i - start) % n))
        return [targets[i] for i in idx]


class LowestLatency(Strategy):
    name = "lowest_latency"

    def order(self, targets: Sequence[Target]) -> list[Target]:
        n = len(targets)
        if n < 2:
            return list(targets)
        now = self.clock()
        start = self._rotation(n)
        need = self.settings.min_samples

        def key(i: int) -> tuple[int, float, int]:
            mean, count = self.states[targets[i].id].stats.mean_latency(now)
            # Unmeasured targets first (rotating among them), then fastest first.
            return (0, 0.0, (i - start) % n) if count < need else (1, mean, i)

        return [targets[i] for i in sorted(range(n), key=key)]


class Cost(Strategy):
    name = "cost"

    def order(self, targets: Sequence[Target]) -> list[Target]:
        cap = self.settings.max_cost_per_1k

        def price(t: Target) -> float:
            return t.price.blended_per_1k if t.price is not None else math.inf

        kept = [t for t in targets if cap is None or t.price is None or price(t) <= cap]
        return sorted(kept, key=price)


STRATEGY_CLASSES: dict[str, type[Strategy]] = {
    cls.name: cls for cls in (Ordered, RoundRobin, Weighted, LeastBusy, LowestLatency, Cost)
}


def make(
    name: str,
    *,
    states: Mapping[str, TargetState],
    weights: Mapping[str, float],
    settings: RoutingSettings,
    rng: random.Random,
    clock: Callable[[], float],
) -> Strategy:
    return STRATEGY_CLASSES[name](
        states=states, weights=weights, settings=settings, rng=rng, clock=clock
    )
