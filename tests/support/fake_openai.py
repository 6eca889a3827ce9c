"""A small scripted HTTP server that speaks the OpenAI API, for tests.

It is a real aiohttp server on ``127.0.0.1:<free port>``; point any OpenAI-compatible client at
``server.base_url`` (``http://127.0.0.1:<port>/v1``). Endpoints: ``POST /v1/chat/completions``,
``POST /v1/embeddings``, ``GET /v1/models``.

Tests script what happens next, per endpoint, with a queue of :class:`Behaviour` s (consumed one per
request, in order); when a queue is empty the default applies: ``chat_default(request) -> content`` for
chat, and deterministic pseudo-random unit vectors (from a hash of each input text, ``embedding_dim``
floats) for embeddings. Every request is recorded in ``server.requests``; the highest number of requests
being handled at once per endpoint is in ``server.max_in_flight``.

Async use::

    async with FakeOpenAI() as fake:
        fake.script_chat(Behaviour.rate_limited(retry_after=0), Behaviour.reply('{"a": 1}'))
        client = openai.AsyncOpenAI(base_url=fake.base_url, api_key="test")

Sync use (a subprocess or sync test): ``fake = FakeOpenAI().start_in_thread()`` ... ``fake.stop_thread()``.

Dialects (``FakeOpenAI(dialect=...)``): what the server makes of a chat request's ``response_format``,
before any scripted behaviour (a refused request is recorded but consumes no behaviour):

- ``openai`` (default): every format is accepted.
- ``llama_cpp``: llama-cpp-python 0.3.36's server, which takes ``{"type": "text"}`` and
  ``{"type": "json_object", "schema": ...}`` but answers HTTP 500 to OpenAI's ``json_schema``, with the
  text of the request's validation error (it names ``response_format``).
- ``no_response_format``: a server that refuses any ``response_format`` with HTTP 400 naming it.
- ``opaque``: ``json_schema`` is refused with a bare HTTP 500 that does not say why.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Self

import numpy as np
from aiohttp import web

JSON = dict[str, Any]
Endpoint = Literal["chat", "embeddings"]
Dialect = Literal["openai", "llama_cpp", "no_response_format", "opaque"]
# What llama-cpp-python 0.3.36's server answers (HTTP 500, error type internal_server_error) to a
# response_format of type json_schema, as recorded from the real server (its file path shortened).
LLAMA_CPP_FORMAT_ERROR = (
    "1 validation error:\n  {'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), "
    "'msg': \"Input should be 'text' or 'json_object'\", 'input': 'json_schema', "
    "'ctx': {'expected': \"'text' or 'json_object'\"}}\n\n"
    '  File "llama_cpp/server/app.py", line 376, in create_chat_completion\n'
    "    POST /v1/chat/completions"
)
ChatReply = str | Callable[[JSON], str]
EmbeddingReply = list[list[float]] | Callable[[JSON], list[list[float]]]


@dataclass(frozen=True)
class Behaviour:
    """What the server does for one request.

    - ``content``: chat reply content (a string, or a callable computing it from the request JSON).
    - ``vectors``: embeddings reply (a list of vectors, or a callable computing them from the request JSON).
    - ``latency``: seconds to wait before answering (counted as in flight meanwhile).
    - ``status``: HTTP status; anything but 200 answers with an OpenAI-style error body.
    - ``retry_after``: seconds, sent as the ``Retry-After`` header (with 429).
    - ``hang``: never answer (until the client gives up or the server stops).
    - ``raw_body``: send these bytes as the HTTP body verbatim (a broken JSON *response*).
    """

    content: ChatReply | None = None
    vectors: EmbeddingReply | None = None
    latency: float = 0.0
    status: int = 200
    retry_after: float | None = None
    hang: bool = False
    raw_body: str | None = None

    @classmethod
    def reply(cls, content: ChatReply, latency: float = 0.0) -> Behaviour:
        return cls(content=content, latency=latency)

    @classmethod
    def embed(cls, vectors: EmbeddingReply, latency: float = 0.0) -> Behaviour:
        return cls(vectors=vectors, latency=latency)

    @classmethod
    def delay(cls, latency: float) -> Behaviour:
        """The default reply, after ``latency`` seconds."""
        return cls(latency=latency)

    @classmethod
    def malformed_json(cls, content: str = '{"request": "unterminated', latency: float = 0.0) -> Behaviour:
        """A well-formed HTTP reply whose chat content is not valid JSON."""
        return cls(content=content, latency=latency)

    @classmethod
    def rate_limited(cls, retry_after: float = 0.0) -> Behaviour:
        return cls(status=429, retry_after=retry_after)

    @classmethod
    def server_error(cls, status: int = 500) -> Behaviour:
        return cls(status=status)

    @classmethod
    def hang_forever(cls) -> Behaviour:
        return cls(hang=True)

    @classmethod
    def broken_body(cls, body: str = "{not json") -> Behaviour:
        return cls(raw_body=body)


@dataclass(frozen=True)
class RecordedRequest:
    endpoint: str
    method: str
    path: str
    body: JSON
    headers: dict[str, str]
    received_at: float


def hash_unit_vector(text: str, dim: int) -> list[float]:
    """A deterministic pseudo-random unit vector for ``text`` (same text, same vector)."""
    seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")
    vector = np.random.default_rng(seed).standard_normal(dim)
    norm = float(np.linalg.norm(vector)) or 1.0
    return [float(x) for x in vector / norm]


def _default_chat(request: JSON) -> str:
    return "This is a reply from the fake OpenAI server."


@dataclass
class FakeOpenAI:
    """The scripted server. ``model`` is reported by ``/v1/models`` and echoed when a request has none."""

    model: str = "fake-model"
    dialect: Dialect = "openai"
    embedding_dim: int = 8
    chat_default: Callable[[JSON], str] = _default_chat
    hang_seconds: float = 60.0
    requests: list[RecordedRequest] = field(default_factory=list)
    max_in_flight: dict[str, int] = field(default_factory=lambda: {"chat": 0, "embeddings": 0})
    in_flight: dict[str, int] = field(default_factory=lambda: {"chat": 0, "embeddings": 0})
    _scripts: dict[str, deque[Behaviour]] = field(
        default_factory=lambda: {"chat": deque(), "embeddings": deque()}
    )
    _runner: web.AppRunner | None = None
    _port: int = 0
    _closing: asyncio.Event | None = None
    _thread: threading.Thread | None = None
    _thread_loop: asyncio.AbstractEventLoop | None = None

    # ---- scripting and inspection -------------------------------------------------------------------

    def script_chat(self, *behaviours: Behaviour) -> None:
        self._scripts["chat"].extend(behaviours)

    def script_embeddings(self, *behaviours: Behaviour) -> None:
        self._scripts["embeddings"].extend(behaviours)

    def pending(self, endpoint: Endpoint) -> int:
        """Scripted behaviours not yet consumed."""
        return len(self._scripts[endpoint])

    def requests_to(self, endpoint: Endpoint) -> list[RecordedRequest]:
        return [r for r in self.requests if r.endpoint == endpoint]

    def reset(self) -> None:
        self.requests.clear()
        for queue in self._scripts.values():
            queue.clear()
        for key in self.max_in_flight:
            self.max_in_flight[key] = 0

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError("FakeOpenAI is not started")
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # ---- lifecycle -----------------------------------------------------------------------------------

    async def start(self) -> Self:
        self._closing = asyncio.Event()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_get("/v1/models", self._models)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = int(self._runner.addresses[0][1])
        return self

    async def stop(self) -> None:
        if self._closing is not None:
            self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def start_in_thread(self) -> Self:
        """Runs the server on its own event loop in a daemon thread; returns once it listens."""
        ready = threading.Event()
        loop = asyncio.new_event_loop()

        def serve() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self.start())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.stop())
            loop.close()

        self._thread_loop = loop
        self._thread = threading.Thread(target=serve, name="fake-openai", daemon=True)
        self._thread.start()
        if not ready.wait(timeout=10):
            raise RuntimeError("FakeOpenAI did not start")
        return self

    def stop_thread(self) -> None:
        if self._thread_loop is None or self._thread is None:
            return
        self._thread_loop.call_soon_threadsafe(self._thread_loop.stop)
        self._thread.join(timeout=10)
        self._thread = None
        self._thread_loop = None

    # ---- handlers ------------------------------------------------------------------------------------

    async def _record(self, endpoint: str, request: web.Request) -> JSON:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            body = {"_unparsed": await request.text()}
        if not isinstance(body, dict):
            body = {"_value": body}
        self.requests.append(
            RecordedRequest(
                endpoint=endpoint,
                method=request.method,
                path=request.path,
                body=body,
                headers=dict(request.headers),
                received_at=time.monotonic(),
            )
        )
        return body

    def _next(self, endpoint: Endpoint) -> Behaviour:
        queue = self._scripts[endpoint]
        return queue.popleft() if queue else Behaviour()

    async def _prelude(self, behaviour: Behaviour) -> web.Response | None:
        """Latency, hangs, errors and raw bodies: a response to send instead of a normal reply, or None."""
        if behaviour.latency > 0:
            await asyncio.sleep(behaviour.latency)
        if behaviour.hang:
            assert self._closing is not None
            try:
                await asyncio.wait_for(self._closing.wait(), timeout=self.hang_seconds)
                reason = "server stopping"
            except TimeoutError:
                reason = f"hung for {self.hang_seconds:g}s"
            return _error(504, f"fake server hung ({reason})")
        if behaviour.status != 200:
            headers = {}
            if behaviour.retry_after is not None:
                headers["Retry-After"] = f"{behaviour.retry_after:g}"
            kind = "rate_limit_exceeded" if behaviour.status == 429 else "server_error"
            return _error(behaviour.status, f"scripted {behaviour.status}", kind, headers)
        if behaviour.raw_body is not None:
            return web.Response(status=200, text=behaviour.raw_body, content_type="application/json")
        return None

    def refused_format(self, body: JSON) -> web.Response | None:
        """The dialect's answer to a chat request whose ``response_format`` it does not take, or None."""
        response_format = body.get("response_format")
        kind = response_format.get("type") if isinstance(response_format, dict) else None
        if kind is None or self.dialect == "openai":
            return None
        if self.dialect == "llama_cpp" and kind not in ("text", "json_object"):
            return _error(500, LLAMA_CPP_FORMAT_ERROR, "internal_server_error")
        if self.dialect == "no_response_format":
            return _error(
                400, "Unrecognized request argument supplied: response_format", "invalid_request_error"
            )
        if self.dialect == "opaque" and kind == "json_schema":
            return _error(500, "Internal Server Error")
        return None

    async def _handle(self, endpoint: Endpoint, request: web.Request) -> web.Response:
        body = await self._record(endpoint, request)
        refused = self.refused_format(body) if endpoint == "chat" else None
        if refused is not None:
            return refused
        behaviour = self._next(endpoint)
        self.in_flight[endpoint] += 1
        self.max_in_flight[endpoint] = max(self.max_in_flight[endpoint], self.in_flight[endpoint])
        try:
            early = await self._prelude(behaviour)
            if early is not None:
                return early
            if endpoint == "chat":
                return self._chat_reply(body, behaviour)
            return self._embeddings_reply(body, behaviour)
        finally:
            self.in_flight[endpoint] -= 1

    async def _chat(self, request: web.Request) -> web.Response:
        return await self._handle("chat", request)

    async def _embeddings(self, request: web.Request) -> web.Response:
        return await self._handle("embeddings", request)

    async def _models(self, request: web.Request) -> web.Response:
        model = {"id": self.model, "object": "model", "created": 0, "owned_by": "fake"}
        return web.json_response({"object": "list", "data": [model]})

    def _chat_reply(self, body: JSON, behaviour: Behaviour) -> web.Response:
        if body.get("stream"):
            return _error(400, "streaming is not supported by the fake server", "invalid_request_error")
        content = behaviour.content if behaviour.content is not None else self.chat_default
        text = content(body) if callable(content) else content
        prompt_chars = sum(len(str(m.get("content", ""))) for m in body.get("messages", []) or [])
        prompt_tokens, completion_tokens = prompt_chars // 4 + 1, len(text) // 4 + 1
        return web.json_response(
            {
                "id": f"chatcmpl-{len(self.requests)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model") or self.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                        "logprobs": None,
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            }
        )

    def _embeddings_reply(self, body: JSON, behaviour: Behaviour) -> web.Response:
        raw_input = body.get("input", [])
        texts = [raw_input] if isinstance(raw_input, str) else [str(t) for t in raw_input]
        dim = int(body.get("dimensions") or self.embedding_dim)
        if behaviour.vectors is not None:
            vectors = behaviour.vectors(body) if callable(behaviour.vectors) else behaviour.vectors
        else:
            vectors = [hash_unit_vector(text, dim) for text in texts]
        as_base64 = body.get("encoding_format") == "base64"
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": (
                    base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode("ascii") if as_base64 else v
                ),
            }
            for i, v in enumerate(vectors)
        ]
        tokens = sum(len(t.split()) for t in texts)
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "model": body.get("model") or self.model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )


def _error(
    status: int, message: str, kind: str = "server_error", headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response(
        {"error": {"message": message, "type": kind, "param": None, "code": kind}},
        status=status,
        headers=headers,
    )
