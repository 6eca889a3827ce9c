"""Cluster names and descriptions written by an LLM (``namer: llm``), after Clio (Tamkin et al., 2024).

The offline :class:`~briefxai_clustering.naming.PhraseNamer` names every cluster first (it is cheap, and
its keywords are kept); then, level by level:

- **Base clusters**: one request per cluster shows the naming texts (the gateway sends each
  conversation's ``request`` summary when it has one, else its first user message) of its
  ``texts_per_cluster`` most central sampled members, and, for contrast, ``contrast_texts`` texts of
  each of the ``contrast_clusters`` nearest other clusters (cosine of the centroids). The model answers
  ``{"name", "description"}``: an imperative name of at most ten words and two sentences.
- **Upper levels**: one request per node shows its children's names and descriptions, and the
  children's names of the nearest other nodes of its level for contrast. A node with a single child
  takes the child's name and description (no request).

Replies are validated (:class:`NameReply`, pydantic), redacted (:func:`briefxai_common.pii.redact`) and
retried by the ``retry_policies.llm_provider`` policy (``llm.max_attempts`` and ``llm.backoff_*``
override it: bad JSON or invalid fields, timeouts, 408/429/5xx, with jittered backoff or
``Retry-After``, within a retry budget); every request goes through the namer's circuit breaker
(``circuit_breakers.llm_provider``, named ``namer``, probed with ``GET /models`` while not closed), so
an endpoint that is down costs one refused call per cluster, not ``max_attempts`` timeouts. A cluster
still unnamed keeps its offline name and description.
Names are made unique within a level by adding the cluster id. ``response_format`` is negotiated once
per process (:class:`~briefxai_common.llm.ResponseFormatNegotiator`).

Privacy: the pipeline gives a namer the texts of *reported* conversations only (those of clusters that
pass the privacy thresholds, merged small clusters included), secrets replaced and the words of fewer
than ``min_distinct_users`` users masked; a withheld conversation's text is never in a prompt. With
``privacy.redact_external`` (the default) the texts of the prompts are also PII-redacted
(:func:`briefxai_common.pii.redact`). Determinism: prompts depend only on the input and the seed (members in centrality order,
ties by index), requests ask for ``temperature`` (0) and ``seed``, and answers are placed by cluster id
whatever order they arrive in.

Threads: :meth:`LLMNamer.name` runs in the clustering job's worker thread (numpy work and prompts stay
there); each level's requests run as one task on the service's event loop (the shared aiohttp
:class:`~briefxai_common.llm.ChatClient`, at most ``concurrency`` in flight), with the job's context
(trace, request id), while the worker thread waits for the level's answers.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import math
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from briefxai_clustering.model import FloatArray
from briefxai_clustering.naming import ClusterGroup, ClusterLabel, Namer, trim_text
from briefxai_clustering.settings import NamerLLMSettings
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
    reply_content,
    response_format_field,
    retryable,
    schema_instructions,
)
from briefxai_common.llm_metrics import LLMMeter
from briefxai_common.logging import get_logger
from briefxai_common.pii import redact
from briefxai_common.resilience import RetryPolicy

log = get_logger(__name__)
T = TypeVar("T")

PROVIDER = "namer"  # the ``provider`` label of the briefxai_llm_* series of the clustering service
MAX_NAME_CHARS = 120
MAX_DESCRIPTION_CHARS = 1000
SLACK_SECONDS = 30.0  # beyond the worst case of a level's requests before the worker stops waiting

REPLY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "description": "Imperative phrase of at most ten words."},
        "description": {"type": "string", "description": "Two sentences in English."},
    },
    "required": ["name", "description"],
    "additionalProperties": False,
}

SYSTEM_PROMPT = (
    "You name groups of conversations for a privacy-preserving overview of what people ask an AI "
    "assistant or a support team for. You reply with one JSON object and nothing else."
)
RULES = (
    "Rules: describe what most of the items have in common, not one or two of them. Write in English. "
    "Leave out names of people, companies, products they own, places, e-mail addresses, numbers and "
    "anything else that could identify someone. Describe sensitive or harmful topics plainly and "
    "specifically; assume neither good nor bad faith."
)
BASE_TASK = (
    "Below are short texts from conversations (a summary of each, or its opening message) that were "
    "grouped together because they ask for the same kind of thing. Write:\n"
    '- "name": an imperative phrase of at most ten words saying what these users want (the task and its '
    "subject, not a vague topic), specific enough to tell this group from the nearby groups shown after "
    "it;\n"
    '- "description": two sentences, in the past tense, saying what the users asked for and what sets '
    "this group apart from the nearby groups."
)
UPPER_TASK = (
    "Below are the names and descriptions of smaller groups of conversations that together form one "
    "larger group. Write:\n"
    '- "name": an imperative phrase of at most ten words that covers all of these groups, broader than any '
    "one of them and distinct from the nearby groups shown after them;\n"
    '- "description": two sentences, in the past tense, saying what the conversations in these groups '
    "asked for."
)
REPLY_KEYS = 'Reply with a JSON object with exactly the keys "name" and "description".'
INSTRUCTIONS = " ".join((SYSTEM_PROMPT, RULES, BASE_TASK, UPPER_TASK, REPLY_KEYS))


class NameReply(BaseModel):
    """A valid answer: a name and a description, whitespace collapsed, the name without end quotes or
    full stop."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1, max_length=MAX_NAME_CHARS)
    description: str = Field(min_length=1, max_length=MAX_DESCRIPTION_CHARS)

    @field_validator("name", "description", mode="before")
    @classmethod
    def _collapse(cls, value: Any) -> Any:
        return " ".join(value.split()) if isinstance(value, str) else value

    @field_validator("name")
    @classmethod
    def _bare(cls, value: str) -> str:
        value = value.strip("\"'“”‘’`*").rstrip(".").strip()
        if not value:
            raise ValueError("the name is empty")
        return value


@dataclass(frozen=True)
class NamingPrompt:
    cluster_id: str
    user: str  # the user message, without the schema (added when the server does not enforce it)


@dataclass
class NamingStats:
    """One job's (or the process's) naming by the LLM."""

    jobs: int = 0
    clusters: int = 0
    named_by_llm: int = 0
    fallbacks: int = 0
    requests: int = 0
    failed_requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0

    def add(self, other: NamingStats) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, ValueError) or retryable(exc)  # ValueError: bad JSON or an invalid reply


def _tokens(usage: Any, key: str) -> int:
    value = usage.get(key) if isinstance(usage, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def centroids(groups: Sequence[ClusterGroup], vectors: FloatArray) -> np.ndarray:
    """Unit weighted-mean vector of each group's members."""
    rows = np.zeros((len(groups), vectors.shape[1]), dtype=np.float64)
    for i, group in enumerate(groups):
        if len(group.members):
            rows[i] = np.asarray(group.weights, dtype=np.float64) @ vectors[group.members].astype(np.float64)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.where(norms > 0, norms, 1.0)


def nearest(similarity: np.ndarray, i: int, count: int) -> list[int]:
    """The ``count`` other rows most similar to row ``i`` (ties: lower index first)."""
    if count <= 0:
        return []
    order = np.argsort(-np.round(similarity[i], 6), kind="stable")
    return [int(j) for j in order if j != i][:count]


def sample_texts(group: ClusterGroup, texts: Sequence[str], count: int, max_chars: int) -> list[str]:
    """The first ``count`` distinct non-empty texts of the group's members (most central first)."""
    chosen: list[str] = []
    seen: set[str] = set()
    for i in group.members:
        text = trim_text(texts[int(i)], max_chars)
        key = text.casefold()
        if text and key not in seen:
            seen.add(key)
            chosen.append(text)
            if len(chosen) == count:
                break
    return chosen


def _bullets(lines: Sequence[str]) -> str:
    return "\n".join(f"- {line}" for line in lines)


def compose(task: str, tag: str, lines: Sequence[str], contrast_intro: str, contrast: Sequence[str]) -> str:
    """A naming prompt: the task, the rules, the items in ``<tag>`` and, when any, the contrast."""
    parts = [task, RULES, f"<{tag}>\n{_bullets(lines)}\n</{tag}>"]
    if contrast:
        parts.append(f"{contrast_intro}\n<nearby>\n{_bullets(contrast)}\n</nearby>")
    parts.append(REPLY_KEYS)
    return "\n\n".join(parts)


def base_prompt(own: Sequence[str], contrast: Sequence[str]) -> str:
    intro = "For contrast, conversations from nearby groups that are NOT part of this group:"
    return compose(BASE_TASK, "group", own, intro, contrast)


def upper_prompt(children: Sequence[ClusterLabel], contrast: Sequence[str]) -> str:
    lines = [f"{child.name}: {child.description}" for child in children]
    intro = "For contrast, groups inside nearby larger groups that are NOT part of this one:"
    return compose(UPPER_TASK, "groups", lines, intro, contrast)


def _in_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def run_in_loop(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T], timeout: float) -> T:
    """Runs ``coro`` as a task on ``loop`` (another thread's) in a copy of this thread's context (trace,
    log fields) and waits for its result; TimeoutError after ``timeout`` seconds (the task is cancelled)."""
    context = contextvars.copy_context()
    done: concurrent.futures.Future[T] = concurrent.futures.Future()
    tasks: list[asyncio.Task[T]] = []

    def finish(task: asyncio.Task[T]) -> None:
        if task.cancelled():
            done.cancel()
        elif (error := task.exception()) is not None:
            done.set_exception(error)
        else:
            done.set_result(task.result())

    def begin() -> None:
        task = context.run(loop.create_task, coro)
        tasks.append(task)
        task.add_done_callback(finish)

    loop.call_soon_threadsafe(begin)
    try:
        return done.result(timeout=timeout)
    except concurrent.futures.TimeoutError:
        if tasks:
            loop.call_soon_threadsafe(tasks[0].cancel)
        raise TimeoutError(f"the LLM naming did not finish within {timeout:.0f} s") from None


class LLMNamer:
    """A :class:`~briefxai_clustering.naming.Namer`: the LLM's names, the ``offline`` namer's where the
    LLM gives none. :meth:`start` (in the service's event loop) before use; before it, or called from
    that loop's own thread, :meth:`name` gives the offline names."""

    def __init__(
        self,
        settings: NamerLLMSettings,
        offline: Namer,
        *,
        retry_policy: RetryPolicy | None = None,
        breaker: BreakerSettings | None = None,
        redact_external: bool = True,
    ) -> None:
        """``retry_policy`` None: the default ``llm_provider`` policy with the settings' overrides;
        ``breaker`` None: the default breaker settings; ``redact_external``: PII-redact prompt texts."""
        self.settings = settings
        self.offline = offline
        self.redact_external = redact_external
        self.provider = f"{PROVIDER}:{settings.model}"
        self.formats = ResponseFormatNegotiator(self.provider, settings.response_format)
        self.totals = NamingStats()
        self._meter = LLMMeter(PROVIDER, settings.model, service="clustering")
        self.endpoint = GuardedEndpoint(
            "clustering",
            PROVIDER,
            retry_policy or settings.retry_policy(LLMRetryPolicySettings.model_validate({})),
            breaker or BreakerSettings.model_validate({}),
            retry_on=_retryable,
        )
        self._client: ChatClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._semaphore: asyncio.Semaphore | None = None

    async def start(self) -> None:
        if self._client is not None:
            return
        client = await open_chat_client(
            self.settings, provider=self.provider, user_agent="briefxai-clustering"
        )
        self._semaphore = asyncio.Semaphore(self.settings.concurrency)
        self._loop = asyncio.get_running_loop()
        self._client = client
        self.endpoint.client = client

    async def close(self) -> None:
        client, self._client, self._loop = self._client, None, None
        self.endpoint.client = None
        await self.endpoint.close()
        if client is not None:
            await client.close()

    def describe(self) -> dict[str, Any]:
        """For /health's details: the model, the negotiated response_format and the totals so far."""
        return {
            "model": self.settings.model,
            "started": self._client is not None,
            "response_format": self.formats.describe(),
            "circuit_breaker": self.endpoint.breaker.snapshot(),
            **self.totals.as_dict(),
        }

    # ---- in the worker thread -----------------------------------------------------------------------

    def name(
        self, texts: Sequence[str], vectors: FloatArray, levels: Sequence[Sequence[ClusterGroup]]
    ) -> dict[str, ClusterLabel]:
        offline = self.offline.name(texts, vectors, levels)
        loop = self._loop
        if loop is None or self._client is None or loop.is_closed() or _in_loop(loop):
            log.warning("llm_naming_skipped", reason="the LLM namer is not started in another thread")
            return offline
        began = time.perf_counter()
        job = NamingStats(jobs=1, clusters=sum(len(groups) for groups in levels))
        if self.redact_external:
            texts = [redact(text) for text in texts]
        labels = dict(offline)
        by_llm: set[str] = set()
        for level, groups in enumerate(levels):
            if not groups:
                continue
            unit = centroids(groups, vectors)
            similarity = unit @ unit.T
            prompts: list[NamingPrompt] = []
            for i, group in enumerate(groups):
                near = nearest(similarity, i, self.settings.contrast_clusters)
                if level == 0:
                    prompts.append(self._base_prompt(group, [groups[j] for j in near], texts))
                elif len(group.child_ids) == 1:
                    child = group.child_ids[0]
                    labels[group.cluster_id] = replace(
                        labels[child], keywords=offline[group.cluster_id].keywords
                    )
                    if child in by_llm:
                        by_llm.add(group.cluster_id)
                else:
                    prompts.append(self._upper_prompt(group, [groups[j] for j in near], labels))
            replies = self._ask_level(loop, prompts, job)
            for prompt, reply in zip(prompts, replies, strict=True):
                if reply is not None:
                    keywords = offline[prompt.cluster_id].keywords
                    labels[prompt.cluster_id] = ClusterLabel(reply.name, reply.description, keywords)
                    by_llm.add(prompt.cluster_id)
            unique_names(groups, labels)
        job.named_by_llm = len(by_llm)
        job.fallbacks = job.clusters - job.named_by_llm
        self.totals.add(job)
        log.info("llm_naming", seconds=round(time.perf_counter() - began, 3), **job.as_dict())
        return labels

    def _base_prompt(
        self, group: ClusterGroup, near: Sequence[ClusterGroup], texts: Sequence[str]
    ) -> NamingPrompt:
        s = self.settings
        own = sample_texts(group, texts, s.texts_per_cluster, s.max_text_chars)
        contrast = [
            text for other in near for text in sample_texts(other, texts, s.contrast_texts, s.max_text_chars)
        ]
        return NamingPrompt(group.cluster_id, base_prompt(own, contrast))

    @staticmethod
    def _upper_prompt(
        group: ClusterGroup, near: Sequence[ClusterGroup], labels: dict[str, ClusterLabel]
    ) -> NamingPrompt:
        children = [labels[child] for child in group.child_ids]
        contrast = [labels[child].name for other in near for child in other.child_ids]
        return NamingPrompt(group.cluster_id, upper_prompt(children, contrast))

    def _ask_level(
        self, loop: asyncio.AbstractEventLoop, prompts: Sequence[NamingPrompt], job: NamingStats
    ) -> list[NameReply | None]:
        if not prompts:
            return []
        s, policy = self.settings, self.endpoint.retrier.policy
        rounds = math.ceil(len(prompts) / s.concurrency) + 1  # +1: the first request may go alone
        limit = (s.timeout_seconds + policy.max_delay) * policy.max_attempts * rounds + SLACK_SECONDS
        try:
            return run_in_loop(loop, self._ask_all(prompts, job), limit)
        except (TimeoutError, RuntimeError, concurrent.futures.CancelledError) as exc:
            log.warning("llm_naming_abandoned", error=str(exc) or type(exc).__name__, clusters=len(prompts))
            return [None] * len(prompts)

    # ---- on the event loop --------------------------------------------------------------------------

    async def _ask_all(self, prompts: Sequence[NamingPrompt], job: NamingStats) -> list[NameReply | None]:
        return list(await asyncio.gather(*(self._ask(prompt, job) for prompt in prompts)))

    async def _ask(self, prompt: NamingPrompt, job: NamingStats) -> NameReply | None:
        try:
            return await self.endpoint.call(lambda: self._ask_once(prompt, job))
        except Exception as exc:  # the offline name stands in
            error = describe_error(exc) if not isinstance(exc, ValueError) else str(exc)[:300]
            log.info("llm_cluster_name_failed", cluster_id=prompt.cluster_id, error=error)
        return None

    def request_body(self, prompt: NamingPrompt, fmt: ResponseFormat) -> dict[str, Any]:
        user = prompt.user if fmt == "json_schema" else f"{prompt.user}\n{schema_instructions(REPLY_SCHEMA)}"
        body: dict[str, Any] = {
            "model": self.settings.model,
            "messages": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}],
            "temperature": self.settings.temperature,
            "max_tokens": self.settings.max_output_tokens,
            "seed": self.settings.seed,
        }
        field = response_format_field(fmt, "cluster_name", REPLY_SCHEMA)
        if field is not None:
            body["response_format"] = field
        return body

    async def _ask_once(self, prompt: NamingPrompt, job: NamingStats) -> NameReply:
        client, semaphore = self._client, self._semaphore
        if client is None or semaphore is None:
            raise RuntimeError("the LLM namer is closed")

        async def send(fmt: ResponseFormat) -> Any:
            body = self.request_body(prompt, fmt)
            async with self.endpoint.guarded(), semaphore:
                job.requests += 1
                try:
                    response = await self._meter.request(client.complete(body))
                except Exception:
                    job.failed_requests += 1
                    raise
            usage = response.get("usage") if isinstance(response, dict) else None
            job.input_tokens += _tokens(usage, "prompt_tokens")
            job.output_tokens += _tokens(usage, "completion_tokens")
            return response

        response = await self.formats.call(send)
        reply = NameReply.model_validate(parse_json_object(reply_content(response)))
        if repeats_instructions(f"{reply.name} {reply.description}", INSTRUCTIONS):
            raise ValueError("the answer repeats the instructions")
        return reply.model_copy(update={"name": redact(reply.name), "description": redact(reply.description)})


def unique_names(groups: Sequence[ClusterGroup], labels: dict[str, ClusterLabel]) -> None:
    """A name that an earlier cluster of the level already has gets the cluster's id added."""
    seen: set[str] = set()
    for group in groups:
        label = labels[group.cluster_id]
        key = label.name.casefold()
        if key in seen:
            labels[group.cluster_id] = replace(label, name=f"{label.name} ({group.cluster_id})")
        seen.add(labels[group.cluster_id].name.casefold())
