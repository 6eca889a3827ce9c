"""A lean client for the chat completions endpoint of an OpenAI-compatible API, on ``aiohttp``.

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

A timeout is the ``TimeoutError`` of ``asyncio.timeout(timeout_seconds)`` around the whole exchange.
The API key only ever goes into the ``Authorization`` header; it is never logged nor put in a message.

Each exchange is a ``chat <model>`` client span (OpenTelemetry GenAI conventions: provider, requested
and answered model, input and output tokens, HTTP status, ``error.type`` on failure), a child of the
current span (the ``ExtractFacets`` call being served); the W3C trace context goes along in the
request headers, so an LLM server that traces joins the trace.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

USER_AGENT = "briefxai-facets"
ERROR_MESSAGE_CHARS = 300
tracer = trace.get_tracer(__name__)


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
    ) -> None:
        self.url = chat_completions_url(base_url)
        self.provider = provider
        parsed = urlsplit(self.url)
        self._server = (parsed.hostname or "", parsed.port or (443 if parsed.scheme == "https" else 80))
        self.timeout_seconds = timeout_seconds
        self.max_connections = max_connections
        self._headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
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

    async def _exchange(self, session: aiohttp.ClientSession, body: bytes) -> Any:
        headers: dict[str, str] = {}
        propagate.inject(headers)  # traceparent (and baggage) of the current span
        try:
            async with asyncio.timeout(self.timeout_seconds):
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
