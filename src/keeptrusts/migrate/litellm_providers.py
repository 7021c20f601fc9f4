"""LiteLLM's ``provider/model`` prefixes mapped onto this gateway's providers.

LiteLLM names the upstream API by a prefix on ``litellm_params.model`` (``groq/llama-3``).
Here a target names a registered provider; the OpenAI-compatible hosted APIs become
``openai-compatible`` targets with their public base URL. The key variable is the one
LiteLLM itself reads for that provider, so an existing environment keeps working.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True, slots=True)
class ProviderMap:
    provider: str  # a name in keeptrusts.providers.registry
    base_url: str | None = None  # None: the provider's default, or api_base
    key_env: str | None = None  # the variable LiteLLM reads for this provider's key
    needs_api_base: bool = False  # no public address: api_base must be given
    # Ollama's native API lives at the root; its OpenAI-compatible API under /v1.
    append_v1: bool = False
    note: str | None = None


_OLLAMA = ProviderMap(
    "ollama",
    "http://localhost:11434/v1",
    append_v1=True,
    note="reached through Ollama's OpenAI-compatible API (/v1), not its native API",
)

PREFIXES: dict[str, ProviderMap] = {
    "openai": ProviderMap("openai", key_env="OPENAI_API_KEY"),
    "anthropic": ProviderMap("anthropic", key_env="ANTHROPIC_API_KEY"),
    "groq": ProviderMap("groq", key_env="GROQ_API_KEY"),
    "mistral": ProviderMap("mistral", key_env="MISTRAL_API_KEY"),
    "ollama": _OLLAMA,
    "ollama_chat": _OLLAMA,
    "hosted_vllm": ProviderMap("vllm", key_env="HOSTED_VLLM_API_KEY", needs_api_base=True),
    "openai_like": ProviderMap(
        "openai-compatible", key_env="OPENAI_LIKE_API_KEY", needs_api_base=True
    ),
    "custom_openai": ProviderMap(
        "openai-compatible", key_env="OPENAI_API_KEY", needs_api_base=True
    ),
    "lm_studio": ProviderMap("lmstudio", "http://localhost:1234/v1", key_env="LM_STUDIO_API_KEY"),
    "together_ai": ProviderMap(
        "openai-compatible", "https://api.together.xyz/v1", key_env="TOGETHERAI_API_KEY"
    ),
    "deepseek": ProviderMap(
        "openai-compatible", "https://api.deepseek.com/v1", key_env="DEEPSEEK_API_KEY"
    ),
    "fireworks_ai": ProviderMap(
        "openai-compatible",
        "https://api.fireworks.ai/inference/v1",
        key_env="FIREWORKS_AI_API_KEY",
    ),
    "openrouter": ProviderMap(
        "openai-compatible", "https://openrouter.ai/api/v1", key_env="OPENROUTER_API_KEY"
    ),
    "xai": ProviderMap("openai-compatible", "https://api.x.ai/v1", key_env="XAI_API_KEY"),
    "perplexity": ProviderMap(
        "openai-compatible", "https://api.perplexity.ai", key_env="PERPLEXITYAI_API_KEY"
    ),
    "deepinfra": ProviderMap(
        "openai-compatible", "https://api.deepinfra.com/v1/openai", key_env="DEEPINFRA_API_KEY"
    ),
    "gemini": ProviderMap(
        "openai-compatible",
        "https://generativelanguage.googleapis.com/v1beta/openai",
        key_env="GEMINI_API_KEY",
        note="reached through Gemini's OpenAI-compatible endpoint",
    ),
}

# Prefixes with no equivalent, and what to tell the user.
UNSUPPORTED: dict[str, str] = {
    "azure": (
        "Azure OpenAI (deployment paths, api-version, api-key header) has no provider in "
        "this gateway"
    ),
    "azure_ai": "Azure AI Foundry has no provider in this gateway",
    "azure_text": "Azure OpenAI text completions have no provider in this gateway",
    "bedrock": "AWS Bedrock (SigV4 signing) has no provider in this gateway",
    "bedrock_converse": "AWS Bedrock (SigV4 signing) has no provider in this gateway",
    "sagemaker": "AWS SageMaker (SigV4 signing) has no provider in this gateway",
    "vertex_ai": "Vertex AI (Google service-account auth) has no provider in this gateway",
    "vertex_ai_beta": "Vertex AI (Google service-account auth) has no provider in this gateway",
    "cohere": "Cohere's native API has no provider in this gateway",
    "cohere_chat": "Cohere's native API has no provider in this gateway",
    "huggingface": "Hugging Face inference has no provider in this gateway",
    "replicate": "Replicate has no provider in this gateway",
    "watsonx": "IBM watsonx has no provider in this gateway",
    "databricks": "Databricks has no provider in this gateway",
    "vllm": "in-process vLLM has no equivalent; serve it over HTTP and use hosted_vllm/",
    "text-completion-openai": "legacy /completions models are not served by this gateway",
}

_LOCAL_HOSTS = {"localhost", "127.0.0.1", "0.0.0.0", "::1"}
GATEWAY_PORT = 41002


def split_model(value: str) -> tuple[str | None, str]:
    """``groq/llama-3.1-8b`` -> (``groq``, ``llama-3.1-8b``); no prefix -> (None, value)."""
    if "/" in value:
        prefix, rest = value.split("/", 1)
        return prefix, rest
    return None, value


def infer_prefix(model: str) -> str | None:
    """LiteLLM guesses a provider for a bare model name; mirror its two common guesses."""
    name = model.lower()
    if name.startswith(("gpt-", "o1", "o3", "o4", "chatgpt-", "ft:gpt")):
        return "openai"
    if name.startswith("claude-"):
        return "anthropic"
    return None


def is_openai_host(url: str) -> bool:
    return (urlsplit(url).hostname or "").lower() == "api.openai.com"


def points_at_gateway(url: str) -> bool:
    """Pattern A: LiteLLM in front of a Keeptrusts gateway on its default port."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return False
    return (parts.hostname or "").lower() in _LOCAL_HOSTS and port == GATEWAY_PORT


def with_v1(url: str) -> str:
    base = url.rstrip("/")
    return base if base.endswith("/v1") else base + "/v1"
