"""Fixtures for the embedding tests: the local models are loaded once per test session."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from briefxai_embedding.backends.onnx import OnnxBackend
from briefxai_embedding.backends.sentence_transformers import SentenceTransformersBackend


@pytest.fixture(scope="session")
def torch_backend() -> Iterator[SentenceTransformersBackend]:
    """all-MiniLM-L6-v2, loaded once (seconds on 2 cores) and shared; tests must not close it.

    Its worker thread does not belong to any event loop, so tests on their own loops can all use it.
    """
    backend = SentenceTransformersBackend(batch_size=32, torch_threads=2)
    asyncio.run(backend.load())
    yield backend
    asyncio.run(backend.close())


@pytest.fixture(scope="session")
def default_onnx_backend() -> Iterator[OnnxBackend]:
    """The service's default ONNX model (int8 with static activation scales, two single-threaded passes
    at once) from the default cache directory, which ``make install`` fills (else it is built on first
    use); shared, tests must not close it."""
    backend = OnnxBackend(batch_size=16, batch_tokens=256, intra_op_threads=2, parallel_runs=2)
    asyncio.run(backend.load())
    yield backend
    asyncio.run(backend.close())
