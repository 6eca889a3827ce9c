"""Facets and embeddings of conversations batch by batch: what the analysis pipeline (``pipeline.py``) and
AssignConversations (``assigner.py``) share, so that new conversations get the same facets, the same
embedded text and the same token budget as the analysis they join.

- :func:`text_budget`: the analysis's token budget (its option, else the gateway's default) and the
  characters sent for it, within the embedding service's own limit;
- :func:`texts_to_embed`: the text each conversation is embedded as (``embed_text.py``);
- :func:`facets_and_embedding`: one batch's facets and embedding, side by side, except with
  ``REQUEST_SUMMARY`` where the embedded text is the ``request`` facet, so facets come first;
- :func:`bounded`: the batches, at most ``max_inflight_batches`` at once, the first failure raised
  (a downstream failure before anything else).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from typing import Any, TypeVar

from .downstream import DownstreamError, EmbeddingModelInfo
from .embed_text import TextBudget, char_budget, embed_text
from .models import AnalysisOptions, Conversation, EmbedTextMode, FacetValue

T = TypeVar("T")
FacetValues = list[list[FacetValue]]


def first_error(group: BaseExceptionGroup[Any]) -> BaseException:
    """The most telling exception of a task group: a downstream failure first, then anything else."""
    flat: list[BaseException] = []

    def walk(error: BaseException) -> None:
        if isinstance(error, BaseExceptionGroup):
            for inner in error.exceptions:
                walk(inner)
        else:
            flat.append(error)

    walk(group)
    for error in flat:
        if isinstance(error, DownstreamError):
            return error
    for error in flat:
        if not isinstance(error, asyncio.CancelledError):
            return error
    return flat[0] if flat else asyncio.CancelledError()


async def bounded(items: Iterable[T], limit: int, work: Callable[[T], Awaitable[None]]) -> None:
    """``work(item)`` for every item, at most ``limit`` at once; the first failure cancels the rest and
    is raised (see :func:`first_error`)."""
    slots = asyncio.Semaphore(limit)

    async def one(item: T) -> None:
        try:
            await work(item)
        finally:
            slots.release()

    try:
        async with asyncio.TaskGroup() as group:
            for item in items:
                await slots.acquire()
                group.create_task(one(item))
    except BaseExceptionGroup as errors:
        raise first_error(errors) from None


def text_budget(options: AnalysisOptions, default_tokens: int, info: EmbeddingModelInfo) -> TextBudget:
    """The model tokens that represent a conversation of this analysis, and the characters sent for them."""
    tokens = options.embed_token_budget or default_tokens
    return TextBudget(tokens, char_budget(tokens, info.max_chars_per_text))


def texts_to_embed(
    conversations: Sequence[Conversation],
    mode: EmbedTextMode,
    budget: TextBudget,
    values: Sequence[Sequence[FacetValue]] | None,
) -> tuple[list[str], int]:
    """The embedded text of each conversation under ``mode``, and how many fell back from the request
    summary to the first user message (``values``: the batch's facet values, for ``REQUEST_SUMMARY``)."""
    texts: list[str] = []
    fallbacks = 0
    for index, conversation in enumerate(conversations):
        chosen = embed_text(conversation, mode, budget.chars, values[index] if values is not None else ())
        texts.append(chosen.text)
        fallbacks += int(chosen.fallback)
    return texts, fallbacks


async def facets_and_embedding(
    mode: EmbedTextMode,
    facets: Callable[[], Coroutine[Any, Any, FacetValues]] | None,
    embed: Callable[[FacetValues | None], Coroutine[Any, Any, None]] | None,
    stored_values: Callable[[], Awaitable[FacetValues]] | None = None,
) -> None:
    """One batch: ``facets()`` extracts (and keeps) its facet values, ``embed(values)`` embeds it; either is
    None when that part is done already.

    They run side by side (``embed`` gets None), except with ``REQUEST_SUMMARY``: the embedded text is the
    ``request`` facet, so ``embed`` waits for the values ``facets()`` returns, or, when the facets of the
    batch were extracted earlier, for ``stored_values()``."""
    if mode is EmbedTextMode.REQUEST_SUMMARY:
        values: FacetValues | None = None
        if facets is not None:
            values = await facets()
        if embed is not None:
            if values is None:
                if stored_values is None:
                    raise ValueError("REQUEST_SUMMARY without facets needs the stored facet values")
                values = await stored_values()
            await embed(values)
        return
    try:
        async with asyncio.TaskGroup() as group:
            if facets is not None:
                group.create_task(facets())
            if embed is not None:
                group.create_task(embed(None))
    except BaseExceptionGroup as errors:
        raise first_error(errors) from None
