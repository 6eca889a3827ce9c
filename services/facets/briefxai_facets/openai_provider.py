"""The ``openai`` provider: any OpenAI-compatible chat API answers the facets, one request per conversation.

Each request carries the conversation (cut to ``max_chars``) and every wanted facet's question, and asks
for one JSON object whose schema is built from the facet definitions. The prompt follows Clio (Tamkin et
al., 2024) in spirit, in our own words: text answers are English, one sentence, and leave out anything
that identifies a person (names, places, organisations, contact details, account or order numbers);
``request`` says what the user asked for and ``task``'s reason what the assistant was asked to do.

How the schema reaches the server is ``response_format`` (``json_schema``: enforced by the server;
``json_object``: JSON mode, with the schema in the prompt and in the request, where llama.cpp's server
turns it into a grammar; ``none``: in the prompt only). A server that rejects the format is asked with
the next one down, and that is remembered for the provider's life
(:class:`~briefxai_common.llm.ResponseFormatNegotiator`; the facets' /health lists it).

The reply is validated against the definitions (type, range, choices, ISO 639-1 code; a text answer
that repeats six words in a row of the instructions is no answer, a reason that does is dropped: small
models answer by saying the question back); valid values are kept, and a reply that is not JSON or has invalid values is retried for the
facets still missing (the service's ``retry_policies.llm_provider``, or the provider's own
``max_attempts``/``backoff_*``: jittered exponential backoff, ``Retry-After`` honoured, never past the
ExtractFacets call's deadline, within the provider's retry budget). HTTP 408, 429, 5xx, timeouts,
connection errors and response bodies that are not JSON (or have no ``choices``) are retried the same way;
other 4xx are not. Each HTTP request goes through the provider's circuit breaker
(``circuit_breakers.llm_provider``, named after the provider's key, probed with ``GET /models`` while not
closed): an open breaker fails the facets at once, so the chain hands them to the next provider. What is
still missing after the last try is a failed value, which the chain hands to the next provider — an
invalid value is never returned.
Counts (``turns``, ``user_turns``, ``tokens``) are not asked of the LLM. Request summaries and reasons
from the LLM also go through PII and secret redaction (:func:`briefxai_common.pii.redact`), the answers
of custom text facets through secret redaction. With
``privacy.redact_external`` (the default) the conversation is redacted the same way before it is sent:
the endpoint sees ``[EMAIL]``, ``[SECRET]``... instead of the details.

At most ``concurrency`` requests are in flight at once (per provider); a batch runs concurrently. HTTP
goes through the shared :class:`~briefxai_common.llm.ChatClient` (``aiohttp``, one keep-alive session
per provider), each request limited to ``timeout_seconds``.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Sequence
from typing import Any

from briefxai_common.config import BreakerSettings, LLMRetryPolicySettings
from briefxai_common.llm import (
    ChatClient,
    GuardedEndpoint,
    ResponseFormat,
    ResponseFormatNegotiator,
    describe_error,
    open_chat_client,
    parse_json_object,
    repeats_instructions,
    response_format_field,
    retryable,
    schema_instructions,
)
from briefxai_common.llm import reply_content as reply_content
from briefxai_common.llm_metrics import LLMMeter
from briefxai_common.logging import get_logger
from briefxai_common.pii import redact, redact_secrets
from briefxai_common.resilience import CircuitState, RetryPolicy

from . import metrics
from .definitions import (
    BUILTIN_FACETS,
    COUNT_FACETS,
    Conversation,
    FacetDefinition,
    FacetType,
    FacetValue,
    Job,
)
from .language import ISO_639_1
from .settings import OpenAIProviderSettings
from .summary import trim

log = get_logger(__name__)

SYSTEM_PROMPT = (
    "You describe one conversation between a user and an assistant (an AI model or a support agent) for "
    "an aggregate, privacy-preserving analysis of what people ask for. You answer questions about it, "
    "called facets, and reply with one JSON object and nothing else, with exactly the keys listed.\n"
    "Rules for every text answer: write plain English, even when the conversation is in another "
    "language; one clear sentence that gets to the point (no 'Based on the conversation'); describe the "
    "kind of request, not the person. Leave out anything that could identify someone: names of people, "
    "companies, products they own, places, dates, e-mail addresses, phone numbers, account, order or "
    "ticket numbers, links and other identifiers. Describe sensitive or harmful topics plainly and "
    "specifically; assume neither good nor bad faith."
)
MAX_TEXT_ANSWER_CHARS = 2000
#: What an answer must not merely say back (with the facet's own question).
INSTRUCTIONS = " ".join((SYSTEM_PROMPT, *(f.question for f in BUILTIN_FACETS)))


class MalformedReply(Exception):
    """The reply was not usable for some facets; ``errors`` says why, per facet name."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{name}: {error}" for name, error in errors.items()))


def render_conversation(conversation: Conversation, max_chars: int, redact_region: str | None = None) -> str:
    """The transcript as ``ROLE: text`` blocks, cut to ``max_chars`` characters with a marker; with
    ``redact_region``, each message's PII and secrets replaced by placeholders first."""
    if redact_region is None:
        blocks = [f"{m.role.upper()}: {m.content}" for m in conversation.messages]
    else:
        # Only what could be sent is redacted: the cost stays bounded by max_chars per message.
        blocks = [
            f"{m.role.upper()}: {redact(m.content[:max_chars], redact_region)}" for m in conversation.messages
        ]
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
    conversation: Conversation,
    facets: Sequence[FacetDefinition],
    max_chars: int,
    response_format: ResponseFormat = "json_schema",
    redact_region: str | None = None,
) -> list[Any]:
    """The system and user messages; unless the server enforces the schema (``json_schema``), the
    schema is written into the prompt. ``redact_region``: see :func:`render_conversation`."""
    questions = "\n".join(_describe(f) for f in facets)
    transcript = render_conversation(conversation, max_chars, redact_region)
    user = (
        f"<conversation>\n{transcript}\n</conversation>\n\n"
        f"Answer these facets about the conversation above:\n{questions}\n\n"
        f"Reply with a JSON object whose keys are exactly: {', '.join(f.name for f in facets)}."
    )
    if response_format != "json_schema":
        user += "\n" + schema_instructions(reply_schema(facets))
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


#: The JSON object of a reply (shared with the cluster namer): :func:`briefxai_common.llm.parse_json_object`.
parse_reply = parse_json_object


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
        reason = trim(redact(" ".join(reason_raw.split()), phone_region), 500)
        if repeats_instructions(reason, f"{facet.question} {INSTRUCTIONS}"):
            reason = ""  # the question said back is no reason; the value may still be right
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
    if repeats_instructions(text, f"{facet.question} {INSTRUCTIONS}"):
        raise ValueError("the answer repeats the question")
    if facet.builtin and facet.name == "request":
        text = trim(redact(text, phone_region), summary_max_chars)
    else:
        text = trim(redact_secrets(text), MAX_TEXT_ANSWER_CHARS)
    return FacetValue(facet.name, provider, text=text, reason=reason)


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, MalformedReply) or retryable(exc)


class OpenAIProvider:
    """A :class:`~briefxai_facets.providers.Provider` backed by an OpenAI-compatible chat API."""

    def __init__(
        self,
        settings: OpenAIProviderSettings,
        *,
        summary_max_chars: int = 200,
        phone_region: str = "US",
        provider: str = "openai",
        retry_policy: RetryPolicy | None = None,
        breaker: BreakerSettings | None = None,
        redact_external: bool = True,
    ) -> None:
        """``retry_policy`` None: the default ``llm_provider`` policy with the settings' overrides;
        ``breaker`` None: the default breaker settings; ``redact_external``: redact conversations
        before sending them (``privacy.redact_external``)."""
        self.redact_external = redact_external
        self.settings = settings
        self.key = provider
        self.endpoint = GuardedEndpoint(
            metrics.SERVICE,
            provider,
            retry_policy or settings.retry_policy(LLMRetryPolicySettings.model_validate({})),
            breaker or BreakerSettings.model_validate({}),
            retry_on=_retryable,
        )
        self._meter = LLMMeter(
            provider,
            settings.model,
            settings.cost_per_1k_input_tokens,
            settings.cost_per_1k_output_tokens,
            service=metrics.SERVICE,
        )
        self.summary_max_chars = summary_max_chars
        self.phone_region = phone_region
        self._client: ChatClient | None = None
        self._semaphore = asyncio.Semaphore(settings.concurrency)
        self.formats = ResponseFormatNegotiator(self.name, settings.response_format)

    @property
    def name(self) -> str:
        return f"openai:{self.settings.model}"

    @property
    def breaker_state(self) -> CircuitState:
        return self.endpoint.breaker.state

    def response_format_state(self) -> dict[str, Any]:
        """The configured and current ``response_format`` and the downgrades so far (for /health)."""
        return self.formats.describe()

    def supports(self, facet: FacetDefinition) -> bool:
        return not (facet.builtin and facet.name in COUNT_FACETS)

    async def start(self) -> None:
        if self._client is not None:
            return
        # retries are ours (tenacity), so that bad JSON and HTTP faults share one budget.
        self._client = await open_chat_client(self.settings, provider=self.name, user_agent="briefxai-facets")
        self.endpoint.client = self._client

    async def close(self) -> None:
        client, self._client = self._client, None
        self.endpoint.client = None
        await self.endpoint.close()
        if client is not None:
            await client.close()

    async def extract(self, jobs: Sequence[Job]) -> list[dict[str, FacetValue]]:
        if self._client is None:
            await self.start()
        return list(await asyncio.gather(*(self._extract_one(job) for job in jobs)))

    def request_body(
        self,
        conversation: Conversation,
        facets: Sequence[FacetDefinition],
        response_format: ResponseFormat | None = None,
    ) -> dict[str, Any]:
        """The chat completions request JSON for ``facets`` of ``conversation`` (``response_format``:
        the negotiated one unless given)."""
        fmt = response_format or self.formats.current
        body: dict[str, Any] = {
            "model": self.settings.model,
            "messages": build_messages(
                conversation,
                facets,
                self.settings.max_chars,
                fmt,
                self.phone_region if self.redact_external else None,
            ),
            "temperature": self.settings.temperature,
            "max_tokens": self.settings.max_output_tokens,
        }
        field = response_format_field(fmt, "facets", reply_schema(facets))
        if field is not None:
            body["response_format"] = field
        return body

    async def _ask(self, conversation: Conversation, facets: Sequence[FacetDefinition]) -> str | None:
        client = self._client
        if client is None:
            raise RuntimeError("the OpenAI provider is closed")

        async def send(fmt: ResponseFormat) -> Any:
            body = self.request_body(conversation, facets, fmt)
            # the client's own timeout starts once a slot is free
            async with self.endpoint.guarded(), self._semaphore:
                return await self._meter.request(client.complete(body))

        response = await self.formats.call(send)
        try:
            return reply_content(response)
        except ValueError as exc:
            raise MalformedReply({f.name: str(exc) for f in facets}) from exc

    async def _extract_one(self, job: Job) -> dict[str, FacetValue]:
        facets = [f for f in job.facets if self.supports(f)]
        accepted: dict[str, FacetValue] = {}
        failure = failure_reason = ""
        errors: dict[str, str] = {}

        async def attempt() -> None:
            nonlocal errors
            missing = [f for f in facets if f.name not in accepted]
            content = await self._ask(job.conversation, missing)
            errors = self._accept(content, missing, accepted)
            if errors:
                raise MalformedReply(errors)

        try:
            await self.endpoint.call(attempt)
        except MalformedReply as exc:
            errors = exc.errors
        except Exception as exc:  # an HTTP or network fault: the facets fail here and go to the next provider
            failure, failure_reason = describe_error(exc), metrics.failure_reason(exc)
        attempts = self.endpoint.retrier.policy.max_attempts
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
