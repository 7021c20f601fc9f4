"""The compiled, frozen configuration the running gateway uses.

``config.schema`` validates what users write (two dialects, strict); ``config.compile``
turns it into these objects once at load. Nothing here is mutated after start: a reload
builds a new ``GatewayConfig`` and swaps it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Pack:
    name: str
    version: str
    enabled: bool = True

    def __str__(self) -> str:
        return f"{self.name}@{self.version}"


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float = 10.0
    # Time to first byte of the response (for streams: the first event).
    first_byte: float = 120.0
    total: float = 600.0
    # Streams only: time to the first chunk with content (role-only chunks do not count);
    # None uses first_byte.
    first_token: float | None = None


@dataclass(frozen=True, slots=True)
class Price:
    """What a target costs, in any one currency, per 1,000 tokens."""

    input_per_1k: float
    output_per_1k: float

    @property
    def blended_per_1k(self) -> float:
        # The usual 3:1 input:output blend: chat requests read more than they write.
        return (3 * self.input_per_1k + self.output_per_1k) / 4


@dataclass(frozen=True, slots=True)
class Target:
    id: str
    provider: str
    model: str | None
    base_url: str
    api_key: str | None = field(default=None, repr=False)
    key_env: str | None = None
    unavailable: str | None = None
    aliases: tuple[str, ...] = ()
    weight: float = 1.0
    timeouts: Timeouts = Timeouts()
    price: Price | None = None
    # Concurrency cap with a bounded wait queue; None: no cap (routing defaults apply).
    max_concurrency: int | None = None
    max_queue: int | None = None
    queue_timeout: float | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    api_key_header: str | None = None
    api_key_prefix: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def available(self) -> bool:
        return self.unavailable is None

    def names(self) -> tuple[str, ...]:
        """Every model name a client may send to reach this target."""
        names = [self.id]
        if self.model:
            names.append(self.model)
        names.extend(self.aliases)
        return tuple(dict.fromkeys(names))

    def status(self) -> str:
        return "available" if self.unavailable is None else f"unavailable: {self.unavailable}"


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    pack: Pack
    targets: tuple[Target, ...]
    chain: tuple[str, ...]
    policy: Mapping[str, Mapping[str, Any]]
    routing: Mapping[str, Any]
    sources: tuple[str, ...]
    raw: Mapping[str, Any]
    # The validated ``limits`` section (keeptrusts.limits), None when absent.
    limits: Mapping[str, Any] | None = None
