"""Fixtures shared by every test area. Add yours below; keep the others'."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from hypothesis import settings
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from briefxai_common import tracing
from tests.support.fake_openai import FakeOpenAI

# Tests assert no timings, and hypothesis' per-example deadline is one: on a loaded 2-core machine it
# failed examples that were merely slow.
settings.register_profile("briefxai", deadline=None)
settings.load_profile("briefxai")


@pytest.fixture
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    """A scripted OpenAI-compatible HTTP server on 127.0.0.1; ``fake_openai.base_url`` ends in /v1."""
    async with FakeOpenAI() as server:
        yield server


@pytest.fixture
def span_exporter() -> Iterator[InMemorySpanExporter]:
    """The spans this process ends while the test runs: an in-memory exporter added to the process's
    tracer provider (``configure_tracing`` installs it once), stopped after the test."""
    memory = InMemorySpanExporter()
    tracing.configure_tracing("tests", extra_processor=SimpleSpanProcessor(memory))
    yield memory
    memory.shutdown()
