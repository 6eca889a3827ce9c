"""The ``openai`` provider: any OpenAI-compatible chat API answers the facets, one request per conversation.

Each request carries the conversation (cut to ``max_chars``) and every wanted facet's question, and asks
for one JSON object; with ``response_format: json_schema`` the server is held to a schema built from
the facet definitions. The reply is validated against the definitions (type, range, choices, ISO 639-1
code); valid values are kept, and a reply that is not JSON or has invalid values is retried for the
facets still missing (``max_attempts`` tries in all, with jittered exponential backoff; ``Retry-After``
is honoured). HTTP 408, 409, 429, 5xx, timeouts, connection errors and response bodies that are not JSON
(or have no ``choices``) are retried the same way; other 4xx are not. What is still missing after the last
try is a failed value, which the chain hands to the next provider — an invalid value is never returned.
Counts (``turns``, ``user_turns``, ``tokens``) are not asked of the LLM. Request summaries from the LLM
also go through PII redaction.

At most ``concurrency`` requests are in flight at once (per provider); a batch runs concurrently. HTTP
goes through :class:`~briefxai_facets.chat_client.ChatClient` (``aiohttp``, one keep-alive session per
provider), each request limited to ``timeout_seconds``.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
from collections.abc import Sequence
from typing import Any

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from briefxai_common.logging import get_logger
from briefxai_common.pii import redact

from . import metrics
from .chat_client import ChatClient, LLMConnectionError, LLMResponseError, LLMStatusError
from .definitions import COUNT_FACETS, Conversation, FacetDefinition, FacetType, FacetValue, Job
from .language import ISO_639_1
from .settings import OpenAIProviderSettings
from .summary import trim

log = get_logger(__name__)

SYSTEM_PROMPT = (
    "You analyse one conversation between a user and an assistant (an AI model or a support agent) and "
    "answer questions about it, called facets. Reply with one JSON object and nothing else, with exactly "
    "the keys listed. Text answers must not contain names, e-mail addresses, phone numbers, addresses or "
    "any other personal information."
)
MAX_TEXT_ANSWER_CHARS = 2000


class MalformedReply(Exception):
    """The reply was not usable for some facets; ``errors`` says why, per facet name."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{name}: {error}" for name, error in errors.items()))


def render_conversation(conversation: Conversation, max_chars: int) -> str:
    """The transcript as ``ROLE: text`` blocks, cut to ``max_chars`` characters with a marker."""
    blocks = [f"{m.role.upper()}: {m.content}" for m in conversation.messages]
    text = "\n\n".join(blocks)
    if len(text) <= max_chars:
        return text
    return text[:max_chars] + f"\n[... {len(text) - max_chars} more characters cut]"


def _value_schema(facet: FacetDefinition) -> dict[str, Any]:
    schema: dict[str, Any]
    if facet.type is FacetType.NUMBER:
        schema = {"type": "number"}
        if math.isfinite(facet.min):
            schema["minimum"] = facet.min
        if math.isfinite(facet.max):
            schema["maximum"] = facet.max
    elif facet.type is FacetType.ENUM:
        schema = {"type": "string", "enum": list(facet.choices)}
    else:
        schema = {"type": "string"}
    return schema


def facet_schema(facet: FacetDefinition) -> dict[str, Any]:
    """JSON schema of one facet's answer (an object with ``value`` and ``reason`` when it has a reason)."""
    value = _value_schema(facet)
    if facet.with_reason:
        return {
            "type": "object",
            "description": facet.question,
            "properties": {"value": value, "reason": {"type": "string"}},
            "required": ["value", "reason"],
            "additionalProperties": False,
        }
    return {**value, "description": facet.question}


def reply_schema(facets: Sequence[FacetDefinition]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {f.name: facet_schema(f) for f in facets},
        "required": [f.name for f in facets],
        "additionalProperties": False,
    }


def _describe(facet: FacetDefinition) -> str:
    if facet.type is FacetType.NUMBER:
        low = f"{facet.min:g}" if math.isfinite(facet.min) else "-inf"
        high = f"{facet.max:g}" if math.isfinite(facet.max) else "inf"
        kind = f"a number from {low} to {high}"
    elif facet.type is FacetType.ENUM:
        kind = "exactly one of: " + ", ".join(facet.choices)
    else:
        kind = "text"
    if facet.with_reason:
        kind = f'an object {{"value": {kind}, "reason": one short sentence}}'
    return f'- "{facet.name}" ({kind}): {facet.question}'


def build_messages(
    conversation: Conversation, facets: Sequence[FacetDefinition], max_chars: int
) -> list[Any]:
    questions = "\n".join(_describe(f) for f in facets)
    user = (
        f"<conversation>\n{render_conversation(conversation, max_chars)}\n</conversation>\n\n"
        f"Answer these facets about the conversation above:\n{questions}\n\n"
        f"Reply with a JSON object whose keys are exactly: {', '.join(f.name for f in facets)}."
    )
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.S)


def parse_reply(content: str | None) -> dict[str, Any]:
    """The JSON object in a reply (a ```json fence around it is tolerated); raises ValueError."""
    if not content or not content.strip():
        raise ValueError("the reply is empty")
    fenced = FENCE.match(content)
    text = fenced.group(1) if fenced else content
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"the reply is not valid JSON ({exc.msg} at character {exc.pos})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"the reply is JSON {type(data).__name__}, not an object")
    return data


def validate_value(
    facet: FacetDefinition, raw: Any, provider: str, summary_max_chars: int = 200, phone_region: str = "US"
) -> FacetValue:
    """A valid value for ``facet`` from the reply's ``raw`` answer; raises ValueError saying what is wrong."""
    reason = ""
    if facet.with_reason and isinstance(raw, dict):
        if "value" not in raw:
            raise ValueError('missing "value"')
        reason_raw = raw.get("reason", "")
        if not isinstance(reason_raw, str):
            raise ValueError('"reason" must be a string')
        reason = trim(" ".join(reason_raw.split()), 500)
        raw = raw["value"]
    if facet.type is FacetType.NUMBER:
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise ValueError(f"expected a number, got {type(raw).__name__} {raw!r:.60}")
        number = float(raw)
        if not math.isfinite(number) or not facet.min <= number <= facet.max:
            raise ValueError(f"{number:g} is outside [{facet.min:g}, {facet.max:g}]")
        return FacetValue(facet.name, provider, number=number, reason=reason)
    if not isinstance(raw, str):
        raise ValueError(f"expected a string, got {type(raw).__name__} {raw!r:.60}")
    text = " ".join(raw.split())
    if not text:
        raise ValueError("the answer is empty")
    if facet.type is FacetType.ENUM:
        by_lower = {choice.lower(): choice for choice in facet.choices}
        choice = by_lower.get(text.lower())
        if choice is None:
            raise ValueError(f"{text[:60]!r} is not one of {', '.join(facet.choices)}")
        return FacetValue(facet.name, provider, text=choice, reason=reason)
    if facet.builtin and facet.name == "language":
        code = re.split(r"[-_]", text.lower(), maxsplit=1)[0]
        if code not in ISO_639_1:
            raise ValueError(f"{text[:20]!r} is not an ISO 639-1 code")
        return FacetValue(facet.name, provider, text=code, reason=reason)
    if facet.builtin and facet.name == "request":
        text = trim(redact(text, phone_region), summary_max_chars)
    else:
        text = trim(text, MAX_TEXT_ANSWER_CHARS)
    return FacetValue(facet.name, provider, text=text, reason=reason)


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, MalformedReply | TimeoutError | LLMConnectionError | LLMResponseError):
        return True
    if isinstance(exc, LLMStatusError):
        return exc.status in (408, 409, 429) or exc.status >= 500
    return False


def _retry_after(exc: BaseException | None) -> float | None:
    return exc.retry_after if isinstance(exc, LLMStatusError) else None


def _describe_error(exc: BaseException) -> str:
    if isinstance(exc, LLMStatusError):
        return f"HTTP {exc.status} from the LLM server"
    if isinstance(exc, TimeoutError):
        return "the LLM request timed out"
    if isinstance(exc, LLMConnectionError):
        return f"cannot reach the LLM server ({exc})"
    if isinstance(exc, LLMResponseError):
        return "the LLM server sent a response body that is not JSON"
    return f"{type(exc).__name__}: {exc}"


def reply_content(response: Any) -> str | None:
    """``choices[0].message.content`` of a chat completion; raises ValueError when it has none."""
    choices = response.get("choices") if isinstance(response, dict) else None
    if not isinstance(choices, list) or not choices:
        raise ValueError("the reply has no choices")
    message = choices[0].get("message") if isinstance(choices[0], dict) else None
    if not isinstance(message, dict):
        raise ValueError("the reply has no message")
    content = message.get("content")
    if content is not None and not isinstance(content, str):
        raise ValueError(f"the reply content is JSON {type(content).__name__}, not a string")
    return content


class OpenAIProvider:
    """A :class:`~briefxai_facets.providers.Provider` backed by an OpenAI-compatible chat API."""

    def __init__(
        self,
        settings: OpenAIProviderSettings,
        *,
        summary_max_chars: int = 200,
        phone_region: str = "US",
        provider: str = "openai",
    ) -> None:
        self.settings = settings
        self._meter = metrics.LLMMeter(
            provider, settings.model, settings.cost_per_1k_input_tokens, settings.cost_per_1k_output_tokens
        )
        self.summary_max_chars = summary_max_chars
        self.phone_region = phone_region
        self._client: ChatClient | None = None
        self._semaphore = asyncio.Semaphore(settings.concurrency)
        self._backoff = wait_random_exponential(
            multiplier=settings.backoff_initial_seconds, max=settings.backoff_max_seconds
        )

    @property
    def name(self) -> str:
        return f"openai:{self.settings.model}"

    def supports(self, facet: FacetDefinition) -> bool:
        return not (facet.builtin and facet.name in COUNT_FACETS)

    async def start(self) -> None:
        if self._client is not None:
            return
        api_key = os.environ.get(self.settings.api_key_env, "")
        if not api_key:
            log.warning(
                "llm_api_key_missing",
                env=self.settings.api_key_env,
                base_url=self.settings.base_url,
                model=self.name,
            )
        # no key: no Authorization header (local servers such as Ollama, vLLM, llama.cpp need none);
        # retries are ours (tenacity), so that bad JSON and HTTP faults share one budget.
        # ChatClient.start does not suspend, so concurrent first calls cannot open two sessions.
        client = ChatClient(
            self.settings.base_url,
            api_key,
            timeout_seconds=self.settings.timeout_seconds,
            max_connections=self.settings.concurrency,
            provider=self.name,
        )
        await client.start()
        self._client = client

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def extract(self, jobs: Sequence[Job]) -> list[dict[str, FacetValue]]:
        if self._client is None:
            await self.start()
        return list(await asyncio.gather(*(self._extract_one(job) for job in jobs)))

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        retry_after = _retry_after(exc)
        if retry_after is not None:
            return min(retry_after, self.settings.backoff_max_seconds)
        return float(self._backoff(state))

    def request_body(self, conversation: Conversation, facets: Sequence[FacetDefinition]) -> dict[str, Any]:
        """The chat completions request JSON for ``facets`` of ``conversation``."""
        body: dict[str, Any] = {
            "model": self.settings.model,
            "messages": build_messages(conversation, facets, self.settings.max_chars),
            "temperature": self.settings.temperature,
            "max_tokens": self.settings.max_output_tokens,
        }
        if self.settings.response_format == "json_schema":
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "facets", "strict": True, "schema": reply_schema(facets)},
            }
        elif self.settings.response_format == "json_object":
            body["response_format"] = {"type": "json_object"}
        return body

    async def _ask(self, conversation: Conversation, facets: Sequence[FacetDefinition]) -> str | None:
        client = self._client
        if client is None:
            raise RuntimeError("the OpenAI provider is closed")
        body = self.request_body(conversation, facets)
        async with self._semaphore:  # the client's own timeout starts once a slot is free
            response = await self._meter.request(client.complete(body))
        try:
            return reply_content(response)
        except ValueError as exc:
            raise MalformedReply({f.name: str(exc) for f in facets}) from exc

    async def _extract_one(self, job: Job) -> dict[str, FacetValue]:
        facets = [f for f in job.facets if self.supports(f)]
        accepted: dict[str, FacetValue] = {}
        failure = failure_reason = ""
        errors: dict[str, str] = {}
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.settings.max_attempts),
            wait=self._wait,
            retry=retry_if_exception(_retryable),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    missing = [f for f in facets if f.name not in accepted]
                    content = await self._ask(job.conversation, missing)
                    errors = self._accept(content, missing, accepted)
                    if errors:
                        raise MalformedReply(errors)
        except MalformedReply as exc:
            errors = exc.errors
        except Exception as exc:  # an HTTP or network fault: the facets fail here and go to the next provider
            failure, failure_reason = _describe_error(exc), metrics.llm_outcome(exc)
        attempts = self.settings.max_attempts
        values = dict(accepted)
        for f in facets:
            if f.name in values:
                continue
            if f.name in errors:
                error = f"invalid answer after {attempts} attempt(s): {errors[f.name]}"
                reason = "invalid_answer"
            else:
                error = f"{failure or 'no answer'} (after up to {attempts} attempt(s))"
                reason = failure_reason or "no_value"
            values[f.name] = FacetValue.failure(f.name, self.name, error, reason)
        if len(accepted) < len(facets):
            log.info(
                "llm_facets_failed",
                provider=self.name,
                conversation_id=job.conversation.id,
                failed=[f.name for f in facets if f.name not in accepted],
                error=failure or "; ".join(f"{k}: {v}" for k, v in errors.items())[:500],
            )
        return values

    def _accept(
        self, content: str | None, facets: Sequence[FacetDefinition], accepted: dict[str, FacetValue]
    ) -> dict[str, str]:
        """Adds the valid values in ``content`` to ``accepted``; returns the errors of the others."""
        try:
            data = parse_reply(content)
        except ValueError as exc:
            return {f.name: str(exc) for f in facets}
        errors: dict[str, str] = {}
        for f in facets:
            if f.name not in data:
                errors[f.name] = "missing from the reply"
                continue
            try:
                accepted[f.name] = validate_value(
                    f, data[f.name], self.name, self.summary_max_chars, self.phone_region
                )
            except ValueError as exc:
                errors[f.name] = str(exc)
        return errors
