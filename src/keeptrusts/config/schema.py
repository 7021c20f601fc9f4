"""What users may write in a policy config, as strict pydantic models.

Both the canonical Keeptrusts shape (``provider: openai`` + ``model: gpt-4o``) and the
integration-page dialect (``provider: openai:chat:gpt-4o``, LiteLLM's ``openai/gpt-4o``)
validate here; ``config.compile`` maps both onto one runtime model. Unknown keys are errors.
Each policy validates its own block with the ``Config`` model its class declares.
"""

from __future__ import annotations

from typing import Any

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
    description: str = ""


class ProvidersModel(Strict):
    targets: list[TargetModel] = Field(default_factory=list)
    # Routing shapes from the docs; the router validates their contents.
    strategy: str | None = None
    routing: dict[str, Any] | None = None
    fallback: dict[str, Any] | None = None
    circuit_breaker: dict[str, Any] | None = None
    model_groups: list[dict[str, Any]] | None = None


class ChainModel(Strict):
    chain: list[str]


class ConfigModel(Strict):
    pack: PackModel
    policies: ChainModel
    policy: dict[str, dict[str, Any]] = Field(default_factory=dict)
    providers: ProvidersModel = ProvidersModel()
    provider_fallback: dict[str, Any] | None = None
    provider_routing: dict[str, Any] | None = None
    agents: Any = None
    testing: Any = None
