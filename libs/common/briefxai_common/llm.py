"""The OpenAI-compatible chat API, shared by the services that call an LLM (facets, cluster naming).

- :class:`ChatClient`: a lean client for ``POST {base_url}/chat/completions`` on ``aiohttp``.
- :class:`LLMEndpointSettings`: the settings every LLM endpoint has (URL, model, key variable,
  timeouts, retries, concurrency, ``response_format``); each service's own LLM settings extend it.
- :class:`ResponseFormatNegotiator`: which ``response_format`` a server accepts, found out once per
  provider and remembered for the life of the process (see its docstring).
- :class:`GuardedEndpoint`: one endpoint's circuit breaker (named after the provider, probed with
  ``GET {base_url}/models`` while not closed) and retries (the service's ``retry_policies.llm_provider``,
  with the endpoint's own overrides), shared by every request to it.
- :func:`reply_content`, :func:`parse_json_object`, :func:`retryable`, :func:`describe_error`: reading
  a reply and judging a fault, the same way everywhere.

The client:

One ``aiohttp.ClientSession`` per client, opened in :meth:`ChatClient.start` (inside the running loop)
and closed in :meth:`ChatClient.close`; its connector keeps up to ``max_connections`` connections alive
for reuse. :meth:`ChatClient.complete` sends one request body (serialized once, compact) and returns the
response as parsed JSON. It neither retries nor limits concurrency: the caller does both.

Every fault comes out as an :class:`LLMError`:

- :class:`LLMStatusError`: the server answered with a status other than 2xx (``status``,
  ``retry_after`` in seconds when the server sent a usable ``Retry-After``);
- :class:`LLMConnectionError`: the server could not be reached, dropped the connection, or sent a
  broken HTTP message or body;
- :class:`LLMResponseError`: the HTTP response was fine but its body is not JSON.

A timeout is the ``TimeoutError`` of ``asyncio.timeout(timeout_seconds)`` around the whole exchange
(shortened to the time left before the current deadline, :func:`briefxai_common.resilience.time_left`).
The API key only ever goes into the ``Authorization`` header; it is never logged nor put in a message.

Each exchange is a ``chat <model>`` client span (OpenTelemetry GenAI conventions: provider, requested
and answered model, input and output tokens, HTTP status, ``error.type`` on failure), a child of the
current span (the call being served: ``ExtractFacets``, a clustering job); the W3C trace context goes along in the
request headers, so an LLM server that traces joins the trace.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import os
import re
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import aiohttp
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from pydantic import BaseModel, ConfigDict, Field

from briefxai_common import service_metrics
from briefxai_common.config import BreakerSettings, RetryPolicySettings
from briefxai_common.logging import get_logger
from briefxai_common.resilience import CircuitOpenError, Retrier, RetryPolicy, http_retryable, time_left

USER_AGENT = "briefxai"
ERROR_MESSAGE_CHARS = 300
tracer = trace.get_tracer(__name__)
log = get_logger(__name__)
T = TypeVar("T")
ResponseFormat = Literal["json_schema", "json_object", "none"]


class LLMError(Exception):
    """Something went wrong talking to the LLM server."""


class LLMStatusError(LLMError):
    """The server answered with HTTP ``status`` (not 2xx); ``message`` is its error text, if any."""

    def __init__(self, status: int, message: str = "", retry_after: float | None = None) -> None:
        self.status = status
        self.message = message
        self.retry_after = retry_after
        super().__init__(f"HTTP {status} from the LLM server" + (f": {message}" if message else ""))


class LLMConnectionError(LLMError):
    """The server could not be reached, or the connection broke before a whole response arrived."""


class LLMResponseError(LLMError):
    """The HTTP exchange succeeded but the response body is unusable (not JSON)."""


def chat_completions_url(base_url: str) -> str:
    """``{base_url}/chat/completions``, whether or not ``base_url`` ends in a slash."""
    return base_url.rstrip("/") + "/chat/completions"


def models_url(base_url: str) -> str:
    """``{base_url}/models``: the model list, the cheapest request every OpenAI-compatible server answers."""
    return base_url.rstrip("/") + "/models"


def parse_retry_after(header: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delay in seconds, or an HTTP date); None if unusable."""
    if header is None:
        return None
    header = header.strip()
    try:
        seconds = float(header)
    except ValueError:
        try:
            moment = parsedate_to_datetime(header)
        except (TypeError, ValueError, IndexError):
            return None
        if moment.tzinfo is None:
            return None
        seconds = moment.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _error_message(body: bytes) -> str:
    """The ``error.message`` of an OpenAI-style error body, else the start of the body as text."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])[:ERROR_MESSAGE_CHARS]
        if isinstance(error, str):
            return error[:ERROR_MESSAGE_CHARS]
    return " ".join(body[:ERROR_MESSAGE_CHARS].decode("utf-8", "replace").split())


class ChatClient:
    """``POST {base_url}/chat/completions`` over one keep-alive ``aiohttp`` session."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout_seconds: float,
        max_connections: int,
        provider: str = "openai",
        user_agent: str = USER_AGENT,
    ) -> None:
        self.url = chat_completions_url(base_url)
        self.models_url = models_url(base_url)
        self.provider = provider
        parsed = urlsplit(self.url)
        self._server = (parsed.hostname or "", parsed.port or (443 if parsed.scheme == "https" else 80))
        self.timeout_seconds = timeout_seconds
        self.max_connections = max_connections
        self._headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": user_agent,
        }
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:  # never shows the headers (the key)
        return f"ChatClient(url={self.url!r}, open={self._session is not None})"

    async def start(self) -> None:
        """Opens the session; call inside the event loop that will use it."""
        if self._session is not None:
            return
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.max_connections),
            headers=self._headers,
            timeout=aiohttp.ClientTimeout(total=None),  # the per-request limit is asyncio.timeout below
            raise_for_status=False,
        )

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def complete(self, payload: dict[str, Any]) -> Any:
        """The parsed JSON response to ``payload``; raises LLMError or TimeoutError."""
        session = self._session
        if session is None:
            raise RuntimeError("the chat client is closed")
        body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        model = str(payload.get("model", ""))
        with tracer.start_as_current_span(
            f"chat {model}".strip(),
            kind=SpanKind.CLIENT,
            attributes=self._request_attributes(payload, model),
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                result = await self._exchange(session, body)
            except (LLMError, TimeoutError) as exc:
                status = exc.status if isinstance(exc, LLMStatusError) else None
                if status is not None:
                    span.set_attribute("http.response.status_code", status)
                span.set_attribute("error.type", str(status) if status is not None else type(exc).__name__)
                span.set_status(Status(StatusCode.ERROR, str(exc)[:ERROR_MESSAGE_CHARS]))
                raise
            span.set_attributes(_response_attributes(result))
            return result

    def _request_attributes(self, payload: dict[str, Any], model: str) -> dict[str, Any]:
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",  # the API spoken; briefxai.llm.provider is our provider
            "briefxai.llm.provider": self.provider,
            "gen_ai.request.model": model,
            "server.address": self._server[0],
            "server.port": self._server[1],
            "http.request.method": "POST",
        }
        for key, attribute in (
            ("max_tokens", "gen_ai.request.max_tokens"),
            ("temperature", "gen_ai.request.temperature"),
        ):
            value = payload.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                attributes[attribute] = value
        return attributes

    def _timeout(self) -> float:
        left = time_left()
        return self.timeout_seconds if left is None else min(self.timeout_seconds, left)

    async def probe(self) -> bool:
        """Whether the server answers ``GET {base_url}/models`` with anything but 408, 429 or 5xx: a
        cheap sign of life for a circuit breaker (a 401 or 404 still says the server is up)."""
        session = self._session
        if session is None:
            return False
        try:
            async with asyncio.timeout(self._timeout()):
                async with session.get(self.models_url, allow_redirects=False) as response:
                    await response.read()
                    return not http_retryable(response.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.debug("llm_probe_failed", provider=self.provider, error=repr(exc))
            return False

    async def _exchange(self, session: aiohttp.ClientSession, body: bytes) -> Any:
        headers: dict[str, str] = {}
        propagate.inject(headers)  # traceparent (and baggage) of the current span
        try:
            async with asyncio.timeout(self._timeout()):
                async with session.post(
                    self.url, data=body, headers=headers, allow_redirects=False
                ) as response:
                    raw = await response.read()
                    status = response.status
                    retry_after = response.headers.get("Retry-After")
        except (
            aiohttp.ClientConnectionError,
            aiohttp.ClientPayloadError,
            aiohttp.ClientResponseError,
        ) as exc:
            # ClientResponseError without raise_for_status: the server's HTTP message could not be parsed
            raise LLMConnectionError(f"{type(exc).__name__}: {exc}") from exc
        if not 200 <= status < 300:
            raise LLMStatusError(status, _error_message(raw), parse_retry_after(retry_after))
        trace.get_current_span().set_attribute("http.response.status_code", status)
        try:
            return json.loads(raw)
        except ValueError as exc:  # JSONDecodeError, or bytes that are not UTF-8/16/32
            raise LLMResponseError("the LLM server sent a response body that is not JSON") from exc


def _response_attributes(response: Any) -> dict[str, Any]:
    """The answering model, response id and token counts of a chat completion, as span attributes."""
    if not isinstance(response, dict):
        return {}
    attributes: dict[str, Any] = {}
    if isinstance(response.get("model"), str):
        attributes["gen_ai.response.model"] = response["model"]
    if isinstance(response.get("id"), str):
        attributes["gen_ai.response.id"] = response["id"]
    usage = response.get("usage")
    if isinstance(usage, dict):
        for key, attribute in (
            ("prompt_tokens", "gen_ai.usage.input_tokens"),
            ("completion_tokens", "gen_ai.usage.output_tokens"),
        ):
            if isinstance(usage.get(key), int) and not isinstance(usage[key], bool):
                attributes[attribute] = usage[key]
    choices = response.get("choices")
    if isinstance(choices, list):
        reasons = [c.get("finish_reason") for c in choices if isinstance(c, dict)]
        if reasons and all(isinstance(r, str) for r in reasons):
            attributes["gen_ai.response.finish_reasons"] = reasons
    return attributes


# ---- settings -----------------------------------------------------------------------------------------


class LLMEndpointSettings(BaseModel):
    """An OpenAI-compatible chat API (OpenAI, vLLM, Ollama, llama.cpp's server, gateways in front of them)."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(
        default="https://api.openai.com/v1",
        pattern=r"^https?://[^/?#\s]+",
        description="API root (http:// or https://), ending in /v1 for most servers.",
    )
    model: str = Field(default="gpt-4o-mini", min_length=1, description="Chat model name.")
    api_key_env: str = Field(
        default="OPENAI_API_KEY",
        description="Environment variable holding the API key (unset: local servers).",
    )
    timeout_seconds: float = Field(default=30.0, gt=0, description="Per HTTP request.")
    max_attempts: int | None = Field(
        default=None,
        ge=1,
        le=100,
        description="Tries per item (errors, 429, bad JSON); null = retry_policies.llm_provider.max_attempts.",
    )
    backoff_initial_seconds: float | None = Field(
        default=None,
        ge=0,
        description="First retry wait; null = retry_policies.llm_provider.initial_delay_ms.",
    )
    backoff_max_seconds: float | None = Field(
        default=None,
        ge=0,
        description="Longest wait between tries (a longer Retry-After ends the retries); null = "
        "retry_policies.llm_provider.max_delay_ms.",
    )
    concurrency: int = Field(default=16, ge=1, le=1024, description="Requests in flight at once.")
    temperature: float = Field(default=0.0, ge=0, le=2)
    max_output_tokens: int = Field(default=800, ge=16, description="max_tokens of each reply.")
    response_format: ResponseFormat = Field(
        default="json_schema",
        description="json_schema (strict schema), json_object (JSON mode, the schema sent along as "
        "llama.cpp's server reads it), or none (the schema in the prompt only). A server that rejects "
        "one is asked with the next, and that is remembered for the life of the process.",
    )

    def retry_policy(self, base: RetryPolicySettings) -> RetryPolicy:
        """The service's ``llm_provider`` policy with this endpoint's own overrides."""
        policy = base.policy()
        return dataclasses.replace(
            policy,
            max_attempts=policy.max_attempts if self.max_attempts is None else self.max_attempts,
            initial_delay=policy.initial_delay
            if self.backoff_initial_seconds is None
            else self.backoff_initial_seconds,
            max_delay=policy.max_delay if self.backoff_max_seconds is None else self.backoff_max_seconds,
        )


async def open_chat_client(settings: LLMEndpointSettings, *, provider: str, user_agent: str) -> ChatClient:
    """A started :class:`ChatClient` for ``settings``, its key read from ``settings.api_key_env``. No key:
    no ``Authorization`` header (local servers such as Ollama, vLLM, llama.cpp need none), and a warning.
    ``ChatClient.start`` does not suspend, so concurrent first calls cannot open two sessions."""
    api_key = os.environ.get(settings.api_key_env, "")
    if not api_key:
        log.warning(
            "llm_api_key_missing", env=settings.api_key_env, base_url=settings.base_url, model=provider
        )
    client = ChatClient(
        settings.base_url,
        api_key,
        timeout_seconds=settings.timeout_seconds,
        max_connections=settings.concurrency,
        provider=provider,
        user_agent=user_agent,
    )
    await client.start()
    return client


# ---- replies and faults -------------------------------------------------------------------------------


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


FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.S)


def parse_json_object(content: str | None) -> dict[str, Any]:
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


_WORD = re.compile(r"[^\W_]+")
ECHO_WORDS = 6  # an answer holding this many consecutive words of the instructions repeats them


def repeats_instructions(answer: str, instructions: str, run: int = ECHO_WORDS) -> bool:
    """Whether ``answer`` holds ``run`` consecutive words of ``instructions`` (case and punctuation
    ignored): small models often answer a question by repeating it, which is no answer."""
    said = _WORD.findall(answer.casefold())
    if len(said) < run:
        return False
    runs = _runs(instructions, run)
    return any(tuple(said[i : i + run]) in runs for i in range(len(said) - run + 1))


@lru_cache(maxsize=256)
def _runs(instructions: str, run: int) -> frozenset[tuple[str, ...]]:
    asked = _WORD.findall(instructions.casefold())
    return frozenset(tuple(asked[i : i + run]) for i in range(len(asked) - run + 1))


def retryable(exc: BaseException) -> bool:
    """Whether trying the same request again may help (:func:`briefxai_common.resilience.http_retryable`):
    timeouts, broken connections or bodies, 408, 429 and 5xx; not the other 4xx. Also what a breaker
    counts as a failure of the server."""
    if isinstance(exc, TimeoutError | LLMConnectionError | LLMResponseError):
        return True
    if isinstance(exc, LLMStatusError):
        return http_retryable(exc.status)
    return False


def server_retry_after(exc: BaseException) -> float | None:
    """The wait the server asked for (``Retry-After``), if any."""
    return exc.retry_after if isinstance(exc, LLMStatusError) else None


class GuardedEndpoint:
    """One LLM endpoint's circuit breaker and retries, shared by every request to it.

    The breaker (``circuit_breakers.llm_provider``, named ``provider``) sees each HTTP exchange
    (:meth:`guarded`): timeouts, broken connections, 408, 429 and 5xx count against it; while it is not
    closed, ``GET {base_url}/models`` probes the server. The retries (:meth:`call`) wrap a whole attempt
    (which may also retry a reply that is not usable: ``retry_on``); an open breaker ends them.
    """

    def __init__(
        self,
        service: str,
        provider: str,
        policy: RetryPolicy,
        breaker: BreakerSettings,
        *,
        retry_on: Callable[[BaseException], bool] = retryable,
    ) -> None:
        self.provider = provider
        self.client: ChatClient | None = None
        self.breaker = breaker.breaker(provider, is_failure=retryable, probe=self._probe)
        self.retrier = Retrier(
            service, provider, policy, is_retryable=retry_on, retry_after=server_retry_after
        )
        service_metrics.watch_breaker(service, self.breaker)

    async def _probe(self) -> bool:
        return self.client is not None and await self.client.probe()

    def guarded(self) -> AbstractAsyncContextManager[None]:
        """``async with endpoint.guarded(): <one HTTP exchange>``, through the breaker."""
        return self.breaker.guarded()

    async def call(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """``attempt()`` with the endpoint's retries; the last error is raised."""
        return await self.retrier.call(attempt)

    async def close(self) -> None:
        await self.breaker.close()


def describe_error(exc: BaseException) -> str:
    """A short, key-free account of an LLM fault for values, logs and health."""
    if isinstance(exc, CircuitOpenError):
        return str(exc)
    if isinstance(exc, LLMStatusError):
        return f"HTTP {exc.status} from the LLM server"
    if isinstance(exc, TimeoutError):
        return "the LLM request timed out"
    if isinstance(exc, LLMConnectionError):
        return f"cannot reach the LLM server ({exc})"
    if isinstance(exc, LLMResponseError):
        return "the LLM server sent a response body that is not JSON"
    return f"{type(exc).__name__}: {exc}"


# ---- response_format ------------------------------------------------------------------------------------

FORMATS: tuple[ResponseFormat, ...] = ("json_schema", "json_object", "none")
#: Statuses with which servers refuse a request they cannot parse or do not support (llama.cpp's server:
#: 500 for a response_format type it does not know; vLLM and OpenAI: 400; FastAPI validation: 422).
REJECTION_STATUSES = frozenset({400, 415, 422, 500, 501})
_MENTIONS_FORMAT = re.compile(r"response_format|json_schema|json_object|structured output", re.I)


def response_format_field(fmt: ResponseFormat, name: str, schema: dict[str, Any]) -> dict[str, Any] | None:
    """The request's ``response_format`` for ``fmt`` (None: send none). ``json_object`` carries the
    schema too: llama.cpp's server turns it into a grammar, other servers ignore it."""
    if fmt == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": name, "strict": True, "schema": schema}}
    if fmt == "json_object":
        return {"type": "json_object", "schema": schema}
    return None


def schema_instructions(schema: dict[str, Any]) -> str:
    """The schema as prompt text, for requests whose server does not enforce it."""
    return "The JSON object must be valid against this JSON schema:\n" + json.dumps(
        schema, ensure_ascii=False, separators=(",", ":")
    )


def lower_formats(fmt: ResponseFormat) -> tuple[ResponseFormat, ...]:
    return FORMATS[FORMATS.index(fmt) + 1 :]


@dataclass(frozen=True)
class Downgrade:
    """One step down the ``json_schema → json_object → none`` chain, and the answer that caused it."""

    rejected: ResponseFormat
    now: ResponseFormat
    status: int
    message: str

    def __str__(self) -> str:
        return f"{self.rejected} -> {self.now} (HTTP {self.status}: {self.message[:120]})"


class ResponseFormatNegotiator:
    """Which ``response_format`` one provider's server accepts, for the life of the process.

    Start: the configured format. Until a request has been answered (by anything but a rejection, see
    below), requests go **one at a time** through a gate, so a server that refuses the format refuses one
    request, not every request of the first batch. A rejection is an HTTP 400/415/422/500/501 to a request
    that carried a ``response_format``:

    - whose error text names it (``response_format``, ``json_schema``, ``json_object``, "structured
      output"): the next format down is remembered at once and the request is sent again in it;
    - whose error text does not say why: the request is sent once more as it was (a passing fault is
      not a rejection); refused again, it is sent in each lower format, and the first that is answered
      is remembered (if none is, nothing is, and the first error stands).

    Once the gate is open, only rejections that name the format move it down. Each step is logged once
    (``llm_response_format_downgraded``) and listed by :meth:`describe` (the services' /health details).
    Re-sending after a downgrade does not count as a retry of the caller's.
    """

    def __init__(self, provider: str, configured: ResponseFormat) -> None:
        self.provider = provider
        self.configured: ResponseFormat = configured
        self.current: ResponseFormat = configured
        self.downgrades: list[Downgrade] = []
        self.rejected_requests = 0
        self._open = configured == "none"
        self._gate = asyncio.Lock()

    def describe(self) -> dict[str, Any]:
        return {
            "configured": self.configured,
            "current": self.current,
            "settled": self._open,
            "downgrades": [str(d) for d in self.downgrades],
        }

    async def call(self, send: Callable[[ResponseFormat], Awaitable[T]]) -> T:
        """``await send(fmt)`` in the format the server takes; LLM faults other than a rejection (and a
        rejection of the last format, ``none``) are raised to the caller."""
        while True:
            if not self._open:
                async with self._gate:
                    if not self._open:
                        return await self._probe(send)
            fmt = self.current
            try:
                return await send(fmt)
            except LLMStatusError as exc:
                if fmt != self.current:  # another request moved down meanwhile: send it as that one
                    self.rejected_requests += 1
                    continue
                if fmt != "none" and exc.status in REJECTION_STATUSES and _names_format(exc):
                    self.rejected_requests += 1
                    self._downgrade(fmt, lower_formats(fmt)[0], exc)
                    continue
                raise

    async def _probe(self, send: Callable[[ResponseFormat], Awaitable[T]]) -> T:
        """One request while the format is unsettled (the gate is held)."""
        fmt = self.current
        try:
            result = await send(fmt)
        except LLMStatusError as exc:
            if fmt == "none" or exc.status not in REJECTION_STATUSES:
                self._open = True
                raise
            self.rejected_requests += 1
            if _names_format(exc):
                self._downgrade(fmt, lower_formats(fmt)[0], exc)
                return await self._probe(send)
            return await self._try_lower(send, fmt, exc)
        except (LLMError, TimeoutError):
            self._open = True  # the server said nothing about the format: stop holding requests back
            raise
        self._open = True
        return result

    async def _try_lower(
        self, send: Callable[[ResponseFormat], Awaitable[T]], fmt: ResponseFormat, first: LLMStatusError
    ) -> T:
        self._open = True  # whatever happens, this is the only unexplained probe
        try:
            return await send(fmt)  # a passing fault answers now
        except LLMStatusError as exc:
            if exc.status not in REJECTION_STATUSES:
                raise
            self.rejected_requests += 1
        for lower in lower_formats(fmt):
            try:
                result = await send(lower)
            except LLMStatusError as exc:
                if lower != "none" and exc.status in REJECTION_STATUSES:
                    self.rejected_requests += 1
                    continue
                break
            except (LLMError, TimeoutError):
                break
            self._downgrade(fmt, lower, first)
            return result
        raise first

    def _downgrade(self, rejected: ResponseFormat, now: ResponseFormat, exc: LLMStatusError) -> None:
        if FORMATS.index(now) <= FORMATS.index(self.current):
            return
        step = Downgrade(rejected, now, exc.status, exc.message)
        self.downgrades.append(step)
        self.current = now
        log.warning(
            "llm_response_format_downgraded",
            provider=self.provider,
            rejected=rejected,
            now=now,
            status=exc.status,
            error=exc.message[:ERROR_MESSAGE_CHARS],
        )


def _names_format(exc: LLMStatusError) -> bool:
    return _MENTIONS_FORMAT.search(exc.message) is not None
