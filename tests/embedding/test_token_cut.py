"""Texts cut after a number of the model's tokens (token_cut.py), alone and through the real service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import cast

import grpc
import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from tokenizers import Tokenizer

from briefxai.embedding.v1 import embedding_pb2, embedding_pb2_grpc
from briefxai_common.bootstrap import start_service
from briefxai_common.vectors import unpack_vectors
from briefxai_embedding.backends.sentence_transformers import SentenceTransformersBackend
from briefxai_embedding.onnx_export import bundled_model_path
from briefxai_embedding.server import build_service
from briefxai_embedding.settings import EmbeddingSettings
from briefxai_embedding.token_cut import CHARS_PER_TOKEN, TokenCutter

CUTTER = TokenCutter.from_file(bundled_model_path() / "tokenizer.json")
TOKENIZER = Tokenizer.from_file(str(bundled_model_path() / "tokenizer.json"))
TOKENIZER.no_padding()
TOKENIZER.no_truncation()
CHAT = (
    "Hey! What would you do if you had a flying car?\nHonestly I'd fly to the beach every weekend, "
    "and maybe to Hawaii if it could cross the ocean. What about you? I'd avoid traffic forever."
)


def model_tokens(text: str) -> list[int]:
    return list(TOKENIZER.encode(text, add_special_tokens=True).ids)


def test_a_cut_text_has_exactly_the_budget_and_the_same_leading_tokens() -> None:
    (cut,), (flag,) = CUTTER.cut([CHAT], 16)
    assert flag and CHAT.startswith(cut)
    assert len(model_tokens(cut)) == 16  # [CLS] + 14 tokens + [SEP]
    assert model_tokens(cut)[:-1] == model_tokens(CHAT)[:15]


def test_short_texts_and_a_zero_budget_are_left_alone() -> None:
    assert CUTTER.cut(["Short one.", ""], 16) == (["Short one.", ""], [False, False])
    assert CUTTER.cut([CHAT], 0) == ([CHAT], [False])


@given(st.text(min_size=0, max_size=300), st.integers(min_value=3, max_value=80))
@example(text="패", budget=3)  # one character, two pieces: found by this test in CI
def test_any_text_is_cut_to_at_most_the_budget_as_a_prefix(text: str, budget: int) -> None:
    (cut,), (flag,) = CUTTER.cut([text], budget)
    assert text.startswith(cut)
    assert len(TOKENIZER.encode(cut, add_special_tokens=True).ids) <= max(budget, 3)
    assert flag == (cut != text)


def test_without_a_tokenizer_the_cut_is_characters_per_token_at_a_word() -> None:
    estimate = TokenCutter()
    assert not estimate.exact and CUTTER.exact
    (cut,), (flag,) = estimate.cut([CHAT], 10)
    assert flag and CHAT.startswith(cut) and len(cut) <= 10 * CHARS_PER_TOKEN
    assert not cut.endswith(" ")


@pytest.fixture
async def stub(
    torch_backend: SentenceTransformersBackend,
) -> AsyncIterator[embedding_pb2_grpc.EmbeddingServiceStub]:
    settings = EmbeddingSettings.load(host="127.0.0.1", grpc_port=0, http_port=0, grace_period_seconds=1)
    service = await start_service(build_service(settings, backend=torch_backend))
    try:
        async with grpc.aio.insecure_channel(service.address) as channel:
            yield cast(
                "embedding_pb2_grpc.EmbeddingServiceStub", embedding_pb2_grpc.EmbeddingServiceStub(channel)
            )
    finally:
        await service.stop(grace=0)


async def test_the_service_embeds_the_cut_text_and_flags_it(
    stub: embedding_pb2_grpc.EmbeddingServiceStub,
) -> None:
    (cut,), _ = CUTTER.cut([CHAT], 16)
    budgeted = await stub.EmbedTexts(embedding_pb2.EmbedTextsRequest(texts=[CHAT, "Hi"], max_tokens=16))
    precut = await stub.EmbedTexts(embedding_pb2.EmbedTextsRequest(texts=[cut, "Hi"]))
    whole = await stub.EmbedTexts(embedding_pb2.EmbedTextsRequest(texts=[CHAT, "Hi"]))
    assert list(budgeted.truncated) == [True, False]
    assert list(budgeted.token_counts) == [16, 3]
    assert list(whole.truncated) == [False, False]
    got, same, full = (
        unpack_vectors(r.vectors.data, r.vectors.dim, r.vectors.count) for r in (budgeted, precut, whole)
    )
    assert np.allclose(got, same, atol=1e-6)
    assert float(got[0] @ full[0]) < 0.99  # the budget changed what was embedded
