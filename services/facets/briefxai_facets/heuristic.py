"""The offline ``heuristic`` provider: fast, deterministic, no network. How each value is computed:

- ``request``: :mod:`briefxai_facets.summary` — the first meaningful sentence the user wrote (greetings
  and fillers skipped, code fences dropped), keys, tokens and passwords replaced by ``[SECRET]`` and PII
  by ``[EMAIL]``, ``[PHONE]``, ``[CARD]``, ``[IP]``, ``[URL]``, ``[SSN]``, ``[IBAN]``, ``[NAME]``
  (:mod:`briefxai_common.pii`), cut to 200 characters.
  Failed when the user wrote nothing.
- ``task``: keyword lexicons over the user's text (:mod:`briefxai_facets.lexicons`); ``other`` if none match.
- ``language``: lingua over the first 300 characters of the user's text, restricted to the configured
  languages (:mod:`briefxai_facets.language`); ``und`` when too short to tell.
- ``sentiment``: VADER compound score of the user's messages, length-weighted mean
  (:mod:`briefxai_facets.sentiment`); English-centred.
- ``concerning``: tiered phrase lexicon over the user's text, 1–5 with the matched phrases as the reason
  (:mod:`briefxai_facets.lexicons`).
- ``turns``: messages whose role is not ``system``. ``user_turns``: messages whose role is ``user``.
- ``tokens``: approximate tokens over all messages: each CJK character is one token, other letters count
  one token per started 6-letter chunk of a word, digits one per started group of 3, and every other
  non-space character one (in the spirit of GPT-style tokenizers: common words are one token).

Custom facets (config) are not answered: the value fails with an error asking for an LLM provider.

Work runs off the event loop in batches of ``batch_size`` conversations: on one worker thread by
default, or on ``workers`` processes (each with its own detectors) to use more cores.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import re
from collections.abc import Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor

from briefxai_common.conversations import Role

from .definitions import Conversation, FacetDefinition, FacetValue, Job
from .language import shared_identifier
from .lexicons import classify_task, score_concerning
from .sentiment import SentimentScorer
from .settings import HeuristicSettings
from .summary import summarize_request

NAME = "heuristic"

TOKEN = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]|[^\W\d_]{1,6}|\d{1,3}|[^\w\s]")


def approx_tokens(text: str) -> int:
    """Approximate GPT-style token count (see the module docstring)."""
    return len(TOKEN.findall(text))


class HeuristicAnalyzer:
    """Synchronous and CPU-bound; one per worker (thread or process)."""

    def __init__(self, settings: HeuristicSettings) -> None:
        self.settings = settings
        self.language = shared_identifier(tuple(settings.languages), settings.language_high_accuracy)
        self.sentiment = SentimentScorer()

    def analyze(self, job: Job) -> dict[str, FacetValue]:
        conversation = job.conversation
        user_texts = conversation.user_texts()
        user_text = "\n".join(user_texts)
        values: dict[str, FacetValue] = {}
        for facet in job.facets:
            values[facet.name] = self._value(facet, conversation, user_texts, user_text)
        return values

    def analyze_many(self, jobs: Sequence[Job]) -> list[dict[str, FacetValue]]:
        return [self.analyze(job) for job in jobs]

    def _value(
        self, facet: FacetDefinition, conversation: Conversation, user_texts: list[str], user_text: str
    ) -> FacetValue:
        name = facet.name
        if name == "request":
            summary = summarize_request(
                user_texts, self.settings.summary_max_chars, self.settings.phone_region
            )
            if not summary:
                return FacetValue.failure(
                    name, NAME, "the conversation has no user text to summarise", "no_user_text"
                )
            return FacetValue(name, NAME, text=summary)
        if name == "task":
            return FacetValue(name, NAME, text=classify_task(user_texts))
        if name == "language":
            return FacetValue(name, NAME, text=self.language.detect(user_texts))
        if name == "sentiment":
            return FacetValue(name, NAME, number=round(self.sentiment.score(user_texts), 4))
        if name == "concerning":
            concern = score_concerning(user_text)
            return FacetValue(name, NAME, number=float(concern.score), reason=concern.reason)
        if name == "turns":
            turns = sum(1 for m in conversation.messages if m.role != Role.SYSTEM)
            return FacetValue(name, NAME, number=float(turns))
        if name == "user_turns":
            return FacetValue(name, NAME, number=float(len(user_texts)))
        if name == "tokens":
            tokens = sum(approx_tokens(m.content) for m in conversation.messages)
            return FacetValue(name, NAME, number=float(tokens))
        return FacetValue.failure(
            name,
            NAME,
            f"the heuristic provider cannot answer custom {facet.type.value} facet {name!r}; "
            "configure an LLM provider (facets.providers: [openai, heuristic]) to answer it",
            "unsupported_facet",
        )


_process_analyzer: HeuristicAnalyzer | None = None


def _init_process(settings: HeuristicSettings) -> None:
    global _process_analyzer
    _process_analyzer = HeuristicAnalyzer(settings)


def _analyze_in_process(jobs: Sequence[Job]) -> list[dict[str, FacetValue]]:
    if _process_analyzer is None:
        raise RuntimeError("worker process was not initialised")
    return _process_analyzer.analyze_many(jobs)


def _ready() -> bool:
    return _process_analyzer is not None


class HeuristicProvider:
    """The :class:`~briefxai_facets.providers.Provider` wrapping :class:`HeuristicAnalyzer`."""

    def __init__(self, settings: HeuristicSettings) -> None:
        self.settings = settings
        self._executor: Executor | None = None
        self._analyzer: HeuristicAnalyzer | None = None

    @property
    def name(self) -> str:
        return NAME

    def supports(self, facet: FacetDefinition) -> bool:
        # Custom facets are "supported" so that they fail here with a clear error, not silently.
        return True

    async def start(self) -> None:
        if self._executor is not None:
            return
        if self.settings.workers == 1:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="heuristic")
            self._analyzer = await asyncio.get_running_loop().run_in_executor(
                self._executor, HeuristicAnalyzer, self.settings
            )
            return
        # spawn, not fork: forking a process that runs gRPC threads is unsafe.
        executor = ProcessPoolExecutor(
            max_workers=self.settings.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_process,
            initargs=(self.settings,),
        )
        self._executor = executor
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(executor, _ready) for _ in range(self.settings.workers)))

    async def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    async def extract(self, jobs: Sequence[Job]) -> list[dict[str, FacetValue]]:
        if self._executor is None:
            await self.start()
        executor = self._executor
        if executor is None:
            raise RuntimeError("heuristic provider failed to start")
        loop = asyncio.get_running_loop()
        size = self.settings.batch_size
        batches = [list(jobs[i : i + size]) for i in range(0, len(jobs), size)]
        if self._analyzer is not None:
            analyzer = self._analyzer
            parts = [await loop.run_in_executor(executor, analyzer.analyze_many, batch) for batch in batches]
        else:
            parts = await asyncio.gather(
                *(loop.run_in_executor(executor, _analyze_in_process, batch) for batch in batches)
            )
        return [values for part in parts for values in part]
