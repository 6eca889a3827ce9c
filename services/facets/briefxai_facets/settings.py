"""Settings of the facets service: YAML section ``facets``, env prefix ``BRIEFXAI_FACETS_``.

Nested keys use ``__`` in env names, e.g. ``BRIEFXAI_FACETS_OPENAI__BASE_URL=http://localhost:11434/v1``;
lists are JSON, e.g. ``BRIEFXAI_FACETS_PROVIDERS='["openai","heuristic"]'``.
"""

from __future__ import annotations

from typing import ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import SettingsConfigDict

from briefxai_common.config import BreakerSettings, LLMRetryPolicySettings, ServiceSettings
from briefxai_common.llm import LLMEndpointSettings

from .definitions import BUILTIN_NAMES, FacetDefinition, FacetType
from .language import DEFAULT_LANGUAGES, languages_from_codes


class OpenAIProviderSettings(LLMEndpointSettings):
    """An OpenAI-compatible chat API (OpenAI, Azure-compatible gateways, Ollama, vLLM, llama.cpp server):
    the shared endpoint settings (:class:`~briefxai_common.llm.LLMEndpointSettings`) and the facets' own."""

    max_chars: int = Field(
        default=12_000, ge=200, description="Conversation text sent per request is cut to this."
    )
    cost_per_1k_input_tokens: float = Field(
        default=0.0,
        ge=0,
        description="Price of 1000 prompt tokens, for briefxai_llm_estimated_cost_total (0: not configured).",
    )
    cost_per_1k_output_tokens: float = Field(
        default=0.0,
        ge=0,
        description="Price of 1000 completion tokens, for briefxai_llm_estimated_cost_total (0: not configured).",
    )


class HeuristicSettings(BaseModel):
    """The offline provider: lexicons, lingua, VADER, phonenumbers."""

    model_config = ConfigDict(extra="forbid")

    languages: list[str] = Field(
        default_factory=lambda: list(DEFAULT_LANGUAGES),
        description="ISO 639-1 codes the language detector chooses among.",
    )
    language_high_accuracy: bool = Field(
        default=False, description="lingua high-accuracy mode (~6 s start, more RAM)."
    )
    phone_region: str = Field(
        default="US", min_length=2, max_length=2, description="Region for national phone numbers."
    )
    summary_max_chars: int = Field(default=200, ge=40, le=2000, description="Longest request summary.")
    batch_size: int = Field(
        default=200, ge=1, description="Conversations per unit of work handed to a worker."
    )
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="1: one worker thread; more: that many worker processes (one per core).",
    )

    @model_validator(mode="after")
    def _check_languages(self) -> Self:
        languages_from_codes(self.languages)
        if len(set(self.languages)) < 2:
            raise ValueError("languages needs at least two distinct codes")
        return self


class CustomFacetSettings(BaseModel):
    """A facet defined in config; answered by an LLM provider (the heuristic cannot)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Unique name, [a-z][a-z0-9_]*, not a built-in facet's.")
    question: str = Field(min_length=1, description="What the LLM is asked about each conversation.")
    type: Literal["text", "number", "enum"]
    min: float | None = Field(default=None, description="Lower bound, number facets only (required there).")
    max: float | None = Field(default=None, description="Upper bound, number facets only (required there).")
    choices: list[str] = Field(default_factory=list, description="Allowed answers, enum facets only.")

    def to_definition(self) -> FacetDefinition:
        return FacetDefinition(
            name=self.name,
            question=self.question,
            type=FacetType(self.type),
            min=self.min if self.min is not None else 0.0,
            max=self.max if self.max is not None else 0.0,
            choices=tuple(self.choices),
        )

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.name in BUILTIN_NAMES:
            raise ValueError(f"custom facet name {self.name!r} is a built-in facet's name")
        if self.type == "number" and (self.min is None or self.max is None):
            raise ValueError(f"custom facet {self.name!r}: number facets need min and max")
        if self.type != "number" and (self.min is not None or self.max is not None):
            raise ValueError(f"custom facet {self.name!r}: min/max are only for number facets")
        self.to_definition()  # raises ValueError naming what is wrong with the definition
        return self


class FacetsRetryPolicies(BaseModel):
    """``retry_policies.llm_provider``: every LLM provider's requests (each provider's ``max_attempts``,
    ``backoff_initial_seconds`` and ``backoff_max_seconds`` override it)."""

    model_config = ConfigDict(extra="forbid")

    llm_provider: LLMRetryPolicySettings = Field(
        default_factory=lambda: LLMRetryPolicySettings.model_validate({})
    )


class FacetsBreakers(BaseModel):
    """``circuit_breakers.llm_provider``: the settings of each LLM provider's breaker (one per provider)."""

    model_config = ConfigDict(extra="forbid")

    llm_provider: BreakerSettings = Field(default_factory=lambda: BreakerSettings.model_validate({}))


class FacetsPrivacySettings(BaseModel):
    """``privacy``: what leaves the service."""

    model_config = ConfigDict(extra="forbid")

    redact_external: bool = Field(
        default=True,
        description="Replace PII and secrets in conversation text by placeholders ([EMAIL], [SECRET]...) "
        "before it is sent to an external LLM provider.",
    )


class FacetsSettings(ServiceSettings):
    section: ClassVar[str] = "facets"
    model_config = SettingsConfigDict(
        env_prefix="BRIEFXAI_FACETS_", env_nested_delimiter="__", extra="forbid"
    )

    grpc_port: int = Field(default=50053, ge=0, le=65535)
    http_port: int = Field(default=9093, ge=0, le=65535)
    providers: list[str] = Field(
        default_factory=lambda: ["heuristic"],
        description="Failover order. 'heuristic', 'openai' (the `openai` block) or a key of `llms`.",
    )
    openai: OpenAIProviderSettings = Field(default_factory=lambda: OpenAIProviderSettings())
    llms: dict[str, OpenAIProviderSettings] = Field(
        default_factory=dict, description="More OpenAI-compatible providers, by the name used in `providers`."
    )
    heuristic: HeuristicSettings = Field(default_factory=lambda: HeuristicSettings())
    retry_policies: FacetsRetryPolicies = Field(
        default_factory=lambda: FacetsRetryPolicies.model_validate({})
    )
    circuit_breakers: FacetsBreakers = Field(default_factory=lambda: FacetsBreakers.model_validate({}))
    custom_facets: list[CustomFacetSettings] = Field(default_factory=list)
    max_conversations_per_request: int = Field(
        default=1000, ge=1, description="Larger requests: INVALID_ARGUMENT."
    )
    max_messages_per_conversation: int = Field(default=1000, ge=1)
    max_chars_per_message: int = Field(default=100_000, ge=1)
    privacy: FacetsPrivacySettings = Field(default_factory=lambda: FacetsPrivacySettings())

    @model_validator(mode="after")
    def _check_providers(self) -> Self:
        if not self.providers:
            raise ValueError("providers must name at least one provider")
        if len(set(self.providers)) != len(self.providers):
            raise ValueError("providers must not repeat a provider")
        for name in self.providers:
            if name not in ("heuristic", "openai") and name not in self.llms:
                raise ValueError(f"unknown provider {name!r}: use 'heuristic', 'openai' or a key of llms")
        names = [c.name for c in self.custom_facets]
        if len(set(names)) != len(names):
            raise ValueError("custom_facets names must be unique")
        return self

    def custom_definitions(self) -> tuple[FacetDefinition, ...]:
        return tuple(c.to_definition() for c in self.custom_facets)

    def llm_settings(self, name: str) -> OpenAIProviderSettings:
        return self.openai if name == "openai" else self.llms[name]
