"""What users may write in a policy config, as strict pydantic models.

Both the canonical Keeptrusts shape (``provider: openai`` + ``model: gpt-4o``) and the
integration-page dialect (``provider: openai:chat:gpt-4o``, LiteLLM's ``openai/gpt-4o``)
validate here; ``config.compile`` maps both onto one runtime model. Unknown keys are errors.
Each policy validates its own block with the ``Config`` model its class declares.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class PackModel(Strict):
    name: str = Field(min_length=1, max_length=200)
    version: str
    enabled: bool
    id: str | None = Field(default=None, min_length=1, max_length=200)
    author: str = Field(default="", max_length=200)
    description: str = Field(default="", max_length=2000)

    @field_validator("version", mode="before")
    @classmethod
    def _version_as_text(cls, v: Any) -> Any:
        # YAML reads `version: 1.0` as a float; the docs' examples use it as text.
        return str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v


class SecretRef(Strict):
    env: str | None = Field(default=None, min_length=1)
    store: str | None = Field(default=None, min_length=1)


class TimeoutsModel(Strict):
    connect: float = Field(default=10.0, gt=0)
    first_byte: float = Field(default=120.0, gt=0)
    total: float = Field(default=600.0, gt=0)
    first_token: float | None = Field(default=None, gt=0)


class PriceModel(Strict):
    input_per_1k: float = Field(ge=0)
    output_per_1k: float = Field(ge=0)


class TargetModel(Strict):
    id: str = Field(min_length=1)
    provider: str = Field(min_length=1)
    model: str | None = Field(default=None, min_length=1)
    base_url: str | None = Field(default=None, pattern=r"^https?://")
    secret_key_ref: SecretRef | None = None
    api_key: str | None = None
    api_key_header: str | None = None
    api_key_prefix: str | None = None
    provider_type: str | None = None
    format: str | None = None
    aliases: list[str] = Field(default_factory=list)
    weight: float = Field(default=1.0, ge=0)
    headers: dict[str, str] = Field(default_factory=dict)
    timeouts: TimeoutsModel = TimeoutsModel()
    price: PriceModel | None = None
    max_concurrency: int | None = Field(default=None, ge=1)
    max_queue: int | None = Field(default=None, ge=0)
    queue_timeout: float | None = Field(default=None, gt=0)
    description: str = ""


# Routing: every shape the docs use is accepted here; keeptrusts.routing.settings maps them
# onto one internal model and explains conflicts. Defaults live there, so None means unset.
RetryTrigger = str | int
Duration = float | str


class BackoffModel(Strict):
    initial_ms: float | None = Field(default=None, ge=0)
    max_ms: float | None = Field(default=None, ge=0)
    multiplier: float | None = Field(default=None, ge=1)
    jitter: Literal["full", "equal", "none"] | None = None


class RoutingModel(Strict):
    """``providers.routing``: strategy, retries and limits for every group."""

    strategy: str | None = None
    max_retries: int | None = Field(default=None, ge=0, le=20)
    retry_on: list[RetryTrigger] | None = None
    backoff: BackoffModel | None = None
    max_retry_wait: float | None = Field(default=None, ge=0)
    window_seconds: float | None = Field(default=None, gt=0)
    latency_window: Duration | None = None
    min_sample_count: int | None = Field(default=None, ge=1)
    max_concurrency: int | None = Field(default=None, ge=1)
    max_queue: int | None = Field(default=None, ge=0)
    queue_timeout: float | None = Field(default=None, gt=0)


class FallbackModel(Strict):
    """``providers.fallback`` (/docs/cli/multi-provider-fallback)."""

    enabled: bool | None = None
    strategy: str | None = None
    max_retries: int | None = Field(default=None, ge=0, le=20)
    retry_on: list[RetryTrigger] | None = None
    latency_window: Duration | None = None
    min_sample_count: int | None = Field(default=None, ge=1)
    max_latency_ms: float | None = Field(default=None, gt=0)
    max_cost_per_1k: float | None = Field(default=None, ge=0)


class CircuitBreakerModel(Strict):
    enabled: bool | None = None
    failure_threshold: int | None = Field(default=None, ge=1)
    cooldown_seconds: float | None = Field(default=None, gt=0)
    recovery_timeout: float | None = Field(default=None, gt=0)
    half_open_probes: int | None = Field(default=None, ge=1)


class GroupMemberModel(Strict):
    target: str | None = Field(default=None, min_length=1)
    provider: str | None = Field(default=None, min_length=1)
    model: str | None = Field(default=None, min_length=1)
    weight: float | None = Field(default=None, ge=0)


class ModelGroupModel(Strict):
    name: str = Field(min_length=1)
    models: list[GroupMemberModel | str] = Field(min_length=1)
    strategy: str | None = None


class ProviderRoutingModel(Strict):
    """Top-level ``provider_routing`` (/docs/advanced/provider-routing)."""

    strategy: str | None = None
    min_sample_count: int | None = Field(default=None, ge=1)
    window_seconds: float | None = Field(default=None, gt=0)
    latency_window: Duration | None = None


class ProviderFallbackModel(Strict):
    """Top-level ``provider_fallback`` (/docs/advanced/fallback-configuration)."""

    enabled: bool | None = None
    triggers: list[RetryTrigger] | None = None
    max_fallback_attempts: int | None = Field(default=None, ge=0, le=20)
    content_policy: str | None = None
    context_window: str | None = None


class ProvidersModel(Strict):
    targets: list[TargetModel] = Field(default_factory=list)
    strategy: str | None = None
    routing: RoutingModel | None = None
    fallback: FallbackModel | None = None
    circuit_breaker: CircuitBreakerModel | None = None
    model_groups: list[ModelGroupModel] | None = None


class ChainModel(Strict):
    chain: list[str]


# Rate limits and budgets (docs/limits.md); compiled by keeptrusts.limits.
class LimitBudgetModel(Strict):
    usd: float = Field(ge=0)
    period: Literal["day", "month"] = "day"


class LimitRuleModel(Strict):
    requests_per_minute: int | None = Field(default=None, ge=0)
    tokens_per_minute: int | None = Field(default=None, ge=0)
    budget: LimitBudgetModel | None = None
    # Completion tokens reserved when a request sets no max_tokens.
    default_max_tokens: int | None = Field(default=None, ge=0)
    # shared: one counter for everything the entry matches; per_caller: one per caller.
    scope: Literal["shared", "per_caller"] | None = None


class LimitPriceModel(Strict):
    input: float = Field(ge=0)  # USD per 1K prompt tokens
    output: float = Field(ge=0)  # USD per 1K completion tokens


class LimitsModel(Strict):
    redis_url: str | None = Field(default=None, min_length=1)
    on_backend_error: Literal["open", "closed"] = "open"
    key_prefix: str = Field(default="keeptrusts:limits:", min_length=1, max_length=200)
    redis_timeout: float = Field(default=0.5, gt=0, le=30)
    default_max_tokens: int = Field(default=1024, ge=0)
    token_estimator: Literal["chars", "tiktoken"] = "chars"
    prices: dict[str, LimitPriceModel] = Field(default_factory=dict)
    keys: dict[str, LimitRuleModel] = Field(default_factory=dict)
    roles: dict[str, LimitRuleModel] = Field(default_factory=dict)
    models: dict[str, LimitRuleModel] = Field(default_factory=dict)
    default: LimitRuleModel | None = None


class ConfigModel(Strict):
    pack: PackModel
    policies: ChainModel
    policy: dict[str, dict[str, Any]] = Field(default_factory=dict)
    providers: ProvidersModel = ProvidersModel()
    provider_fallback: ProviderFallbackModel | None = None
    provider_routing: ProviderRoutingModel | None = None
    limits: LimitsModel | None = None
    agents: Any = None
    testing: Any = None
