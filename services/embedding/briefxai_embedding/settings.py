"""Embedding service settings: the ``embedding`` section of the YAML file, ``BRIEFXAI_EMBEDDING_*`` env."""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import SettingsConfigDict

from briefxai_common.config import BreakerSettings, RemoteRetryPolicySettings, ServiceSettings
from briefxai_embedding.onnx_export import DEFAULT_PRECISION, Precision


class OpenAIEmbeddingSettings(BaseModel):
    """Any OpenAI-compatible ``/embeddings`` API (OpenAI, Ollama, vLLM, llama.cpp server, ...)."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(default="https://api.openai.com/v1", description="API root, ending in /v1.")
    model: str = Field(default="text-embedding-3-small", description="Embedding model name the API knows.")
    api_key_env: str = Field(
        default="OPENAI_API_KEY",
        description="Environment variable holding the API key; empty for servers that need no key.",
    )
    timeout_seconds: float = Field(default=30.0, gt=0, description="Per HTTP request, retries excluded.")
    dimensions: int | None = Field(
        default=None,
        ge=1,
        description="Requested vector length (text-embedding-3 models); None = the model's own.",
    )
    batch_size: int = Field(default=256, ge=1, le=2048, description="Texts per API request.")
    max_concurrent_requests: int = Field(
        default=4, ge=1, description="API requests in flight at once per process."
    )
    encoding_format: Literal["float", "base64"] = Field(
        default="float",
        description="Vector encoding asked of the API; 'float' is the one every server speaks.",
    )


class EmbeddingRetryPolicies(BaseModel):
    """``retry_policies.embedding_remote``: requests to the OpenAI-compatible endpoint (backend openai)."""

    model_config = ConfigDict(extra="forbid")

    embedding_remote: RemoteRetryPolicySettings = Field(
        default_factory=lambda: RemoteRetryPolicySettings.model_validate({})
    )


class EmbeddingBreakers(BaseModel):
    """``circuit_breakers.embedding_remote``: the OpenAI-compatible endpoint's breaker (backend openai)."""

    model_config = ConfigDict(extra="forbid")

    embedding_remote: BreakerSettings = Field(default_factory=lambda: BreakerSettings.model_validate({}))


class EmbeddingPrivacySettings(BaseModel):
    """``privacy``: what leaves the service."""

    model_config = ConfigDict(extra="forbid")

    redact_external: bool = Field(
        default=True,
        description="With backend openai: replace PII and secrets in each text by placeholders ([EMAIL], "
        "[SECRET]...) before it is sent to the remote endpoint (the embedded text changes accordingly; "
        "local models embed the text as given).",
    )


class EmbeddingSettings(ServiceSettings):
    section: ClassVar[str] = "embedding"
    model_config = SettingsConfigDict(
        env_prefix="BRIEFXAI_EMBEDDING_", env_nested_delimiter="__", extra="forbid"
    )

    grpc_port: int = Field(default=50052, ge=0, le=65535, description="gRPC port; 0 picks a free one.")
    http_port: int = Field(default=9092, ge=0, le=65535, description="HTTP port for /metrics and /health.")
    backend: Literal["onnx", "torch", "openai"] = Field(
        default="onnx",
        description=(
            "'onnx': bundled all-MiniLM-L6-v2 exported locally to ONNX Runtime (by default int8 with "
            "calibrated static activation scales); "
            "'torch': the same model on torch via sentence-transformers; 'openai': an OpenAI-compatible API."
        ),
    )
    onnx_precision: Precision = Field(
        default=DEFAULT_PRECISION,
        description=(
            "The ONNX model's numbers. 'int8-static': int8 weights, activation scales calibrated once at "
            "export, so a text's vector is the same alone or in any batch (reproducible whatever the "
            "micro-batching); 'int8': dynamic quantization, as fast, but each pass scales activations by "
            "its whole batch, so vectors move a little (cosine down to ~0.97) with their batch mates; "
            "'fp32': no quantization, batch-independent, about 2.3x slower."
        ),
    )
    onnx_parallel_runs: int = Field(
        default=0,
        ge=0,
        description=(
            "ONNX forward passes run at once, each on torch_threads / onnx_parallel_runs threads; "
            "0 = one single-threaded pass per thread (no time lost synchronizing threads inside "
            "each operator, and one pass's tokenizing and pooling overlap the other's model work); "
            "1 = one pass at a time over all threads."
        ),
    )
    onnx_memory_arena: bool = Field(
        default=True,
        description=(
            "Keep ONNX Runtime's CPU memory arena: 2-3% faster on conversation texts; during a call it "
            "holds the buffers of the largest passes in flight (about 100 MiB per 1024 batch_tokens), "
            "and it is shrunk back after each call."
        ),
    )
    onnx_model_dir: Path | None = Field(
        default=None,
        description=(
            "ONNX export directory; None = ~/.cache/briefxai/onnx/all-MiniLM-L6-v2-<onnx_precision>, "
            "built by `make install` (or at the first start) from the packaged weights."
        ),
    )
    batch_size: int = Field(
        default=16,
        ge=1,
        le=4096,
        description=(
            "Texts per forward pass of the local model. 16 is as fast as 64 on CPU and keeps the "
            "activation buffers (and so the resident memory) of long conversation texts small."
        ),
    )
    batch_tokens: int = Field(
        default=256,
        ge=0,
        description=(
            "Padded tokens per forward pass of the ONNX model (texts x the longest): long texts run "
            "in smaller batches, so a pass's activation buffers stay bounded. 256 (with one pass per "
            "core) keeps each pass's buffers in the CPU caches: on 2 cores it used ~10% less CPU per "
            "token than 1024 over both threads, at a lower peak memory; 0 = batch_size alone."
        ),
    )
    torch_threads: int = Field(
        default=0,
        ge=0,
        description="Threads for the local model (torch or ONNX Runtime); 0 = the CPUs this process may use.",
    )
    max_texts_per_request: int = Field(
        default=2048, ge=1, description="Texts per EmbedTexts call or stream chunk."
    )
    max_chars_per_text: int = Field(
        default=20000, ge=1, description="Characters per text; longer texts are rejected."
    )
    max_batch_texts: int = Field(
        default=256,
        ge=1,
        description=(
            "Unique uncached texts per backend call when concurrent requests are merged; "
            "a single larger request is sent alone, whole."
        ),
    )
    batch_wait_ms: float = Field(
        default=2.0,
        ge=0,
        le=1000,
        description=(
            "How long a request may wait in the queue for others to merge with; 0 = never wait. "
            "Requests that queue behind a running batch merge without it."
        ),
    )
    cache_max_mb: int = Field(
        default=64,
        ge=0,
        description=(
            "Memory bound of the LRU cache of vectors by content hash, in MiB (~1.7 KiB per 384-d "
            "vector: 64 MiB holds ~38k); 0 disables it."
        ),
    )
    openai: OpenAIEmbeddingSettings = Field(default_factory=OpenAIEmbeddingSettings)
    fallback: Literal["none", "onnx", "torch"] = Field(
        default="none",
        description=(
            "With backend openai: the local model that embeds a batch while the endpoint is unavailable "
            "(its breaker open or its retries spent), 'none' for no failover. A batch pinned to the "
            "remote model (EmbedTextsRequest.model: an analysis keeps the model of its first batch) is "
            "refused with FAILED_PRECONDITION instead, to be retried later: one analysis never mixes two "
            "embedding spaces."
        ),
    )
    retry_policies: EmbeddingRetryPolicies = Field(
        default_factory=lambda: EmbeddingRetryPolicies.model_validate({})
    )
    circuit_breakers: EmbeddingBreakers = Field(default_factory=lambda: EmbeddingBreakers.model_validate({}))
    privacy: EmbeddingPrivacySettings = Field(default_factory=lambda: EmbeddingPrivacySettings())

    @model_validator(mode="after")
    def _fallback_needs_a_remote_backend(self) -> Self:
        if self.fallback != "none" and self.backend != "openai":
            raise ValueError(f"fallback {self.fallback!r} needs backend 'openai' (got {self.backend!r})")
        return self

    def resolved_torch_threads(self) -> int:
        """``torch_threads``, or the number of CPUs this process may run on when it is 0."""
        if self.torch_threads > 0:
            return self.torch_threads
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # not on Linux
            return max(1, os.cpu_count() or 1)
