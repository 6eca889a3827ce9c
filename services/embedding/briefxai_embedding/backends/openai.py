"""Embeddings from any OpenAI-compatible ``/embeddings`` API (OpenAI, Ollama, vLLM, llama.cpp server).

Texts go out in batches of ``batch_size``, at most ``max_concurrent_requests`` at a time. Each request
goes through the endpoint's circuit breaker (``circuit_breakers.embedding_remote``, breaker
``embedding_remote``, probed with ``GET /models`` while not closed) and is retried by the
``retry_policies.embedding_remote`` policy (:mod:`briefxai_common.resilience`: unreachable, timed out,
408/429/5xx or a malformed answer; ``Retry-After`` honoured; within a retry budget); the SDK's own
retries are off. Vectors come back scaled to unit length whatever the API does. The vector length is
``dimensions`` when configured, else learnt from a probe at ``load`` (or from the first answer when the
API was down then).

Failures map to domain errors:
- unreachable, timed out, 408/429/5xx, a malformed answer, or the breaker open -> ``Unavailable``
  (retry later);
- 400/413/422 (the API rejected the input) -> ``InvalidArgument`` on ``texts``;
- other 4xx such as 401/403/404 (bad key, unknown model) -> ``FailedPrecondition``.

The API does not say how many tokens each text had, so ``token_counts`` are 0 and ``truncated`` is
False; ``max_tokens`` is 0 (unknown). The API refuses empty strings, so an empty text is sent as " ".

With ``privacy.redact_external`` (the default) each text's PII and secrets are replaced by placeholders
(:func:`briefxai_common.pii.redact`, off the event loop) before it is sent: the endpoint embeds
"reset [EMAIL]", never the address.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import openai

from briefxai_common import service_metrics
from briefxai_common.config import BreakerSettings, ConfigError, RemoteRetryPolicySettings
from briefxai_common.errors import FailedPrecondition, InvalidArgument, ServiceError, Unavailable
from briefxai_common.llm import parse_retry_after
from briefxai_common.logging import get_logger
from briefxai_common.pii import redact
from briefxai_common.resilience import CircuitOpenError, Retrier, RetryPolicy, http_retryable, time_left
from briefxai_embedding.backends.base import EmbedResult, l2_normalize
from briefxai_embedding.settings import OpenAIEmbeddingSettings

log = get_logger(__name__)
NO_KEY = "no-key"  # sent when api_key_env is empty: servers such as Ollama ignore the key
PROBE_TEXT = "dimension probe"
INPUT_REJECTED_STATUS = frozenset({400, 413, 422})
SERVICE = "embedding"
DEPENDENCY = "embedding_remote"  # the breaker's and the retries' name


class MalformedAnswer(Exception):
    """The API answered 2xx with a body that holds no usable vectors."""


def retryable(exc: BaseException) -> bool:
    """Faults of the endpoint worth another try, and what its breaker counts: unreachable, timed out,
    408/429/5xx, a malformed answer."""
    if isinstance(exc, openai.APIStatusError):
        return http_retryable(exc.status_code)
    return isinstance(exc, openai.APIConnectionError | MalformedAnswer)


def retry_after(exc: BaseException) -> float | None:
    if isinstance(exc, openai.APIStatusError):
        return parse_retry_after(exc.response.headers.get("retry-after"))
    return None


def resolve_api_key(settings: OpenAIEmbeddingSettings) -> str:
    """The key from the environment variable named by ``api_key_env``; ConfigError when it is unset."""
    if not settings.api_key_env:
        return NO_KEY
    key = os.environ.get(settings.api_key_env, "")
    if not key:
        raise ConfigError(
            f"embedding.openai.api_key_env: environment variable {settings.api_key_env} is not set "
            "(set it to the API key, or set api_key_env to '' for a server that needs no key)"
        )
    return key


class OpenAIBackend:
    """Vectors from an OpenAI-compatible embeddings endpoint."""

    backend = "openai"
    normalized = True
    max_tokens = 0
    tokenizer_file = None  # the remote model's tokenizer does not run here

    def __init__(
        self,
        settings: OpenAIEmbeddingSettings,
        api_key: str,
        *,
        retry_policy: RetryPolicy | None = None,
        breaker: BreakerSettings | None = None,
        redact_external: bool = True,
    ) -> None:
        """``retry_policy`` None: the default ``embedding_remote`` policy; ``breaker`` None: the default
        breaker settings; ``redact_external``: redact texts before sending them."""
        self.settings = settings
        self.redact_external = redact_external
        self.model = settings.model
        self.dim = settings.dimensions or 0
        self._api_key = api_key
        self._client: openai.AsyncOpenAI | None = None
        self._semaphore = asyncio.Semaphore(settings.max_concurrent_requests)
        breaker = breaker or BreakerSettings.model_validate({})
        self.breaker = breaker.breaker(DEPENDENCY, is_failure=retryable, probe=self._probe)
        self.retrier = Retrier(
            SERVICE,
            DEPENDENCY,
            retry_policy or RemoteRetryPolicySettings.model_validate({}).policy(),
            is_retryable=retryable,
            retry_after=retry_after,
        )
        service_metrics.watch_breaker(SERVICE, self.breaker)

    async def _probe(self) -> bool:
        """Whether ``GET /models`` is answered with anything but 408, 429 or 5xx (the breaker's probe)."""
        client = self._client
        if client is None:
            return False
        try:
            await client.models.list(timeout=self.settings.timeout_seconds)
        except openai.APIStatusError as error:
            return not http_retryable(error.status_code)
        except openai.APIConnectionError:
            return False
        return True

    async def load(self) -> None:
        if self._client is None:
            self._client = openai.AsyncOpenAI(
                base_url=self.settings.base_url,
                api_key=self._api_key,
                timeout=self.settings.timeout_seconds,
                max_retries=0,  # the retries are ours (retry_policies.embedding_remote)
            )
        if self.dim:
            return
        try:
            await self.embed([PROBE_TEXT])
        except ServiceError as error:
            # The service still starts: the dependency may come up later; calls answer UNAVAILABLE meanwhile.
            log.warning("embedding_api_probe_failed", base_url=self.settings.base_url, error=str(error))
        else:
            log.info("embedding_api_ready", base_url=self.settings.base_url, model=self.model, dim=self.dim)

    async def embed(self, texts: Sequence[str]) -> EmbedResult:
        if self._client is None:
            raise FailedPrecondition("the embedding API client is not started")
        if self.redact_external and texts:
            texts = await asyncio.to_thread(redact_all, texts)
        texts = [text if text else " " for text in texts]
        if not texts:
            return EmbedResult(np.zeros((0, self.dim), dtype=np.float32), [], [])
        size = self.settings.batch_size
        batches = [texts[start : start + size] for start in range(0, len(texts), size)]
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(self._embed_batch(self._client, batch)) for batch in batches]
        except ExceptionGroup as failures:
            raise _first_leaf(failures) from None
        vectors = np.concatenate([task.result() for task in tasks], axis=0)
        return EmbedResult(vectors=vectors, token_counts=[0] * len(texts), truncated=[False] * len(texts))

    async def _embed_batch(self, client: openai.AsyncOpenAI, texts: list[str]) -> npt.NDArray[np.float32]:
        extra: dict[str, Any] = {}
        if self.settings.dimensions is not None:
            extra["dimensions"] = self.settings.dimensions

        async def attempt() -> npt.NDArray[np.float32]:
            async with self.breaker.guarded(), self._semaphore:
                left = time_left()
                # The raw body, parsed here: the SDK's typed parse builds a model object per number
                # (~100k per call of 256 texts), which cost more CPU than the rest of the service.
                raw = await client.embeddings.with_raw_response.create(
                    model=self.model,
                    input=texts,
                    encoding_format=self.settings.encoding_format,
                    timeout=self.settings.timeout_seconds
                    if left is None
                    else min(left, self.settings.timeout_seconds),
                    **extra,
                )
                try:
                    response = json.loads(raw.content)
                except ValueError as error:
                    raise MalformedAnswer(f"unreadable answer ({error})") from error
                return self._vectors(response, len(texts))

        try:
            return await self.retrier.call(attempt)
        except openai.APIStatusError as error:
            raise self._status_error(error) from error
        except openai.APIConnectionError as error:
            raise Unavailable(
                f"embedding API {self.settings.base_url} unreachable: {error}",
                reason="UPSTREAM_UNREACHABLE",
            ) from error
        except CircuitOpenError as error:
            raise Unavailable(
                f"embedding API {self.settings.base_url}: {error}",
                reason="CIRCUIT_OPEN",
                retry_after_seconds=error.retry_after or None,
            ) from error
        except MalformedAnswer as error:
            raise self._malformed(str(error)) from error
        except (openai.OpenAIError, TypeError) as error:
            raise self._malformed(f"unreadable answer ({error})") from error

    def _vectors(self, response: Any, expected: int) -> npt.NDArray[np.float32]:
        """The vectors of a parsed ``/embeddings`` JSON body, in input order."""
        try:
            items = sorted(response["data"], key=lambda item: int(item["index"]))
        except (KeyError, TypeError, ValueError) as error:
            raise MalformedAnswer(f"no list of indexed vectors ({error!r})") from error
        if len(items) != expected:
            raise MalformedAnswer(f"{len(items)} vectors for {expected} texts")
        try:
            matrix = np.stack([_decode(item["embedding"]) for item in items])
        except (KeyError, TypeError, ValueError) as error:
            raise MalformedAnswer(f"vectors of unequal length or not numbers ({error})") from error
        if matrix.ndim != 2 or matrix.shape[1] == 0:
            raise MalformedAnswer(f"vectors of shape {matrix.shape}")
        if not np.isfinite(matrix).all() or not np.linalg.norm(matrix, axis=1).all():
            raise MalformedAnswer("vectors with NaN, infinity or zero length")
        dim = int(matrix.shape[1])
        if not self.dim:
            self.dim = dim
        elif dim != self.dim:
            raise MalformedAnswer(f"{dim}-dim vectors where {self.dim} were expected")
        return l2_normalize(matrix)

    def _malformed(self, what: str) -> Unavailable:
        return Unavailable(
            f"embedding API {self.settings.base_url} gave a malformed answer: {what}",
            reason="UPSTREAM_MALFORMED",
        )

    def _status_error(self, error: openai.APIStatusError) -> ServiceError:
        status = error.status_code
        detail = f"embedding API {self.settings.base_url} answered HTTP {status}: {error.message}"
        if http_retryable(status):
            return Unavailable(detail, reason="UPSTREAM_ERROR", metadata={"http_status": str(status)})
        if status in INPUT_REJECTED_STATUS:
            return InvalidArgument("texts", detail)
        return FailedPrecondition(detail)

    async def close(self) -> None:
        await self.breaker.close()
        client, self._client = self._client, None
        if client is not None:
            await client.close()


def redact_all(texts: Sequence[str]) -> list[str]:
    return [redact(text) for text in texts]


def _decode(embedding: Any) -> npt.NDArray[np.float64]:
    """A vector given as a list of numbers or as base64 little-endian float32."""
    if isinstance(embedding, str):
        raw = base64.b64decode(embedding, validate=True)
        if len(raw) % 4:
            raise ValueError(f"base64 vector of {len(raw)} bytes is not whole float32s")
        return np.frombuffer(raw, dtype="<f4").astype(np.float64)
    array = np.asarray(embedding, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"vector of shape {array.shape}")
    return array


def _first_leaf(group: BaseExceptionGroup[Any]) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first
