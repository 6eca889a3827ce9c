"""Fixtures for the embedding tests: the local model is loaded once per test session."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from briefxai_embedding.backends.sentence_transformers import SentenceTransformersBackend


@pytest.fixture(scope="session")
def local_backend() -> Iterator[SentenceTransformersBackend]:
    """all-MiniLM-L6-v2, loaded once (seconds on 2 cores) and shared; tests must not close it.

    Its worker thread does not belong to any event loop, so tests on their own loops can all use it.
    """
    backend = SentenceTransformersBackend(batch_size=32, torch_threads=2)
    asyncio.run(backend.load())
    yield backend
    asyncio.run(backend.close())
